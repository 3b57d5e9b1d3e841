#!/usr/bin/env bash
# Builds the Incus image of a Pika guest role with nix and hands everything else (verify, import
# with an atomic alias swap, status, rollback, retention, ssh to remote hosts) to `pika-guest image`.
#
# Usage:
#   scripts/incus-role-image.sh --role ROLE build
#   scripts/incus-role-image.sh --role ROLE import [TARGET] [--artifact DIR] [--keep N]
#   scripts/incus-role-image.sh --role ROLE build-import [TARGET] [--keep N]
#   scripts/incus-role-image.sh --role ROLE status [TARGET] [--artifact DIR]
#   scripts/incus-role-image.sh --role ROLE rollback [TARGET] [--to REV|FINGERPRINT]
#   scripts/incus-role-image.sh --help
#   TARGET: [--local | --remote-host HOST ...] [--project P] [--alias A]
#
#   build         nix build .#packages.<role system>.<role package> (out-link ./result)
#   import        verify DIR (metadata.tar.xz + disk.qcow2 or rootfs.squashfs) and import it on the target
#   build-import  stream the git working tree (tracked + untracked, not ignored) to the target, build
#                 there, import there; the temp directory is removed on every exit path
#   status        what the alias serves and whether it is current (exit 0 only when it is everywhere)
#   rollback      move the alias back to the previous kept image (or --to one), in one request
#
#   --role ROLE         a role from roles.toml (accepted before or after the subcommand)
#   --local             use the local Incus, no SSH
#   --remote-host HOST  SSH target (default pika-build); repeat it for several hosts: each gets its
#                       own swap, a failing host does not undo the others, a closing table shows
#                       which host serves what
#   --project P         Incus project (default pika-managed-agents)
#   --alias A           image alias (default: the role's default-alias)
#   --artifact DIR      image directory (default ./result); status: expect its provenance
#   --keep N            images the alias keeps reachable, the served one included (default 3)
#   --to REV|FP         rollback target: a prefix of a kept image's source rev or fingerprint
#
# Options are checked by pika-guest (`pika-guest image SUBCOMMAND --help`), which also does the ssh
# fan-out; this script only builds, picks the pika-guest binary and passes everything on.
#
# Environment:
#   PIKA_GUEST                the pika-guest executable here (default: pika-guest on PATH, else
#                             built with `cargo build -p pika-guest` in this repository)
#   PIKA_GUEST_REMOTE         pika-guest on the remote host (default: this machine's binary, copied
#                             into the remote temp directory for the run)
#   PIKA_BUILD_SSH_KEY        identity for ssh (-i)
#   PIKA_IMAGE_REMOTE_TMPDIR  parent of the temp directories on the remote host (default /tmp)
#   PIKA_IMAGE_SSH            ssh executable (default ssh)
#   PIKA_IMAGE_NIX            nix executable (default nix; on the remote host in remote mode)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
readonly DEFAULT_REMOTE_HOST="pika-build"

usage() {
  script_header
  echo
  echo "Roles (from scripts/lib/roles.sh, generated from roles.toml):"
  local role
  for role in "${PIKA_ROLE_IDS[@]}"; do
    printf '  %-20s alias %s, package %s (%s)\n' "${role}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}" \
      "${PIKA_ROLE_PACKAGE[${role}]}" "${PIKA_ROLE_INSTANCE_TYPE[${role}]}"
  done
}

usage_error() {
  err "$*"
  usage >&2
  exit 2
}

# The local pika-guest: $PIKA_GUEST, else on PATH, else built from this repository with cargo.
find_guest() {
  if [[ -n "${PIKA_GUEST:-}" ]]; then
    echo "${PIKA_GUEST}"
  elif command -v pika-guest; then
    :
  elif command -v cargo >/dev/null && [[ -f "${REPO_ROOT}/Cargo.toml" ]]; then
    echo "${PROG}: pika-guest is not on PATH: building it (cargo build -p pika-guest)" >&2
    (cd "${REPO_ROOT}" && cargo build -q -p pika-guest) || { err "cargo build -p pika-guest failed"; exit 1; }
    echo "${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/debug/pika-guest"
  else
    err "pika-guest not found: put it on PATH or set PIKA_GUEST (build: cargo build -p pika-guest)"
    exit 1
  fi
}

main() {
  # shellcheck source=scripts/lib/roles.sh
  source "${REPO_ROOT}/scripts/lib/roles.sh"
  local sub="" role="" local_mode=0 remote=0 args=()
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --local) local_mode=1; shift ;;
      --role | --remote-host | --project | --alias | --artifact | --keep | --to)
        (($# >= 2)) || usage_error "$1 needs a value"
        [[ "$1" == --role ]] && role="$2"
        [[ "$1" == --remote-host ]] && remote=1
        args+=("$1" "$2")
        shift 2
        ;;
      -*) args+=("$1"); shift ;;
      *)
        [[ -z "${sub}" ]] || usage_error "unexpected argument $1 (the subcommand is ${sub})"
        sub="$1"
        shift
        ;;
    esac
  done
  ((local_mode && remote)) && usage_error "--local and --remote-host exclude each other"
  case "${sub}" in
    build)
      [[ -n "${PIKA_ROLE_PACKAGE[${role}]:-}" ]] \
        || usage_error "unknown role '${role}' (--role); valid roles: ${PIKA_ROLE_IDS[*]}"
      ((${#args[@]} == 2 && local_mode == 0)) || usage_error "build takes only --role"
      exec "${PIKA_IMAGE_NIX:-nix}" build --out-link result \
        ".#packages.${PIKA_ROLE_SYSTEM[${role}]}.${PIKA_ROLE_PACKAGE[${role}]}"
      ;;
    import | build-import | status | rollback) ;;
    "") usage_error "missing subcommand (build, import, build-import, status or rollback)" ;;
    *) usage_error "unknown subcommand ${sub}; expected build, import, build-import, status or rollback" ;;
  esac
  ((local_mode || remote)) || args+=(--remote-host "${DEFAULT_REMOTE_HOST}")
  # Status without --artifact expects this checkout's revision.
  [[ "${sub}" != status ]] || args+=(--repo "${REPO_ROOT}")
  local guest
  guest="$(find_guest)"
  exec "${guest}" image "${sub}" "${args[@]}"
}

main "$@"
