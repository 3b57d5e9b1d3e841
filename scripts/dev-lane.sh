#!/usr/bin/env bash
# The local lane: brings the whole system up on this machine (Debian, as root) and down again.
#
# Usage: scripts/dev-lane.sh up [--nix-images] | status | down
#   up     install what is missing, start incusd, create the project/profile/pool, import an image for
#          every role of roles.toml, start pika-server with a fresh token, provision one managed agent,
#          run one pikaci target in a pikaci-runner guest, print a summary. Safe to run twice.
#   status print what is up.
#   down   remove everything `up` created and nothing else.
#
# --nix-images builds the real NixOS role images (needs Nix with network and nixpkgs); without it a
# small busybox container image stands in for each role.
#
# Environment: PIKA_LANE_STATE (state dir, default /var/tmp/pika-dev-lane), PIKA_LANE_PORT (8787),
# PIKA_LANE_PROJECT (pika-managed-agents), PIKA_LANE_PROFILE (pika-agent-dev).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
readonly STATE="${PIKA_LANE_STATE:-/var/tmp/pika-dev-lane}"
readonly PORT="${PIKA_LANE_PORT:-8787}"
readonly PROJECT="${PIKA_LANE_PROJECT:-pika-managed-agents}"
readonly PROFILE="${PIKA_LANE_PROFILE:-pika-agent-dev}"
readonly POOL="default"
readonly AGENT_NAME="dev-lane-agent"
readonly CI_TARGET="snapshot-smoke" # declared in pikaci.toml; a busybox guest can run it

# shellcheck source=scripts/lib/test-env.sh
source "${REPO_ROOT}/scripts/lib/test-env.sh"
# shellcheck source=scripts/lib/test-image.sh
source "${REPO_ROOT}/scripts/lib/test-image.sh"
# shellcheck source=scripts/lib/roles.sh
source "${REPO_ROOT}/scripts/lib/roles.sh"

say() {
  echo "dev-lane: $*" >&2
}

bin() {
  echo "${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/debug/$1"
}

# Marks in the state dir record what `up` created, so `down` removes only that.
mark() { : >"${STATE}/created-$1"; }
marked() { [[ -f "${STATE}/created-$1" ]]; }

server_pid() {
  local pid
  [[ -f "${STATE}/server.pid" ]] || return 1
  pid="$(<"${STATE}/server.pid")"
  kill -0 "${pid}" 2>/dev/null && echo "${pid}"
}

lane_env() {
  export PIKA_SERVER_URL="http://127.0.0.1:${PORT}"
  export PIKA_SERVER_TOKENS_FILE="${STATE}/tokens"
  [[ -f "${STATE}/token" ]] && PIKA_SERVER_TOKEN="$(<"${STATE}/token")" && export PIKA_SERVER_TOKEN
  export PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT="${PROJECT}"
  export PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE="${PROFILE}"
  export PIKACI_STATE_DIR="${STATE}/pikaci-runs"
}

ensure_incus_objects() {
  if ! incus project show "${PROJECT}" >/dev/null 2>&1; then
    incus project create "${PROJECT}" >/dev/null
    mark project
  fi
  if ! incus profile show "${PROFILE}" --project "${PROJECT}" >/dev/null 2>&1; then
    incus profile create "${PROFILE}" --project "${PROJECT}" >/dev/null
    incus profile device add "${PROFILE}" root disk path=/ pool="${POOL}" --project "${PROJECT}" >/dev/null
    mark profile
  fi
}

# HEAD, with -dirty when tracked files changed (what a flake records as its dirtyRev).
checkout_rev() {
  local rev
  rev="$(git -C "${REPO_ROOT}" rev-parse --verify HEAD 2>/dev/null)" || { echo unknown; return 0; }
  [[ -z "$(git -C "${REPO_ROOT}" status --porcelain --untracked-files=no)" ]] || rev="${rev}-dirty"
  echo "${rev}"
}

