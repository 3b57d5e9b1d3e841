#!/usr/bin/env bash
# What the Nix-evaluating suites (40-nix, 60-openclaw) share: their check counters and report
# lines, and the nixpkgs subset they evaluate on. Sourced, not executed. The suite sets
# NIX_SUITE_NAME (its report prefix), FAILURES=0, CHECKS=0, WORK, SUBSET and MODULES first.

err() {
  echo "${NIX_SUITE_NAME}: error: $*" >&2
}

log() {
  echo "${NIX_SUITE_NAME}: $*"
}

pass() {
  CHECKS=$((CHECKS + 1))
  log "ok: $*"
}

fail() {
  CHECKS=$((CHECKS + 1))
  FAILURES=$((FAILURES + 1))
  err "FAILED: $*"
}

# assert_eq WHAT EXPECTED ACTUAL
assert_eq() {
  if [[ "$2" == "$3" ]]; then
    pass "$1"
  else
    fail "$1: expected [$2], got [$3]"
  fi
}

# find_subset: the nixpkgs subset (real lib + NixOS Incus modules), or empty. PIKA_NIXPKGS_SUBSET,
# when set, is the only place looked at; else ../shared next to the repository (or next to the
# directory of git worktrees the repository sits in).
find_subset() {
  local candidate candidates=("${REPO_ROOT}/../shared/nixpkgs-subset" "${REPO_ROOT}/../../shared/nixpkgs-subset")
  [[ -n "${PIKA_NIXPKGS_SUBSET:-}" ]] && candidates=("${PIKA_NIXPKGS_SUBSET}")
  for candidate in "${candidates[@]}"; do
    [[ -f "${candidate}/lib/default.nix" && -d "${candidate}/nixos/modules/virtualisation" ]] \
      && { (cd "${candidate}" && pwd); return 0; }
  done
  return 0
}

# The subset's nixos/modules with the stub modules it lacks laid over it (real copies: Nix resolves
# relative imports from the file's real location), in WORK; sets MODULES.
make_modules_tree() {
  mkdir -p "${WORK}/nixos"
  cp -r "${SUBSET}/nixos/modules" "${WORK}/nixos/"
  cp -r "${REPO_ROOT}/tests/nix/nixos-stubs/modules/." "${WORK}/nixos/modules/"
  # shellcheck disable=SC2034 # read by the suite that sources this file
  MODULES="${WORK}/nixos/modules"
}
