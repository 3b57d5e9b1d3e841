#!/usr/bin/env bash
# The one test command: installs what the tests need (Debian, as root), brings up a local incusd,
# then runs every suite in scripts/tests/ in name order and prints "N passed, M failed, K skipped".
# A suite that exits 77 is SKIPPED (it lacks a hard prerequisite of this machine and says which).
#
# Usage: scripts/test.sh [--no-setup] [SUITE...]
#   SUITE is a file name under scripts/tests/ without .sh (e.g. `10-rust`); default: all.
#   --no-setup  skip package installation and incusd start (they must already be there).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
readonly SUITE_DIR="${REPO_ROOT}/scripts/tests"

# shellcheck source=scripts/lib/test-env.sh
source "${REPO_ROOT}/scripts/lib/test-env.sh"
# shellcheck source=scripts/lib/test-image.sh
source "${REPO_ROOT}/scripts/lib/test-image.sh"

cleanup() {
  test_env_cleanup_projects
  [[ -n "${PIKA_TEST_WORK:-}" ]] && rm -rf "${PIKA_TEST_WORK}"
  return 0
}

main() {
  local setup=1 suites=() arg
  for arg in "$@"; do
    case "${arg}" in
      --no-setup) setup=0 ;;
      -h | --help) usage; exit 0 ;;
      -*) err "unknown option ${arg}"; usage >&2; exit 2 ;;
      *) suites+=("${arg}") ;;
    esac
  done
  if ((${#suites[@]} == 0)); then
    local file
    for file in "${SUITE_DIR}"/*.sh; do
      suites+=("$(basename "${file}" .sh)")
    done
  fi
  for arg in "${suites[@]}"; do
    [[ -f "${SUITE_DIR}/${arg}.sh" ]] || { err "no suite ${arg} in scripts/tests/"; exit 2; }
  done

  if ((setup)); then
    test_env_install_packages
    test_env_start_incusd
  fi
  test_env_export
  export REPO_ROOT
  PIKA_TEST_WORK="$(mktemp -d /tmp/pika-test.XXXXXX)"
  export PIKA_TEST_WORK
  trap cleanup EXIT
  test_env_cleanup_projects
  test_image_shared "${PIKA_TEST_WORK}/images"

  local passed=0 failed=0 skipped=0 failed_names=() skipped_names=() start status
  for arg in "${suites[@]}"; do
    echo "=== suite ${arg}"
    start="${SECONDS}"
    status=0
    (cd "${REPO_ROOT}" && bash "${SUITE_DIR}/${arg}.sh") || status=$?
    if ((status == 0)); then
      passed=$((passed + 1))
      echo "=== suite ${arg}: ok ($((SECONDS - start))s)"
    elif ((status == 77)); then
      skipped=$((skipped + 1))
      skipped_names+=("${arg}")
      echo "=== suite ${arg}: SKIPPED ($((SECONDS - start))s)"
    else
      failed=$((failed + 1))
      failed_names+=("${arg}")
      echo "=== suite ${arg}: FAILED ($((SECONDS - start))s)"
    fi
    test_env_cleanup_projects
  done
  ((skipped == 0)) || echo "SKIPPED suites (see their output for the missing prerequisite): ${skipped_names[*]}"
  ((failed == 0)) || echo "failed suites: ${failed_names[*]}"
  echo "${passed} passed, ${failed} failed, ${skipped} skipped"
  ((failed == 0))
}

main "$@"
