#!/usr/bin/env bash
# Builds the Incus image of a Pika guest role and imports it under the role's alias.
#
# Usage:
#   scripts/incus-role-image.sh --role ROLE build
#   scripts/incus-role-image.sh --role ROLE import [--local | --remote-host HOST] [--project P] [--alias A] [--artifact DIR]
#   scripts/incus-role-image.sh --role ROLE build-import [--local | --remote-host HOST] [--project P] [--alias A]
#   scripts/incus-role-image.sh --help
#
#   build         nix build .#packages.<role system>.<role package> (out-link ./result)
#   import        import DIR (metadata.tar.xz + disk.qcow2 or rootfs.squashfs) into Incus on the target
#   build-import  stream the git working tree (tracked + untracked, not ignored) to the target, build
#                 there, import there; the temp directory is removed on every exit path
#
#   --role ROLE         a role from roles.toml (accepted before or after the subcommand)
#   --local             use the local Incus, no SSH
#   --remote-host HOST  SSH target (default pika-build)
#   --project P         Incus project (default pika-managed-agents)
#   --alias A           image alias (default: the role's default-alias)
#   --artifact DIR      image directory for import (default ./result)
#
# The alias never goes missing: the new image is imported without an alias, the alias is then pointed
# at it in one request, and only then is the previous image deleted (when no other alias uses it).
#
# Environment:
#   PIKA_BUILD_SSH_KEY        identity for ssh (-i)
#   PIKA_IMAGE_REMOTE_TMPDIR  parent of the temp directories on the remote host (default /tmp)
#   PIKA_IMAGE_SSH            ssh executable (default ssh)
#   PIKA_IMAGE_NIX            nix executable (default nix; on the remote host in remote mode)
#   CI                        when set, or stdout is not a terminal, Incus runs with --quiet
set -euo pipefail
shopt -s inherit_errexit

readonly PROG="incus-role-image.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly ROLES_SH="${SCRIPT_DIR}/lib/roles.sh"
readonly DEFAULT_REMOTE_HOST="pika-build"
readonly DEFAULT_PROJECT="pika-managed-agents"
readonly DEFAULT_ARTIFACT="result"
readonly METADATA_FILE="metadata.tar.xz"
readonly VM_DISK_FILE="disk.qcow2"
readonly CONTAINER_ROOTFS_FILE="rootfs.squashfs"
# Value rules. Incus accepts more, but these values reach a shell, a URL and Nix.
readonly PROJECT_RE='^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$'  # Incus itself rejects `_`, `/`, `:`, spaces
readonly ALIAS_RE='^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*$'  # DESIGN.md, as the codegen
readonly HOST_RE='^[A-Za-z0-9_][A-Za-z0-9._@-]*$'        # [user@]host, never an ssh option

# Filled in by parse_args and main.
ROLE=""
SUBCOMMAND=""
LOCAL=0
REMOTE_HOST="${DEFAULT_REMOTE_HOST}"
PROJECT="${DEFAULT_PROJECT}"
ALIAS=""
ARTIFACT="${DEFAULT_ARTIFACT}"
declare -A GIVEN=()
SSH_OPTS=()
INCUS=(incus)
SHOW_PROGRESS=0
TARGET_TMP=""
LOCAL_TMP=""
# Set by import_image.
IMPORTED_FP=""
# Set by resolve_artifact.
ARTIFACT_META=""
ARTIFACT_PAYLOAD=""

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
      --role | --remote-host | --project | --alias | --artifact)
        (($# >= 2)) || usage_error "$1 needs a value"
        GIVEN["$1"]=1
        case "$1" in
          --role) ROLE="$2" ;;
          --remote-host) REMOTE_HOST="$2" ;;
          --project) PROJECT="$2" ;;
          --alias) ALIAS="$2" ;;
          --artifact) ARTIFACT="$2" ;;
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
  [[ -n "${SUBCOMMAND}" ]] || usage_error "missing subcommand (build, import or build-import)"
  local unsupported=()
  case "${SUBCOMMAND}" in
    build) unsupported=(--local --remote-host --project --alias --artifact) ;;
    import) ;;
    build-import) unsupported=(--artifact) ;;
    *) usage_error "unknown subcommand ${SUBCOMMAND}; expected build, import or build-import" ;;
  esac
  local option
  for option in "${unsupported[@]}"; do
    [[ -z "${GIVEN[${option}]:-}" ]] || usage_error "${option} does not apply to ${SUBCOMMAND}"
  done
  [[ -n "${ROLE}" ]] || usage_error "missing --role; valid roles: $(valid_roles)"
  is_role "${ROLE}" || usage_error "unknown role '${ROLE}' (--role); valid roles: $(valid_roles)"
  if ((LOCAL)) && [[ -n "${GIVEN[--remote-host]:-}" ]]; then
    usage_error "--local and --remote-host ${REMOTE_HOST} exclude each other"
  fi
  [[ -n "${GIVEN[--alias]:-}" ]] || ALIAS="${PIKA_ROLE_DEFAULT_ALIAS[${ROLE}]}"
  [[ "${PROJECT}" =~ ${PROJECT_RE} ]] \
    || usage_error "invalid --project '${PROJECT}': letters, digits, '.' and '-', starting with a letter or digit"
  is_valid_alias "${ALIAS}" \
    || usage_error "invalid --alias '${ALIAS}': segments of letters, digits, '.', '_', '-' separated by single '/', starting with a letter or digit"
  [[ "${REMOTE_HOST}" =~ ${HOST_RE} ]] \
    || usage_error "invalid --remote-host '${REMOTE_HOST}': [user@]host of letters, digits, '.', '_', '-'"
  [[ -n "${ARTIFACT}" ]] || usage_error "invalid --artifact '': give a directory"
}

