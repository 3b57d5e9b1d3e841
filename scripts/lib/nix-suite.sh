#!/usr/bin/env bash
# What the Nix-evaluating suites (40-nix, 15-rust-sandbox, 60-openclaw) share beyond the assertion
# library (scripts/lib/suite.sh, sourced here): the nixpkgs subset they evaluate on. Sourced, not
# executed. The suite sets SUITE (its report prefix), WORK, SUBSET and MODULES first.

# shellcheck source=scripts/lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/suite.sh"

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

# refuses WHAT MESSAGE COMMAND...: a check that COMMAND fails saying MESSAGE (a fixed string) on
# stderr. The stderr goes to ${WORK}/nix.stderr, where a command that redirects its own (the
# suites' `flake`, `module_eval`) writes it too.
refuses() {
  local what="$1" message="$2"
  shift 2
  if "$@" >/dev/null 2>"${WORK}/nix.stderr"; then
    fail "${what}" "it succeeded"
  elif grep -qF -- "${message}" "${WORK}/nix.stderr"; then
    pass "${what}"
  else
    fail "${what}" "unexpected error: $(cat "${WORK}/nix.stderr")"
  fi
}
