#!/usr/bin/env bash
# Builds the Incus image of a Pika guest role with nix and hands the Incus side (verify, import with
# an atomic alias swap, status, rollback, retention) to `pika-guest image`.
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
# The alias never goes missing: the image is uploaded with a fresh version alias of its own, the
# alias is then pointed at it in one request; versions beyond --keep are dropped and images that no
# alias and no instance uses are deleted (see `pika-guest image import --help`).
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
shopt -s inherit_errexit

readonly PROG="incus-role-image.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly REPO_DIR="${SCRIPT_DIR}/.."
readonly ROLES_SH="${SCRIPT_DIR}/lib/roles.sh"
readonly DEFAULT_REMOTE_HOST="pika-build"
readonly DEFAULT_PROJECT="pika-managed-agents"
readonly DEFAULT_ARTIFACT="result"
readonly METADATA_FILE="metadata.tar.xz"
readonly VM_DISK_FILE="disk.qcow2"
readonly CONTAINER_ROOTFS_FILE="rootfs.squashfs"
# Value rules. Incus accepts more, but these values reach a shell, a URL and Nix. pika-guest checks
# the alias again with the registry's own rule.
readonly PROJECT_RE='^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$'  # Incus itself rejects `_`, `/`, `:`, spaces
readonly ALIAS_RE='^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*$'  # as check_alias in codegen/src/registry.rs
readonly HOST_RE='^[A-Za-z0-9_][A-Za-z0-9._@-]*$'        # [user@]host, never an ssh option
readonly KEEP_RE='^[1-9][0-9]{0,3}$'

# Filled in by parse_args and main.
ROLE=""
SUBCOMMAND=""
LOCAL=0
REMOTE_HOSTS=()
REMOTE_HOST=""
PROJECT="${DEFAULT_PROJECT}"
ALIAS=""
ARTIFACT="${DEFAULT_ARTIFACT}"
KEEP=""
ROLLBACK_TO=""
declare -A GIVEN=()
SSH_OPTS=()
SUDO=()
TARGET_TMP=""
LOCAL_TMP=""
GUEST=()
# Per host, for the closing table.
RESULTS=()

err() {
  echo "${PROG}: error: $*" >&2
}

note() {
  echo "${PROG}: $*" >&2
}

load_registry() {
  if [[ ! -f "${ROLES_SH}" ]]; then
    err "role table ${ROLES_SH} is missing; regenerate it: cargo run -p pika-roles-codegen -- generate"
    exit 1
  fi
  # shellcheck source=scripts/lib/roles.sh
  source "${ROLES_SH}"
}

valid_roles() {
  local IFS=','
  local joined="${PIKA_ROLE_IDS[*]}"
  echo "${joined//,/, }"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
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

parse_args() {
  while (($# > 0)); do
    case "$1" in
      --role | --remote-host | --project | --alias | --artifact | --keep | --to)
        (($# >= 2)) || usage_error "$1 needs a value"
        GIVEN["$1"]=1
        case "$1" in
          --role) ROLE="$2" ;;
          --remote-host) REMOTE_HOSTS+=("$2") ;;
          --project) PROJECT="$2" ;;
          --alias) ALIAS="$2" ;;
          --artifact) ARTIFACT="$2" ;;
          --keep) KEEP="$2" ;;
          --to) ROLLBACK_TO="$2" ;;
          *) usage_error "internal: unhandled option $1" ;;
        esac
        shift 2
        ;;
      --local)
        GIVEN["$1"]=1
        LOCAL=1
        shift
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      -*) usage_error "unknown option $1" ;;
      *)
        [[ -z "${SUBCOMMAND}" ]] || usage_error "unexpected argument $1 (the subcommand is ${SUBCOMMAND})"
        SUBCOMMAND="$1"
        shift
        ;;
    esac
  done
}

is_role() {
  local role
  for role in "${PIKA_ROLE_IDS[@]}"; do
    [[ "${role}" == "$1" ]] && return 0
  done
  return 1
}

