#!/usr/bin/env bash
# Benchmark: `pika-roles generate` of 1,000 roles as a whole process (release build; schema-2 keys:
# cpu, memory-mib, readiness on every role, mounts, instance-config and a cluster group on every
# third), from a fresh output tree each run. Prints the median of RUNS and its ratio to the 20 ms
# target, then where the time goes: in-process phases from the bench_codegen example and, when
# `perf` is installed, the top symbols of one run.
#
# Usage: scripts/bench/codegen.sh [--runs N] [--roles N]
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO_ROOT
runs=5 roles=1000
while (($#)); do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --roles) roles="$2"; shift 2 ;;
    *) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

cd "${REPO_ROOT}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cargo build --quiet --release -p pika-roles-codegen --bin pika-roles --example bench_codegen
target="${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/release"
"${target}/examples/bench_codegen" --write "${roles}" "${work}"

times=()
for _ in $(seq "${runs}"); do
  rm -rf "${work}/nix/incus" "${work}/scripts" "${work}/crates"
  start="$(date +%s%N)"
  "${target}/pika-roles" --manifest "${work}/roles.toml" generate >/dev/null
  times+=($(( ($(date +%s%N) - start) / 1000 )))
done
median_us="$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")"
echo "pika-roles generate, ${roles} roles, whole process: median $(awk -v t="${median_us}" 'BEGIN { printf "%.1f ms (ratio %.2f to the 20 ms target)", t / 1000, t / 20000 }') over ${runs} runs"
"${target}/examples/bench_codegen" "${roles}" | sed -n '/full runtime contract/,/on CPU/p'
if command -v perf >/dev/null && perf record -q -o "${work}/perf.data" -F 20000 -g -- \
  "${target}/pika-roles" --manifest "${work}/roles.toml" generate >/dev/null 2>&1; then
  echo "top symbols of one run (perf, self time):"
  perf report -q -i "${work}/perf.data" --no-children --stdio --sort symbol 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n 8 || true # head closes the pipe early (SIGPIPE upstream)
fi
