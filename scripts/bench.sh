#!/usr/bin/env bash
# Runs every benchmark on this machine in one go and writes BENCHMARKS.md: each figure is a ratio
# against the raw `incus` CLI (or a target) measured in this run, on the same image.
#
# Usage: scripts/bench.sh [--no-setup] [OUTPUT]   (default OUTPUT: BENCHMARKS.md in the repo root)
# Needs root and what scripts/test.sh installs; Incus objects live in pika-test-bench-* projects.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# shellcheck source=scripts/lib/test-env.sh
source "${REPO_ROOT}/scripts/lib/test-env.sh"
# shellcheck source=scripts/lib/test-image.sh
source "${REPO_ROOT}/scripts/lib/test-image.sh"

# section TITLE COMMAND...: runs the command, appends its output to the report as a code block.
section() {
  local title="$1" output status=0
  shift
  echo "bench.sh: ${title}" >&2
  output="$("$@" 2>&1)" || status=$?
  {
    echo "## ${title}"
    echo
    echo '```'
    echo "\$ ${*}"
    echo "${output}" | grep -v '^\s*\(Compiling\|Finished\|Running\|warning: the group\)' | tail -n 40
    ((status == 0)) || echo "(exit status ${status})"
    echo '```'
    echo
  } >>"${REPORT_TMP}"
}

# A no-op `cargo build` must rerun no build script: build twice, count reruns in the second.
noop_build_reruns() {
  cargo build --workspace --quiet
  local reruns
  reruns="$(cargo build --workspace -vv 2>&1 | grep -c 'Running `.*build-script-build' || true)"
  echo "build scripts rerun by a no-op cargo build: ${reruns} (target 0)"
}

main() {
  local setup=1 out="${REPO_ROOT}/BENCHMARKS.md"
  while (($# > 0)); do
    case "$1" in
      --no-setup) setup=0 ;;
      -h | --help) sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
      -*) err "unknown option $1"; exit 2 ;;
      *) out="$1" ;;
    esac
    shift
  done
  if ((setup)); then
    test_env_install_packages
    test_env_start_incusd
  fi
  # The benchmarks' projects are pika-test-bench-*; the exit trap sweeps exactly those.
  PIKA_TEST_PROJECT_PREFIX="pika-test-bench"
  test_env_export
  cd "${REPO_ROOT}"
  BENCH_WORK="$(mktemp -d)"
  trap 'rm -rf "${BENCH_WORK}"; test_env_cleanup_projects' EXIT
  test_image_shared "${BENCH_WORK}/images"
  REPORT_TMP="${BENCH_WORK}/report.md"
  {
    echo "# Benchmarks"
    echo
    echo "Produced by \`scripts/bench.sh\` in one run on one machine; every figure is a ratio measured"
    echo "in that run against the raw \`incus\` CLI on the same busybox container image (or against a"
    echo "stated target). Targets: provisioning p50 <= 1.15x raw launch, time to ready with a warm pool of 4"
    echo "p50 <= 0.5x and with no pool <= 1.10x launch + readiness by hand, CI job <= 0.8x raw"
    echo "launch+exec+delete (its delete runs after the job's record), codegen of 1,000 roles < 20 ms,"
    echo "no-op cargo build reruns 0 build scripts."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr), $(. /etc/os-release && echo "${PRETTY_NAME}")"
    echo "- incus: $(incus version 2>/dev/null | tr '\n' ' ')"
    echo "- rustc: $(rustc --version)"
    echo
  } >"${REPORT_TMP}"
  section "Codegen of 1,000 roles (release)" \
    cargo run --quiet --release -p pika-roles-codegen --example bench_codegen -- 1000
  section "pika-roles generate of 1,000 roles, whole process (release, median of 5)" bash scripts/bench/codegen.sh
  section "No-op cargo build" noop_build_reruns
  section "Incus client: create+start+delete vs incus launch + delete -f" \
    cargo run --quiet --release -p pika-incus --example bench_lifecycle -- 10
  section "Agent provisioning through the API vs raw incus launch, and 40 agents (8 in flight) vs incus-benchmark launch; server idle RSS" \
    cargo run --quiet --release -p pika-server --example bench_provision
  section "Agent time to ready: warm pool of 4 and no pool vs incus launch + config push + readiness wait by hand (p50/p95 over 20)" \
    cargo run --quiet --release -p pika-server --example bench_pool -- 20
  section "Ready OpenClaw gateway (real, stand-in image): POST /v1/agents vs incus launch + proxy device + config push by hand" bash scripts/bench/gateway-ready.sh
  section "CI job through jerichoci (delete after the record) vs raw incus launch + exec + delete" \
    cargo run --quiet --release -p pikaci --example bench_job
  section "CI job overhead: snapshot mounted read-only vs uploaded (1 MiB and 300 MiB)" \
    cargo run --quiet --release -p pikaci --example bench_snapshot
  section "Image import with atomic alias swap vs plain incus image import (1 MiB image)" \
    bash scripts/bench/image-swap.sh
  # The swap costs a fixed few requests, so the ratio falls as images grow.
  section "Image import with atomic alias swap vs plain incus image import (49 MiB image)" \
    bash scripts/bench/image-swap.sh --filler-mib 48
  # A 3-member cluster on this one machine: the ratio shows that nothing serialises behind one
  # member, bounded by the machine's cores.
  section "Provisioning 60 agents, 20 in flight: 3-member cluster vs a single member of it" \
    bash scripts/bench/cluster-provision.sh --agents 60 --in-flight 20
  mv "${REPORT_TMP}" "${out}"
  echo "bench.sh: wrote ${out}" >&2
}

main "$@"