import_role_images() {
  local role dir
  for role in "${PIKA_ROLE_IDS[@]}"; do
    if ((NIX_IMAGES)); then
      say "building the real NixOS image of ${role} (nix build; needs nixpkgs and network)"
      "${REPO_ROOT}/scripts/incus-role-image.sh" --role "${role}" build-import --local --project "${PROJECT}"
    else
      dir="${STATE}/images/${role}"
      say "importing a busybox stand-in image for ${role} under ${PIKA_ROLE_DEFAULT_ALIAS[${role}]} (use --nix-images for the real NixOS image)"
      # The stand-in carries the provenance a flake build of this checkout would (pika-guest status).
      test_image_container "${dir}" "${PIKA_ROLE_DESCRIPTION[${role}]} (busybox stand-in)" "${role}" \
        "${role}" "$(checkout_rev)"
      CI=1 "${REPO_ROOT}/scripts/incus-role-image.sh" --role "${role}" import --local \
        --project "${PROJECT}" --artifact "${dir}" >/dev/null
    fi
  done
}

start_server() {
  if server_pid >/dev/null; then
    say "pika-server already running (pid $(server_pid))"
    return 0
  fi
  if [[ ! -f "${STATE}/token" ]]; then
    "$(bin pika-server)" token add --admin dev-lane --tokens-file "${STATE}/tokens" >"${STATE}/token"
  fi
  PIKA_SERVER_LISTEN="127.0.0.1:${PORT}" \
    PIKA_SERVER_DB="${STATE}/pika-server.sqlite" \
    PIKA_AGENT_INCUS_PROJECT="${PROJECT}" \
    PIKA_AGENT_INCUS_PROFILE="${PROFILE}" \
    PIKA_AGENT_INCUS_STORAGE_POOL="${POOL}" \
    nohup "$(bin pika-server)" serve >"${STATE}/pika-server.log" 2>&1 &
  echo "$!" >"${STATE}/server.pid"
  local tries=0
  until curl -fsS "${PIKA_SERVER_URL}/healthz" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if ((tries > 100)) || ! server_pid >/dev/null; then
      err "pika-server did not become healthy; see ${STATE}/pika-server.log"
      # /healthz says only ok or not; the checks need the token.
      curl -sS -H "Authorization: Bearer $(<"${STATE}/token")" "${PIKA_SERVER_URL}/v1/health" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

provision_agent() {
  local id
  if [[ -f "${STATE}/agent-id" ]] && "$(bin pika)" agent show "$(<"${STATE}/agent-id")" >/dev/null 2>&1; then
    say "agent $(<"${STATE}/agent-id") already provisioned"
    return 0
  fi
  id="$("$(bin pika)" --json agent provision --name "${AGENT_NAME}" | jq -r '.id')"
  echo "${id}" >"${STATE}/agent-id"
}

run_ci_target() {
  (cd "${REPO_ROOT}" && "$(bin pikaci)" run "${CI_TARGET}")
}

# launch_command ROLE: how to start a guest of ROLE by hand from the image under its alias
# (pika-server, pikaci and pika-guest apply the role's whole contract themselves). A VM image of a
# role that is not Secure Boot capable declares requirements.secureboot=false, and Incus starts such
# an image only with Secure Boot off.
launch_command() {
  local role="$1" alias type args=()
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  type="$(incus query "/1.0/images/aliases/${alias//\//%2F}?project=${PROJECT}" 2>/dev/null | jq -r '.type // empty')" || true
  [[ -n "${type}" ]] || return 0
  if [[ "${type}" == "virtual-machine" ]]; then
    args+=(--vm)
    [[ "${PIKA_ROLE_SECURE_BOOT[${role}]}" == "false" ]] && args+=(-c security.secureboot=false)
  fi
  echo "incus launch ${alias} NAME --project ${PROJECT}${args[*]:+ ${args[*]}}"
}

summary() {
  local role alias fingerprint agent ci launch
  printf '%-18s %-16s %-14s %s\n' ROLE ALIAS FINGERPRINT PROJECT
  for role in "${PIKA_ROLE_IDS[@]}"; do
    alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
    # No project yet (nothing up) is a missing alias, not an error.
    fingerprint="$(incus image alias list --project "${PROJECT}" --format csv 2>/dev/null \
      | awk -F, -v a="${alias}" '$1 == a { print $2 }')" || true
    printf '%-18s %-16s %-14s %s\n' "${role}" "${alias}" "${fingerprint:-missing}" "${PROJECT}"
  done
  for role in "${PIKA_ROLE_IDS[@]}"; do
    launch="$(launch_command "${role}")"
    [[ -z "${launch}" ]] || echo "launch ${role} by hand: ${launch}"
  done
  if [[ -f "${STATE}/agent-id" ]]; then
    agent="$("$(bin pika)" --json agent show "$(<"${STATE}/agent-id")" 2>/dev/null \
      | jq -r '"\(.id) instance=\(.instance_name) state=\(.state) guest_role=\(.incus.guest_role // "-")"')" \
      || agent="unreachable"
    echo "agent: ${agent:-none}"
  fi
  ci="$("$(bin pikaci)" --json show latest 2>/dev/null | jq -r '"\(.run_id): \(.status)"')" || ci="none"
  echo "ci: ${ci}"
}

cmd_up() {
  mkdir -p "${STATE}"
  test_env_install_packages
  test_env_incus_ready || mark incusd
  test_env_start_daemon
  incus storage show "${POOL}" >/dev/null 2>&1 || mark pool
  incus profile device show default 2>/dev/null | grep -q '^root:' || mark root-device
  test_env_ensure_storage
  lane_env
  say "building pika-server, pika and pikaci"
  (cd "${REPO_ROOT}" && cargo build --quiet -p pika-server -p pika-cli -p pikaci)
  ensure_incus_objects
  import_role_images
  start_server
  lane_env
  provision_agent
  run_ci_target
  summary
}

cmd_status() {
  lane_env
  if pid="$(server_pid)"; then
    echo "pika-server: running (pid ${pid}) on ${PIKA_SERVER_URL}: $(curl -sS "${PIKA_SERVER_URL}/healthz" 2>&1 || true)"
  else
    echo "pika-server: not running"
  fi
  summary
}

cmd_down() {
  local pid
  [[ -d "${STATE}" ]] || { say "nothing to take down (${STATE} does not exist)"; return 0; }
  lane_env
  if [[ -f "${STATE}/agent-id" ]] && server_pid >/dev/null; then
    "$(bin pika)" agent delete "$(<"${STATE}/agent-id")" >/dev/null 2>&1 || true
  fi
  if pid="$(server_pid)"; then
    kill -TERM "${pid}"
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  fi
  if marked project; then
    test_env_delete_project "${PROJECT}"
  else
    # The project was there before: remove only our images and profile.
    local role
    for role in "${PIKA_ROLE_IDS[@]}"; do
      incus image delete --project "${PROJECT}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}" >/dev/null 2>&1 || true
    done
    if marked profile; then
      incus profile delete "${PROFILE}" --project "${PROJECT}" >/dev/null 2>&1 || true
    fi
  fi
  if marked root-device; then
    incus profile device remove default root >/dev/null 2>&1 || true
  fi
  if marked pool; then
    incus storage delete "${POOL}" >/dev/null 2>&1 || true
  fi
  if marked incusd; then
    timeout 120 incus admin shutdown >/dev/null 2>&1 || true
  fi
  rm -rf "${STATE}"
  say "down: removed what up created"
}

main() {
  NIX_IMAGES=0
  local cmd=""
  while (($# > 0)); do
    case "$1" in
      up | status | down) cmd="$1" ;;
      --nix-images) NIX_IMAGES=1 ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown argument '$1'"; usage >&2; exit 2 ;;
    esac
    shift
  done
  case "${cmd}" in
    up) cmd_up ;;
    status) cmd_status ;;
    down) cmd_down ;;
    *) err "missing command: up, status or down"; usage >&2; exit 2 ;;
  esac
}

main "$@"