# Words quoted for the remote shell, which re-parses the command line ssh sends.
quote_argv() {
  local quoted
  quoted="$(printf '%q ' "$@")"
  echo "${quoted% }"
}

# Runs argv on the target: here with --local, on the remote host through ssh otherwise. ssh gets
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

run_here() {
  "$@"
}

target_incus() {
  on_target "${INCUS[@]}" "$@"
}

target_name() {
  if ((LOCAL)); then echo "the local Incus"; else echo "${REMOTE_HOST}"; fi
}

setup_target() {
  if [[ -t 1 && -z "${CI:-}" ]]; then SHOW_PROGRESS=1; fi
  LOCAL_TMP="$(mktemp -d "${TMPDIR:-/tmp}/pika-incus-role-image.XXXXXX")"
  ((LOCAL)) && return 0
  [[ -n "${PIKA_BUILD_SSH_KEY:-}" ]] && SSH_OPTS+=(-i "${PIKA_BUILD_SSH_KEY}")
  SSH_OPTS+=(-o StrictHostKeyChecking=accept-new)
  local uid
  uid="$(on_target id -u)" || { err "cannot reach ${REMOTE_HOST} over ssh"; exit 1; }
  [[ "${uid}" == "0" ]] || INCUS=(sudo incus)
}

make_target_tmp() {
  local parent="${TMPDIR:-/tmp}"
  ((LOCAL)) || parent="${PIKA_IMAGE_REMOTE_TMPDIR:-/tmp}"
  TARGET_TMP="$(on_target mktemp -d "${parent}/pika-incus-image.XXXXXX")"
  if [[ "${TARGET_TMP}" != /* ]]; then
    err "mktemp on $(target_name) returned '${TARGET_TMP}', not an absolute path"
    TARGET_TMP=""
    exit 1
  fi
}

cleanup() {
  [[ -z "${LOCAL_TMP}" ]] || rm -rf -- "${LOCAL_TMP}"
  LOCAL_TMP=""
  [[ -n "${TARGET_TMP}" ]] || return 0
  on_target rm -rf -- "${TARGET_TMP}" || err "could not remove ${TARGET_TMP} on $(target_name)"
  TARGET_TMP=""
}

# resolve_artifact DIR RUNNER: sets ARTIFACT_META and ARTIFACT_PAYLOAD, checking with RUNNER (run_here
# or on_target) that the files exist. The role's instance type picks the payload when both exist.
resolve_artifact() {
  local dir="$1" runner="$2" preferred other
  if [[ "${PIKA_ROLE_INSTANCE_TYPE[${ROLE}]}" == "container" ]]; then
    preferred="${CONTAINER_ROOTFS_FILE}" other="${VM_DISK_FILE}"
  else
    preferred="${VM_DISK_FILE}" other="${CONTAINER_ROOTFS_FILE}"
  fi
  if ! "${runner}" test -f "${dir}/${METADATA_FILE}"; then
    err "artifact ${dir} has no ${METADATA_FILE} (needs ${METADATA_FILE} plus ${VM_DISK_FILE} or ${CONTAINER_ROOTFS_FILE}; build it: scripts/incus-role-image.sh --role ${ROLE} build)"
    exit 1
  fi
  ARTIFACT_META="${dir}/${METADATA_FILE}"
  if "${runner}" test -f "${dir}/${preferred}"; then
    ARTIFACT_PAYLOAD="${dir}/${preferred}"
  elif "${runner}" test -f "${dir}/${other}"; then
    note "role ${ROLE} is a ${PIKA_ROLE_INSTANCE_TYPE[${ROLE}]} role, but ${dir} holds ${other}: importing that"
    ARTIFACT_PAYLOAD="${dir}/${other}"
  else
    err "artifact ${dir} has neither ${VM_DISK_FILE} (virtual machine) nor ${CONTAINER_ROOTFS_FILE} (container)"
    exit 1
  fi
}

alias_url() {
  echo "/1.0/images/aliases/${ALIAS//\//%2F}?project=${PROJECT}"
}

check_project() {
  if ! target_incus query "/1.0/projects/${PROJECT}" >/dev/null; then
    err "Incus project ${PROJECT} (--project) is not available on $(target_name)"
    exit 1
  fi
}

# Prints the fingerprint the alias points at, or nothing when the alias does not exist.
alias_target() {
  local out
  if out="$(target_incus query "$(alias_url)" 2>&1)"; then
    sed -n 's/^[[:space:]]*"target": "\([0-9a-f]\{64\}\)".*/\1/p' <<<"${out}"
  elif [[ "${out}" == *"roject not found"* ]]; then
    err "Incus project ${PROJECT} (--project) is not available on $(target_name)"
    return 1
  elif [[ "${out}" == *"not found"* ]]; then
    return 0
  else
    err "cannot read alias ${ALIAS} in project ${PROJECT}: ${out}"
    return 1
  fi
}

# Incus fingerprints a split image as sha256(metadata tarball || rootfs or disk).
image_fingerprint() {
  local sum
  # shellcheck disable=SC2016 # $1 and $2 expand in the target's shell, not here
  sum="$(on_target bash -c 'set -o pipefail; cat -- "$1" "$2" | sha256sum' fingerprint "$1" "$2")"
  sum="${sum%% *}"
  [[ "${sum}" =~ ^[0-9a-f]{64}$ ]] || { err "cannot hash $1 and $2 on $(target_name)"; return 1; }
  echo "${sum}"
}

# The previous image is deleted unless another alias of the project still targets it. Instances do
# not count as references: Incus copies (dir) or clones (zfs, btrfs, lvm) the image into each
# instance's volume and keeps a clone parent alive itself, so deleting is safe for them, and keeping
# the image for as long as agents created from it live would leave one image behind per import.
retire_image() {
  local old="$1" listing refs
  listing="$(target_incus query "/1.0/images/aliases?project=${PROJECT}&recursion=1")" || {
    err "cannot list aliases of project ${PROJECT}; previous image ${old} kept"
    return 0
  }
  refs="$(grep -c "\"target\": \"${old}\"" <<<"${listing}" || true)"
  if ((refs > 0)); then
    note "keeping previous image ${old}: ${refs} other alias(es) in ${PROJECT} point at it"
  elif target_incus image delete --project "${PROJECT}" "${old}"; then
    note "deleted previous image ${old}"
  else
    err "alias moved, but deleting the previous image ${old} failed; delete it by hand"
  fi
}

# import_image META PAYLOAD: imports without an alias and sets IMPORTED_FP from Incus's own report.
# Returns 3 when the identical image is already in the project, 1 on any other failure. Incus's
# output (upload progress, result line) is shown on a terminal outside CI and swallowed otherwise.
import_image() {
  local out="${LOCAL_TMP}/import.out" errors="${LOCAL_TMP}/import.err" status=0
  IMPORTED_FP=""
  if ((SHOW_PROGRESS)); then
    target_incus image import --project "${PROJECT}" "$1" "$2" 2>"${errors}" | tee "${out}" || status=$?
  else
    target_incus image import --project "${PROJECT}" "$1" "$2" >"${out}" 2>"${errors}" || status=$?
  fi
  if ((status != 0)); then
    grep -q "already exists" "${errors}" && return 3
    cat "${errors}" >&2
    return 1
  fi
  IMPORTED_FP="$(tr '\r' '\n' <"${out}" | sed -n 's/.*fingerprint: \([0-9a-f]\{64\}\).*/\1/p' | tail -n 1)"
  # Older or newer clients may word the result differently: fall back to hashing.
  [[ -n "${IMPORTED_FP}" ]] || IMPORTED_FP="$(image_fingerprint "$1" "$2")"
}

# Imports META + PAYLOAD (paths on the target) without an alias, then moves the alias in one request.
import_with_swap() {
  local meta="$1" payload="$2" fp old status=0
  old="$(alias_target)"
  import_image "${meta}" "${payload}" || status=$?
  case "${status}" in
    0) fp="${IMPORTED_FP}" ;;
    3)
      fp="$(image_fingerprint "${meta}" "${payload}")"
      note "image ${fp} is already in project ${PROJECT}; not importing it again"
      ;;
    *)
      err "importing ${meta} + ${payload} into project ${PROJECT} on $(target_name) failed; alias ${ALIAS} is unchanged (${old:-absent})"
      return 1
      ;;
  esac
  if [[ "${old}" == "${fp}" ]]; then
    note "alias ${ALIAS} already points at ${fp}; nothing to do"
    return 0
  fi
  if [[ -z "${old}" ]]; then
    target_incus image alias create --project "${PROJECT}" "${ALIAS}" "${fp}" >/dev/null
  else
    # One PATCH retargets the alias atomically; delete + create would leave a gap.
    target_incus query -X PATCH "$(alias_url)" --data "{\"target\":\"${fp}\"}" >/dev/null
  fi
  note "alias ${ALIAS} -> ${fp} (project ${PROJECT} on $(target_name))"
  [[ -z "${old}" ]] || retire_image "${old}"
}

