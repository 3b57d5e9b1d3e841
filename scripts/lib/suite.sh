#!/usr/bin/env bash
# The one assertion library of the shell suites (scripts/tests/*.sh): the check counters, the
# failure report format and the checks themselves. Sourced, not executed; set SUITE (the suite's
# name, e.g. "50-image-script") before sourcing it.
#
# REPO_ROOT, err, usage and free_port come from scripts/lib/common.sh (sourced here).
#
# The report format, the same in every suite:
#   SUITE: ok: WHAT                       stdout  a check passed
#   SUITE: FAILED: WHAT[: DETAIL]         stderr  a check failed; the suite goes on (fail)
#   SUITE: error: MESSAGE                 stderr  not a check: a step the checks need failed
#   SUITE: N of M checks passed           stdout  suite_report, the last line; then, on failures,
#   SUITE: error: K check(s) failed: ...  stderr  the failed checks by name, and a non-zero status
# A failure that makes the rest of the suite meaningless is reported by fail_now: the same FAILED
# line and the closing report, then exit 1.

: "${SUITE:?set SUITE before sourcing scripts/lib/suite.sh}"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PROG="${SUITE}"
CHECKS=0
FAILURES=0
FAILED_CHECKS=()

log() {
  echo "${SUITE}: $*"
}

pass() {
  CHECKS=$((CHECKS + 1))
  log "ok: $*"
}

# fail WHAT [DETAIL...]: a failed check, counted; the suite goes on.
fail() {
  local what="$1"
  shift
  CHECKS=$((CHECKS + 1))
  FAILURES=$((FAILURES + 1))
  FAILED_CHECKS+=("${what}")
  if (($# > 0)); then
    echo "${SUITE}: FAILED: ${what}: $*" >&2
  else
    echo "${SUITE}: FAILED: ${what}" >&2
  fi
}

# fail_now WHAT [DETAIL...]: a failed check after which nothing else can be checked.
fail_now() {
  fail "$@"
  suite_report || true
  exit 1
}

# assert_eq WHAT EXPECTED ACTUAL
assert_eq() {
  if [[ "$2" == "$3" ]]; then
    pass "$1"
  else
    fail "$1" "expected [$2], got [$3]"
  fi
}

# expect WHAT COMMAND...: passes when COMMAND succeeds.
expect() {
  local what="$1"
  shift
  if "$@"; then pass "${what}"; else fail "${what}"; fi
}

# contains HAYSTACK NEEDLE (for expect)
contains() {
  [[ "$1" == *"$2"* ]]
}

# not COMMAND... (for expect)
not() {
  ! "$@"
}

# suite_report: the closing lines; fails when any check failed.
suite_report() {
  log "$((CHECKS - FAILURES)) of ${CHECKS} checks passed"
  ((FAILURES == 0)) && return 0
  local joined
  printf -v joined '%s; ' "${FAILED_CHECKS[@]}"
  err "${FAILURES} check(s) failed: ${joined%; }"
  return 1
}