is_valid_alias() {
  [[ "$1" =~ ${ALIAS_RE} && "/$1/" != */./* && "/$1/" != */../* ]]
}

# Rejects options that mean nothing for the subcommand, then checks every value before it is used.
check_args() {
  [[ -n "${SUBCOMMAND}" ]] || usage_error "missing subcommand (build, import, build-import, status or rollback)"
  local unsupported=()
  case "${SUBCOMMAND}" in
    build) unsupported=(--local --remote-host --project --alias --artifact --keep --to) ;;
    import) unsupported=(--to) ;;
    build-import) unsupported=(--artifact --to) ;;
    status) unsupported=(--keep --to) ;;
    rollback) unsupported=(--artifact --keep) ;;
    *) usage_error "unknown subcommand ${SUBCOMMAND}; expected build, import, build-import, status or rollback" ;;
  esac
  local option host
  for option in "${unsupported[@]}"; do
    [[ -z "${GIVEN[${option}]:-}" ]] || usage_error "${option} does not apply to ${SUBCOMMAND}"
  done
  [[ -n "${ROLE}" ]] || usage_error "missing --role; valid roles: $(valid_roles)"
  is_role "${ROLE}" || usage_error "unknown role '${ROLE}' (--role); valid roles: $(valid_roles)"
  if ((LOCAL)) && ((${#REMOTE_HOSTS[@]} > 0)); then
    usage_error "--local and --remote-host ${REMOTE_HOSTS[0]} exclude each other"
  fi
  ((LOCAL)) || ((${#REMOTE_HOSTS[@]} > 0)) || REMOTE_HOSTS=("${DEFAULT_REMOTE_HOST}")
  [[ -n "${GIVEN[--alias]:-}" ]] || ALIAS="${PIKA_ROLE_DEFAULT_ALIAS[${ROLE}]}"
  [[ "${PROJECT}" =~ ${PROJECT_RE} ]] \
    || usage_error "invalid --project '${PROJECT}': letters, digits, '.' and '-', starting with a letter or digit"
  is_valid_alias "${ALIAS}" \
    || usage_error "invalid --alias '${ALIAS}': segments of letters, digits, '.', '_', '-' separated by single '/', starting with a letter or digit"
  for host in "${REMOTE_HOSTS[@]}"; do
    [[ "${host}" =~ ${HOST_RE} ]] \
      || usage_error "invalid --remote-host '${host}': [user@]host of letters, digits, '.', '_', '-'"
  done
  [[ -n "${ARTIFACT}" ]] || usage_error "invalid --artifact '': give a directory"
  [[ -z "${KEEP}" || "${KEEP}" =~ ${KEEP_RE} ]] || usage_error "invalid --keep '${KEEP}': a whole number from 1"
  [[ -z "${GIVEN[--to]:-}" || -n "${ROLLBACK_TO}" ]] || usage_error "invalid --to '': give a source rev or fingerprint prefix"
}

# Words quoted for the remote shell, which re-parses the command line ssh sends.
quote_argv() {
  local quoted
  quoted="$(printf '%q ' "$@")"
  echo "${quoted% }"
}

# Runs argv on the target: here with --local, on REMOTE_HOST through ssh otherwise. ssh gets
# /dev/null as stdin so that it cannot swallow the caller's; pipe_to_target passes stdin on.
on_target() {
  if ((LOCAL)); then
    "$@"
  else
    "${PIKA_IMAGE_SSH:-ssh}" "${SSH_OPTS[@]}" "${REMOTE_HOST}" "$(quote_argv "$@")" </dev/null
  fi
}

pipe_to_target() {
  if ((LOCAL)); then
    "$@"
  else
    "${PIKA_IMAGE_SSH:-ssh}" "${SSH_OPTS[@]}" "${REMOTE_HOST}" "$(quote_argv "$@")"
  fi
}

target_name() {
  if ((LOCAL)); then echo "local"; else echo "${REMOTE_HOST}"; fi
}

# The local pika-guest: $PIKA_GUEST, else on PATH, else built from this repository with cargo.
find_guest() {
  if [[ -n "${PIKA_GUEST:-}" ]]; then
    GUEST=("${PIKA_GUEST}")
  elif command -v pika-guest >/dev/null; then
    GUEST=("$(command -v pika-guest)")
  elif command -v cargo >/dev/null && [[ -f "${REPO_DIR}/Cargo.toml" ]]; then
    note "pika-guest is not on PATH: building it (cargo build -p pika-guest)"
    (cd "${REPO_DIR}" && cargo build -q -p pika-guest) || { err "cargo build -p pika-guest failed"; exit 1; }
    GUEST=("${CARGO_TARGET_DIR:-${REPO_DIR}/target}/debug/pika-guest")
  else
    err "pika-guest not found: put it on PATH or set PIKA_GUEST (build: cargo build -p pika-guest)"
    exit 1
  fi
}

setup_local() {
  LOCAL_TMP="$(mktemp -d "${TMPDIR:-/tmp}/pika-incus-role-image.XXXXXX")"
}

# Per remote host: ssh options, sudo when not root, a temp directory.
setup_remote() {
  SSH_OPTS=()
  SUDO=()
  [[ -n "${PIKA_BUILD_SSH_KEY:-}" ]] && SSH_OPTS+=(-i "${PIKA_BUILD_SSH_KEY}")
  SSH_OPTS+=(-o StrictHostKeyChecking=accept-new)
  local uid
  uid="$(on_target id -u)" || { err "cannot reach ${REMOTE_HOST} over ssh"; return 1; }
  [[ "${uid}" == "0" ]] || SUDO=(sudo)
}

make_target_tmp() {
  local parent="${TMPDIR:-/tmp}"
  ((LOCAL)) || parent="${PIKA_IMAGE_REMOTE_TMPDIR:-/tmp}"
  TARGET_TMP="$(on_target mktemp -d "${parent}/pika-incus-image.XXXXXX")" || return 1
  if [[ "${TARGET_TMP}" != /* ]]; then
    err "mktemp on $(target_name) returned '${TARGET_TMP}', not an absolute path"
    TARGET_TMP=""
    return 1
  fi
}

remove_target_tmp() {
  [[ -n "${TARGET_TMP}" ]] || return 0
  on_target rm -rf -- "${TARGET_TMP}" || err "could not remove ${TARGET_TMP} on $(target_name)"
  TARGET_TMP=""
}

cleanup() {
  [[ -z "${LOCAL_TMP}" ]] || rm -rf -- "${LOCAL_TMP}"
  LOCAL_TMP=""
  remove_target_tmp
}

# The pika-guest command on the target: the local one, an installed remote one, or the local
# binary shipped into TARGET_TMP (ship_guest).
target_guest() {
  if ((LOCAL)); then
    echo "${GUEST[0]}"
  else
    echo "${PIKA_GUEST_REMOTE:-${TARGET_TMP}/pika-guest}"
  fi
}

# ship FILE... : copies local files (dereferenced: ./result points into the Nix store) into TARGET_TMP,
# plus the local pika-guest unless PIKA_GUEST_REMOTE names an installed one.
ship() {
  local dir files=() file
  dir="$(mktemp -d "${LOCAL_TMP}/ship.XXXXXX")"
  for file in "$@"; do
    ln -s "$(realpath "${file}")" "${dir}/${file##*/}"
    files+=("${file##*/}")
  done
  if [[ -z "${PIKA_GUEST_REMOTE:-}" ]]; then
    ln -s "$(realpath "${GUEST[0]}")" "${dir}/pika-guest"
    files+=(pika-guest)
  fi
  ((${#files[@]} > 0)) || return 0
  tar -C "${dir}" -chf - "${files[@]}" | pipe_to_target tar -xf - -C "${TARGET_TMP}"
}

# guest_on_target ARGS...: pika-guest on the target with the target options; its stdout is the
# summary line of the closing table.
guest_on_target() {
  local sub="$1"
  shift
  on_target "${SUDO[@]}" "$(target_guest)" image "${sub}" --role "${ROLE}" --project "${PROJECT}" \
    --alias "${ALIAS}" --host "$(target_name)" "$@"
}

keep_args() {
  [[ -z "${KEEP}" ]] || printf '%s\n' --keep "${KEEP}"
}

flake_ref() {
  echo ".#packages.${PIKA_ROLE_SYSTEM[${ROLE}]}.${PIKA_ROLE_PACKAGE[${ROLE}]}"
}

cmd_build() {
  "${PIKA_IMAGE_NIX:-nix}" build --out-link result "$(flake_ref)"
}

# The files of the artifact to ship: metadata plus whichever payload exists (pika-guest decides).
artifact_files() {
  local dir="$1" file found=()
  for file in "${METADATA_FILE}" "${VM_DISK_FILE}" "${CONTAINER_ROOTFS_FILE}"; do
    [[ -e "${dir}/${file}" ]] && found+=("${dir}/${file}")
  done
  ((${#found[@]} > 0)) && printf '%s\n' "${found[@]}"
}

# One host's import; prints the summary line.
import_on_target() {
  local keep=()
  mapfile -t keep < <(keep_args)
  if ((LOCAL)); then
    guest_on_target import --artifact "${ARTIFACT}" "${keep[@]}"
    return
  fi
  if [[ ! -d "${ARTIFACT}" ]]; then
    err "artifact ${ARTIFACT} is not a directory (build it: scripts/incus-role-image.sh --role ${ROLE} build)"
    return 1
  fi
  local files=()
  mapfile -t files < <(artifact_files "${ARTIFACT}")
  make_target_tmp && ship "${files[@]}" && guest_on_target import --artifact "${TARGET_TMP}" "${keep[@]}"
}

# NUL-separated paths of the working tree: tracked and untracked, not ignored, not deleted.
tree_files() {
  local top="$1" path
  while IFS= read -r -d '' path; do
    if [[ -e "${top}/${path}" || -L "${top}/${path}" ]]; then
      printf '%s\0' "${path}"
    fi
  done < <(git -C "${top}" ls-files -co --exclude-standard -z)
}

build_import_on_target() {
  local top="$1" keep=()
  mapfile -t keep < <(keep_args)
  make_target_tmp || return 1
  tree_files "${top}" | tar -C "${top}" --null -T - -cf - | pipe_to_target tar -xf - -C "${TARGET_TMP}" || return 1
  ((LOCAL)) || ship || return 1
  note "building $(flake_ref) in ${TARGET_TMP} on $(target_name)"
  # shellcheck disable=SC2016 # $1 and $@ expand in the target's shell, not here
  on_target sh -c 'cd "$1" && shift && exec "$@"' build "${TARGET_TMP}" \
    "${PIKA_IMAGE_NIX:-nix}" build --out-link result "$(flake_ref)" || return 1
  guest_on_target import --artifact "${TARGET_TMP}/result" "${keep[@]}"
}

# What this checkout would build: HEAD, with -dirty when tracked files changed (a flake's dirtyRev).
checkout_rev() {
  local rev
  rev="$(git -C "${REPO_DIR}" rev-parse --verify HEAD 2>/dev/null)" || return 1
  if [[ -n "$(git -C "${REPO_DIR}" status --porcelain --untracked-files=no)" ]]; then
    rev="${rev}-dirty"
  fi
  echo "${rev}"
}

status_on_target() {
  local expect=()
  if [[ -n "${GIVEN[--artifact]:-}" ]]; then
    if ((LOCAL)); then
      expect=(--artifact "${ARTIFACT}")
    else
      [[ -f "${ARTIFACT}/${METADATA_FILE}" ]] || { err "artifact ${ARTIFACT} has no ${METADATA_FILE}"; return 1; }
      make_target_tmp && ship "${ARTIFACT}/${METADATA_FILE}" || return 1
      expect=(--artifact "${TARGET_TMP}")
    fi
  else
    local rev
    rev="$(checkout_rev)" || { err "cannot tell this checkout's rev (${REPO_DIR}); give --artifact DIR"; return 1; }
    expect=(--expect-rev "${rev}")
    if ! ((LOCAL)); then make_target_tmp && ship || return 1; fi
  fi
  guest_on_target status "${expect[@]}"
}

rollback_on_target() {
  local to=()
  [[ -z "${ROLLBACK_TO}" ]] || to=(--to "${ROLLBACK_TO}")
  if ! ((LOCAL)); then make_target_tmp && ship || return 1; fi
  guest_on_target rollback "${to[@]}"
}

# run_on_hosts FUNCTION: runs it once per target, each host on its own (a failure is recorded and
# the next host still runs), then prints the closing table. Returns the host's status for one host,
# 1 when any of several failed.
run_on_hosts() {
  local fn="$1" failed=0 out rc host
  local hosts=("${REMOTE_HOSTS[@]}")
  ((LOCAL)) && hosts=(local)
  for host in "${hosts[@]}"; do
    REMOTE_HOST="${host}"
    out="${LOCAL_TMP}/out"
    rc=0
    if ((LOCAL)) || setup_remote; then
      "${fn}" >"${out}" || rc=$?
    else
      rc=1
      : >"${out}"
    fi
    remove_target_tmp
    cat "${out}"
    if ((rc == 0)); then
      RESULTS+=("${host}|ok|$(tail -n 1 "${out}")")
    else
      failed="${rc}"
      RESULTS+=("${host}|FAILED (exit ${rc})|$(tail -n 1 "${out}")")
    fi
  done
  ((${#hosts[@]} == 1)) && return "${failed}"
  if ((${#hosts[@]} > 1)); then
    echo
    printf '%-24s %-16s %s\n' HOST RESULT SERVES
    local line
    for line in "${RESULTS[@]}"; do
      IFS='|' read -r host rc out <<<"${line}"
      printf '%-24s %-16s %s\n' "${host}" "${rc}" "${out:--}"
    done
  fi
  ((failed == 0))
}

cmd_build_import() {
  local top
  if ! top="$(git rev-parse --show-toplevel 2>/dev/null)"; then
    err "build-import streams a git working tree; run it inside the repository ($(pwd) is not)"
    exit 1
  fi
  # shellcheck disable=SC2317 # called through run_on_hosts
  build_import_here() { build_import_on_target "${top}"; }
  run_on_hosts build_import_here
}

main() {
  load_registry
  parse_args "$@"
  check_args
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  case "${SUBCOMMAND}" in
    build) cmd_build ;;
    *)
      find_guest
      setup_local
      case "${SUBCOMMAND}" in
        import) run_on_hosts import_on_target ;;
        build-import) cmd_build_import ;;
        status) run_on_hosts status_on_target ;;
        rollback) run_on_hosts rollback_on_target ;;
        *) usage_error "unknown subcommand ${SUBCOMMAND}" ;;
      esac
      ;;
  esac
}

main "$@"