flake_ref() {
  echo ".#packages.${PIKA_ROLE_SYSTEM[${ROLE}]}.${PIKA_ROLE_PACKAGE[${ROLE}]}"
}

cmd_build() {
  "${PIKA_IMAGE_NIX:-nix}" build --out-link result "$(flake_ref)"
}

cmd_import() {
  resolve_artifact "${ARTIFACT}" run_here
  if ((LOCAL)); then
    import_with_swap "${ARTIFACT_META}" "${ARTIFACT_PAYLOAD}"
    return
  fi
  check_project
  make_target_tmp
  local files=("${ARTIFACT_META##*/}" "${ARTIFACT_PAYLOAD##*/}")
  # -h: ./result and its files are symlinks into the Nix store.
  tar -C "${ARTIFACT}" -chf - "${files[@]}" | pipe_to_target tar -xf - -C "${TARGET_TMP}"
  import_with_swap "${TARGET_TMP}/${files[0]}" "${TARGET_TMP}/${files[1]}"
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

cmd_build_import() {
  local top
  if ! top="$(git rev-parse --show-toplevel 2>/dev/null)"; then
    err "build-import streams a git working tree; run it inside the repository ($(pwd) is not)"
    exit 1
  fi
  check_project
  make_target_tmp
  tree_files "${top}" | tar -C "${top}" --null -T - -cf - | pipe_to_target tar -xf - -C "${TARGET_TMP}"
  note "building $(flake_ref) in ${TARGET_TMP} on $(target_name)"
  # shellcheck disable=SC2016 # $1 and $@ expand in the target's shell, not here
  on_target sh -c 'cd "$1" && shift && exec "$@"' build "${TARGET_TMP}" \
    "${PIKA_IMAGE_NIX:-nix}" build --out-link result "$(flake_ref)"
  resolve_artifact "${TARGET_TMP}/result" on_target
  import_with_swap "${ARTIFACT_META}" "${ARTIFACT_PAYLOAD}"
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
    import)
      setup_target
      cmd_import
      ;;
    build-import)
      setup_target
      cmd_build_import
      ;;
    *) usage_error "unknown subcommand ${SUBCOMMAND}" ;;
  esac
}

main "$@"
