#!/usr/bin/env bash
# Benchmark: `incus-role-image.sh import --local` (pika-guest: verify the artifact, upload with a
# version alias, one-request alias swap, retention) against a plain `incus image import` of an
# image of the same size. The script finds pika-guest as it documents ($PIKA_GUEST, PATH, cargo).
# Prints the median of RUNS of each and their ratio. Needs a local incusd (as for scripts/test.sh).
#
# Usage: scripts/bench/image-swap.sh [--runs N] [--filler-mib M]
#   --runs N        timed runs of each kind (default 5)
#   --filler-mib M  incompressible filler added to the busybox rootfs (default 0: a ~1 MiB image)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
readonly SCRIPT="${REPO_ROOT}/scripts/incus-role-image.sh"
readonly PROJECT="pika-bench-image-swap-$$"

# shellcheck source=scripts/lib/roles.sh
source "${REPO_ROOT}/scripts/lib/roles.sh"
# shellcheck source=scripts/lib/test-image.sh
source "${REPO_ROOT}/scripts/lib/test-image.sh"

WORK=""

cleanup() {
  local fp
  if incus project show "${PROJECT}" >/dev/null 2>&1; then
    for fp in $(incus image list --project "${PROJECT}" --format csv --columns F); do
      incus image delete --project "${PROJECT}" "${fp}" >/dev/null 2>&1 || true
    done
    incus project delete "${PROJECT}" >/dev/null 2>&1 || true
  fi
  [[ -z "${WORK}" ]] || rm -rf "${WORK}"
}

# make_image DIR MARKER FILLER_MIB: a container image; same FILLER_MIB gives the same size.
make_image() {
  local out="$1" marker="$2" filler="$3" tmp
  tmp="$(mktemp -d "${WORK}/rootfs.XXXXXX")"
  mkdir -p "${out}"
  test_image_rootfs "${tmp}/rootfs" "${marker}"
  ((filler == 0)) || head -c "${filler}M" /dev/urandom >"${tmp}/rootfs/filler"
  mksquashfs "${tmp}/rootfs" "${out}/rootfs.squashfs" -noappend -quiet -all-root -comp gzip >/dev/null
  test_image_metadata "${out}" "image swap bench" "bench"
  rm -rf "${tmp}"
}

now_ms() {
  echo "$(($(date +%s%N) / 1000000))"
}

median() {
  local sorted
  sorted="$(printf '%s\n' "$@" | sort -n)"
  sed -n "$((($# + 1) / 2))p" <<<"${sorted}"
}

main() {
  local runs=5 filler=0
  while (($# > 0)); do
    case "$1" in
      --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
      --filler-mib) filler="${2:?--filler-mib needs a value}"; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown argument $1"; usage >&2; exit 2 ;;
    esac
  done
  [[ "${runs}" =~ ^[1-9][0-9]*$ ]] || { err "--runs must be a positive integer, got '${runs}'"; exit 2; }
  [[ "${filler}" =~ ^[0-9]+$ ]] || { err "--filler-mib must be an integer, got '${filler}'"; exit 2; }

  WORK="$(mktemp -d /tmp/pika-bench-swap.XXXXXX)"
  trap cleanup EXIT
  incus project create "${PROJECT}" >/dev/null
  local role="${PIKA_ROLE_IDS[0]}" i start plain=() swap=()
  for ((i = 0; i <= runs; i++)); do
    make_image "${WORK}/plain-${i}" "plain-${i}-$$" "${filler}"
    make_image "${WORK}/swap-${i}" "swap-${i}-$$" "${filler}"
  done
  # Warm-up: the alias exists, so every timed swap is a retarget plus retention (keep 3).
  CI=1 "${SCRIPT}" --role "${role}" import --local --project "${PROJECT}" --artifact "${WORK}/swap-0" 2>/dev/null
  for ((i = 1; i <= runs; i++)); do
    start="$(now_ms)"
    incus image import --quiet --project "${PROJECT}" "${WORK}/plain-${i}/metadata.tar.xz" \
      "${WORK}/plain-${i}/rootfs.squashfs"
    plain+=("$(($(now_ms) - start))")
    start="$(now_ms)"
    CI=1 "${SCRIPT}" --role "${role}" import --local --project "${PROJECT}" --artifact "${WORK}/swap-${i}" 2>/dev/null
    swap+=("$(($(now_ms) - start))")
  done
  local plain_median swap_median size
  plain_median="$(median "${plain[@]}")"
  swap_median="$(median "${swap[@]}")"
  size="$(stat -c %s "${WORK}/swap-1/rootfs.squashfs")"
  echo "image: $((size / 1024)) KiB rootfs, ${runs} runs"
  echo "plain incus image import:  ${plain[*]} ms (median ${plain_median} ms)"
  echo "import with alias swap:    ${swap[*]} ms (median ${swap_median} ms)"
  awk -v s="${swap_median}" -v p="${plain_median}" 'BEGIN { printf "ratio swap/plain: %.2f\n", s / (p > 0 ? p : 1) }'
}

main "$@"
