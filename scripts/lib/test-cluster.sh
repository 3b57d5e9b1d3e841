#!/usr/bin/env bash
# A real 3-member Incus cluster on this machine, built the way Incus's own test suite builds one
# (test/includes/clustering.sh): each member is an `incusd` with its own INCUS_DIR, in its own
# network namespace, joined over a bridge, with a `dir` storage pool per member.
#
# Usage: scripts/lib/test-cluster.sh COMMAND
#   up                 build the cluster (idempotent: a healthy cluster is reused, a stopped member
#                      restarted, a broken one rebuilt) and print its endpoint as KEY=VALUE lines
#   down               remove every namespace, process (by recorded pid) and directory `up` made
#   status [--json]    members, their pids and cluster status; exit 1 when not healthy
#   env                print the KEY=VALUE lines of a cluster that is up
#   member-stop N      stop member N's incusd (SIGTERM: its instances keep running, like an upgrade)
#   member-start N     start member N's incusd again
#   incus N ARGS...    run the incus CLI against member N's own unix socket (in its namespace)
#   prerequisites      exit 1 naming what this machine lacks (root, network namespaces, tools)
#
# Environment:
#   PIKA_TEST_CLUSTER_DIR   state directory (/var/lib/pika-test-cluster); every member's INCUS_DIR,
#                           the client certificate and the recorded pids live under it
#   PIKA_TEST_CLUSTER_NAME  prefix of the network namespaces (pkc): NAME-hub, NAME-m1..3
#
# Network: nothing touches the host's network. The bridge lives in the namespace NAME-hub, each
# member's veth pair lives in NAME-hub and NAME-mN, and the subnet 10.77.0.0/24 exists only there.
# Clients on the host reach member 1's HTTPS API through 127.0.0.1:PORT: a socat on host loopback
# hands each connection over a unix socket (a file, so it crosses namespaces) to a socat inside
# NAME-hub that connects to 10.77.0.11:8443. So pika-server, pikaci and curl run unchanged on the
# host, and no host interface or address is added.
#
# Member 1 is the endpoint: stop members 2 or 3 to take a member offline without losing the API.
set -euo pipefail

readonly CLUSTER_DIR="${PIKA_TEST_CLUSTER_DIR:-/var/lib/pika-test-cluster}"
readonly CLUSTER_NAME="${PIKA_TEST_CLUSTER_NAME:-pkc}"
readonly MEMBERS=(1 2 3)
readonly SUBNET_PREFIX="10.77.0"
readonly HUB_ADDRESS="${SUBNET_PREFIX}.1/24"
readonly API_PORT=8443
readonly POOL="default"
readonly WAIT_SECS=120
readonly MARKER=".pika-test-cluster"

# test_env_wait
# shellcheck source=scripts/lib/test-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-env.sh"

err() {
  echo "test-cluster: error: $*" >&2
}

log() {
  echo "test-cluster: $*" >&2
}

usage() {
  sed -n '6,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

hub_ns() { echo "${CLUSTER_NAME}-hub"; }
member_ns() { echo "${CLUSTER_NAME}-m$1"; }
member_name() { echo "node$1"; }
member_dir() { echo "${CLUSTER_DIR}/m$1"; }
member_address() { echo "${SUBNET_PREFIX}.1$1"; }
pid_file() { echo "${CLUSTER_DIR}/pids/$1"; }

# The environment of every incus and incusd we run for member N: nothing inherited but PATH, since
# the incus client prefers INCUS_SOCKET (tests export the main incusd's) over INCUS_DIR.
member_env() {
  echo env -i "PATH=${PATH}" "HOME=${CLUSTER_DIR}" "INCUS_DIR=$(member_dir "$1")" \
    "INCUS_CONF=${CLUSTER_DIR}/client-conf"
}

# Runs the incus CLI against member N's own unix socket inside member N's network namespace:
# `admin init` of a joining member connects to the cluster address itself, and from the host that
# address would leave the machine.
member_incus() {
  local n="$1" environment
  shift
  read -ra environment <<<"$(member_env "${n}")"
  ip netns exec "$(member_ns "${n}")" "${environment[@]}" incus "$@"
}

incusd_bin() {
  local candidate
  for candidate in /usr/libexec/incus/incusd /usr/lib/incus/incusd "$(command -v incusd 2>/dev/null)"; do
    [[ -n "${candidate}" && -x "${candidate}" ]] && { echo "${candidate}"; return 0; }
  done
  return 1
}

# Hard prerequisites: callers (the cluster suite) skip loudly when this fails.
check_prerequisites() {
  local missing=() tool
  ((EUID == 0)) || { err "needs root (network namespaces, incusd)"; return 1; }
  for tool in ip nsenter unshare setsid socat openssl incus curl jq; do
    command -v "${tool}" >/dev/null || missing+=("${tool}")
  done
  incusd_bin >/dev/null || missing+=(incusd)
  if ((${#missing[@]} > 0)); then
    err "missing: ${missing[*]} (scripts/test.sh installs them)"
    return 1
  fi
  [[ "${CLUSTER_DIR}" =~ ^/[A-Za-z0-9._/-]+$ ]] \
    || { err "PIKA_TEST_CLUSTER_DIR=${CLUSTER_DIR}: an absolute path of [A-Za-z0-9._/-]"; return 1; }
  [[ "${CLUSTER_NAME}" =~ ^[a-z][a-z0-9]{0,7}$ ]] \
    || { err "PIKA_TEST_CLUSTER_NAME=${CLUSTER_NAME}: 1-8 lowercase letters/digits, starting with a letter"; return 1; }
  local probe="${CLUSTER_NAME}-probe$$"
  if ! ip netns add "${probe}" 2>/dev/null; then
    err "cannot create a network namespace (ip netns add)"
    return 1
  fi
  ip netns delete "${probe}"
}

pid_alive() {
  local file
  file="$(pid_file "$1")"
  [[ -s "${file}" ]] && kill -0 "$(cat "${file}")" 2>/dev/null
}

# --- network --------------------------------------------------------------------------------

netns_exists() {
  [[ -e "/run/netns/$1" ]]
}

create_network() {
  local hub n ns
  hub="$(hub_ns)"
  ip netns add "${hub}"
  ip -n "${hub}" link set lo up
  ip -n "${hub}" link add br0 type bridge
  ip -n "${hub}" addr add "${HUB_ADDRESS}" dev br0
  ip -n "${hub}" link set br0 up
  for n in "${MEMBERS[@]}"; do
    ns="$(member_ns "${n}")"
    ip netns add "${ns}"
    ip -n "${ns}" link set lo up
    # Both ends are created inside our namespaces: the host never sees either.
    ip -n "${hub}" link add "m${n}" type veth peer name eth0 netns "${ns}"
    ip -n "${hub}" link set "m${n}" master br0 up
    ip -n "${ns}" addr add "$(member_address "${n}")/24" dev eth0
    ip -n "${ns}" link set eth0 up
  done
}

delete_network() {
  local n
  for n in "${MEMBERS[@]}"; do
    netns_exists "$(member_ns "${n}")" && ip netns delete "$(member_ns "${n}")"
  done
  netns_exists "$(hub_ns)" && ip netns delete "$(hub_ns)"
  return 0
}

# --- members --------------------------------------------------------------------------------

# Starts member N's incusd in its network namespace and a private mount namespace in which /sys
# shows that network namespace (as Incus's test suite does; `ip netns exec` would hide the cgroup
# mounts). setsid and nsenter/unshare exec in place, so $! is incusd's own pid.
spawn_member() {
  local n="$1" dir bin
  dir="$(member_dir "${n}")"
  bin="$(incusd_bin)"
  mkdir -p "${dir}" "${CLUSTER_DIR}/sysmove" "${CLUSTER_DIR}/pids"
  local environment
  read -ra environment <<<"$(member_env "${n}")"
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  setsid "${environment[@]}" nsenter --net="/run/netns/$(member_ns "${n}")" \
    unshare --mount --propagation slave sh -c '
      set -e
      mount --move /sys "$1"
      mount -t sysfs sysfs /sys
      mount --move "$1/fs/cgroup" /sys/fs/cgroup
      umount -l "$1"
      exec "$2" --group root --logfile "$3/incusd.log"
    ' sh "${CLUSTER_DIR}/sysmove" "${bin}" "${dir}" </dev/null >>"${dir}/incusd.out" 2>&1 &
  local pid="$!" answered
  echo "${pid}" >"$(pid_file "m${n}")"
  if ! member_incus "${n}" admin waitready --timeout "${WAIT_SECS}" >/dev/null 2>&1; then
    err "member ${n} (incusd pid ${pid}) not ready within ${WAIT_SECS}s; see ${dir}/incusd.log"
    return 1
  fi
  # Every later call configures this daemon: make sure the socket is really the one we started.
  answered="$(member_incus "${n}" query /1.0 | jq -r .environment.server_pid)"
  if [[ "${answered}" != "${pid}" ]]; then
    err "member ${n}'s socket is answered by pid ${answered}, not by the incusd we started (${pid})"
    return 1
  fi
}

bootstrap_member() {
  member_incus 1 admin init --preseed <<YAML
config:
  core.https_address: $(member_address 1):${API_PORT}
  images.auto_update_interval: 0
storage_pools:
- name: ${POOL}
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: ${POOL}
      type: disk
cluster:
  server_name: $(member_name 1)
  enabled: true
YAML
}

join_member() {
  local n="$1" token cert
  token="$(member_incus 1 cluster add "$(member_name "${n}")" --quiet)"
  cert="$(sed 's/^/    /' "$(member_dir 1)/cluster.crt")"
  member_incus "${n}" admin init --preseed <<YAML
cluster:
  enabled: true
  server_name: $(member_name "${n}")
  server_address: $(member_address "${n}"):${API_PORT}
  cluster_address: $(member_address 1):${API_PORT}
  cluster_certificate: |
${cert}
  cluster_token: ${token}
  member_config:
  - entity: storage-pool
    name: ${POOL}
    key: source
    value: ""
YAML
}

# Stops a recorded process: SIGTERM, then SIGKILL after a grace period.
stop_pid() {
  local name="$1" grace="${2:-30}" pid waited=0
  [[ -s "$(pid_file "${name}")" ]] || return 0
  pid="$(cat "$(pid_file "${name}")")"
  if kill -0 "${pid}" 2>/dev/null; then
    kill -TERM "${pid}" 2>/dev/null || true
    while kill -0 "${pid}" 2>/dev/null; do
      sleep 0.2
      waited=$((waited + 1))
      if ((waited > grace * 5)); then
        log "${name} (pid ${pid}) ignored SIGTERM for ${grace}s: SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
      fi
    done
  fi
  rm -f "$(pid_file "${name}")"
}

# --- client access --------------------------------------------------------------------------

make_client_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=pika test cluster client" \
    -keyout "${CLUSTER_DIR}/client.key" -out "${CLUSTER_DIR}/client.crt" 2>/dev/null
  chmod 0600 "${CLUSTER_DIR}/client.key"
  member_incus 1 config trust add-certificate "${CLUSTER_DIR}/client.crt" --name pika-test-client >/dev/null
}

free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 20000))
    if [[ -z "$(ss -Hltn "sport = :${port}" 2>/dev/null)" ]]; then
      echo "${port}"
      return 0
    fi
  done
  err "no free port on 127.0.0.1"
  return 1
}

# host 127.0.0.1:PORT --socat--> CLUSTER_DIR/api.sock --socat in NAME-hub--> member 1:8443
start_forwarder() {
  local port sock="${CLUSTER_DIR}/api.sock"
  rm -f "${sock}"
  setsid ip netns exec "$(hub_ns)" socat "UNIX-LISTEN:${sock},fork,mode=0600" \
    "TCP:$(member_address 1):${API_PORT}" </dev/null >>"${CLUSTER_DIR}/forward.log" 2>&1 &
  echo "$!" >"$(pid_file fwd-hub)"
  port="$(free_port)"
  setsid socat "TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:${sock}" \
    </dev/null >>"${CLUSTER_DIR}/forward.log" 2>&1 &
  echo "$!" >"$(pid_file fwd-host)"
  echo "${port}" >"${CLUSTER_DIR}/port"
}

endpoint() {
  echo "https://127.0.0.1:$(cat "${CLUSTER_DIR}/port")"
}

# GET /1.0 through the endpoint with the client certificate: trusted and clustered? (A probe only:
# the consumers pin the cluster certificate; it names no 127.0.0.1, hence --insecure here.)
endpoint_trusted() {
  [[ -s "${CLUSTER_DIR}/port" ]] || return 1
  local answer
  answer="$(curl -sS --max-time 10 --insecure --cert "${CLUSTER_DIR}/client.crt" \
    --key "${CLUSTER_DIR}/client.key" "$(endpoint)/1.0" 2>/dev/null)" || return 1
  [[ "$(jq -r '.metadata.auth + " " + (.metadata.environment.server_clustered | tostring)' <<<"${answer}")" \
    == "trusted true" ]]
}

wait_endpoint() {
  test_env_wait 40 0.5 endpoint_trusted || {
    err "the endpoint $(endpoint) does not answer as a trusted cluster; see ${CLUSTER_DIR}/forward.log"
    return 1
  }
}

print_env() {
  local names=() n
  for n in "${MEMBERS[@]}"; do names+=("$(member_name "${n}")"); done
  cat <<ENV
PIKA_CLUSTER_ENDPOINT=$(endpoint)
PIKA_CLUSTER_CLIENT_CERT=${CLUSTER_DIR}/client.crt
PIKA_CLUSTER_CLIENT_KEY=${CLUSTER_DIR}/client.key
PIKA_CLUSTER_SERVER_CERT=$(member_dir 1)/cluster.crt
PIKA_CLUSTER_MEMBERS=$(IFS=,; echo "${names[*]}")
PIKA_CLUSTER_STORAGE_POOL=${POOL}
PIKA_CLUSTER_DIR=${CLUSTER_DIR}
ENV
}

# --- state ----------------------------------------------------------------------------------

# "up": everything running; "stopped": complete, but some member incusd or forwarder not running;
# "none": nothing of ours; "broken": anything else (rebuilt by `up`).
cluster_state() {
  if [[ ! -e "${CLUSTER_DIR}" ]] && ! netns_exists "$(hub_ns)"; then
    echo none
    return
  fi
  [[ -f "${CLUSTER_DIR}/complete" ]] || { echo broken; return; }
  local n running=1
  netns_exists "$(hub_ns)" || { echo broken; return; }
  for n in "${MEMBERS[@]}"; do
    netns_exists "$(member_ns "${n}")" || { echo broken; return; }
    pid_alive "m${n}" || running=0
  done
  pid_alive fwd-hub && pid_alive fwd-host || running=0
  if ((running)); then echo up; else echo stopped; fi
}

# --- commands -------------------------------------------------------------------------------

cmd_up() {
  check_prerequisites
  local state n
  state="$(cluster_state)"
  case "${state}" in
    up)
      wait_endpoint || { log "running but not answering: rebuilding"; cmd_down; state=none; }
      ;;
    stopped)
      for n in "${MEMBERS[@]}"; do
        pid_alive "m${n}" || { log "restarting member ${n}"; spawn_member "${n}"; }
      done
      if ! pid_alive fwd-hub || ! pid_alive fwd-host; then
        stop_pid fwd-host 5
        stop_pid fwd-hub 5
        start_forwarder
      fi
      wait_endpoint
      ;;
    broken)
      log "a partial cluster is left over: removing it first"
      cmd_down
      state=none
      ;;
  esac
  if [[ "${state}" == "none" ]]; then
    log "building a 3-member cluster in ${CLUSTER_DIR} (namespaces $(hub_ns), $(member_ns 1)..3)"
    mkdir -p "${CLUSTER_DIR}/pids" "${CLUSTER_DIR}/client-conf"
    touch "${CLUSTER_DIR}/${MARKER}"
    # Unprivileged container roots need x on every parent directory (as /var/lib/incus has).
    chmod 0711 "${CLUSTER_DIR}"
    create_network
    spawn_member 1
    bootstrap_member >/dev/null
    for n in "${MEMBERS[@]:1}"; do
      spawn_member "${n}"
      join_member "${n}" >/dev/null
      log "member ${n} joined"
    done
    make_client_certificate
    start_forwarder
    wait_endpoint
    touch "${CLUSTER_DIR}/complete"
  fi
  print_env | tee "${CLUSTER_DIR}/env"
}

# Deletes member N's instances through its own socket (instances are processes: stopping incusd
# alone would leave them running).
delete_member_instances() {
  local n="$1" environment
  read -ra environment <<<"$(member_env "${n}")"
  # shellcheck disable=SC2016 # sh -c expands its own positional parameters
  member_incus "${n}" list --all-projects --format csv --columns enL 2>/dev/null \
    | awk -F, -v member="$(member_name "${n}")" '$3 == member { print $1, $2 }' \
    | xargs -r -P 8 -n 2 ip netns exec "$(member_ns "${n}")" "${environment[@]}" \
      sh -c 'timeout 60 incus delete --force --project "$0" "$1" >/dev/null 2>&1 || true'
}

# Last resort for instances whose deletion failed: their processes died with their member's
# monitors (LXC kills a container when its monitor dies), their empty cgroups are removed here.
# Only names listed from this cluster, and rmdir only removes empty cgroups.
remove_leftover_cgroups() {
  local project name lxc_name dir
  [[ -s "${CLUSTER_DIR}/instances" ]] || return 0
  while read -r project name; do
    lxc_name="${project}_${name}"
    [[ "${project}" == "default" ]] && lxc_name="${name}"
    for dir in /sys/fs/cgroup/lxc.{payload,monitor}."${lxc_name}" /sys/fs/cgroup/*/lxc.{payload,monitor}."${lxc_name}"; do
      [[ -d "${dir}" ]] || continue
      log "removing leftover cgroup ${dir}"
      find "${dir}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
  done <"${CLUSTER_DIR}/instances"
}

# Deletes every instance (a stopped member is started again for that), then stops the recorded
# processes, then removes the namespaces and the directory.
cmd_down() {
  local n pid
  if [[ "$(cluster_state)" == "stopped" ]]; then
    for n in "${MEMBERS[@]}"; do
      pid_alive "m${n}" || spawn_member "${n}" || log "member ${n} did not start; its instances die with it"
    done
  fi
  if pid_alive m1; then
    member_incus 1 list --all-projects --format csv --columns en 2>/dev/null | tr ',' ' ' \
      >"${CLUSTER_DIR}/instances" || true
  fi
  # `wait` names its jobs: a bare `wait` would also wait for an incusd spawned above.
  local jobs=()
  for n in "${MEMBERS[@]}"; do
    if pid_alive "m${n}"; then
      delete_member_instances "${n}" &
      jobs+=("$!")
    fi
  done
  ((${#jobs[@]} == 0)) || wait "${jobs[@]}"
  stop_pid fwd-host 5
  stop_pid fwd-hub 5
  jobs=()
  for n in "${MEMBERS[@]}"; do
    stop_pid "m${n}" 30 &
    jobs+=("$!")
  done
  wait "${jobs[@]}"
  # Whatever still runs in a member namespace was started by its incusd (forkstart, monitors).
  for n in "${MEMBERS[@]}"; do
    netns_exists "$(member_ns "${n}")" || continue
    for pid in $(ip netns pids "$(member_ns "${n}")" 2>/dev/null); do
      log "killing leftover pid ${pid} in $(member_ns "${n}")"
      kill -KILL "${pid}" 2>/dev/null || true
    done
  done
  remove_leftover_cgroups
  delete_network
  # Only a directory that `up` made is removed, whatever PIKA_TEST_CLUSTER_DIR says.
  if [[ -f "${CLUSTER_DIR}/${MARKER}" ]]; then
    rm -rf "${CLUSTER_DIR}"
  elif [[ -e "${CLUSTER_DIR}" ]]; then
    log "${CLUSTER_DIR} has no ${MARKER} marker: not made by up, left alone"
  fi
  log "down: no cluster left (${CLUSTER_DIR}, namespaces ${CLUSTER_NAME}-*)"
}

cmd_status() {
  local json=0 state n pid alive member_status members='[]' healthy=1
  [[ "${1:-}" == "--json" ]] && json=1
  state="$(cluster_state)"
  [[ "${state}" == "up" ]] || healthy=0
  local cluster_json='[]'
  if pid_alive m1; then
    cluster_json="$(member_incus 1 query '/1.0/cluster/members?recursion=1' 2>/dev/null || echo '[]')"
  fi
  for n in "${MEMBERS[@]}"; do
    pid=""
    [[ -s "$(pid_file "m${n}")" ]] && pid="$(cat "$(pid_file "m${n}")")"
    alive=false
    pid_alive "m${n}" && alive=true
    member_status="$(jq -r --arg name "$(member_name "${n}")" \
      '(.[] | select(.server_name == $name) | .status) // "unknown"' <<<"${cluster_json}")"
    [[ "${member_status}" == "Online" && "${alive}" == true ]] || healthy=0
    members="$(jq -c --arg name "$(member_name "${n}")" --arg ns "$(member_ns "${n}")" \
      --arg dir "$(member_dir "${n}")" --arg pid "${pid}" --argjson alive "${alive}" \
      --arg status "${member_status}" --arg address "$(member_address "${n}"):${API_PORT}" \
      '. + [{name: $name, netns: $ns, incus_dir: $dir, pid: $pid, running: $alive,
             cluster_status: $status, address: $address}]' <<<"${members}")"
  done
  local endpoint_value=""
  [[ -s "${CLUSTER_DIR}/port" ]] && endpoint_value="$(endpoint)"
  if ((json)); then
    jq -n --arg state "${state}" --arg endpoint "${endpoint_value}" --argjson members "${members}" \
      --argjson healthy "$( ((healthy)) && echo true || echo false)" \
      '{state: $state, healthy: $healthy, endpoint: $endpoint, members: $members}'
  else
    echo "cluster: ${state} (${CLUSTER_DIR})"
    [[ -n "${endpoint_value}" ]] && echo "endpoint: ${endpoint_value}"
    jq -r '.[] | "\(.name)  \(.cluster_status)  pid=\(.pid) running=\(.running)  netns=\(.netns)  \(.address)"' \
      <<<"${members}"
  fi
  ((healthy))
}

member_number() {
  [[ "${1:-}" =~ ^[123]$ ]] || { err "member number must be one of: ${MEMBERS[*]} (got '${1:-}')"; usage >&2; exit 2; }
  echo "$1"
}

main() {
  local command="${1:-}"
  (($# > 0)) && shift
  case "${command}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status "$@" ;;
    env)
      [[ "$(cluster_state)" == "none" ]] && { err "no cluster in ${CLUSTER_DIR}: run up"; exit 1; }
      print_env
      ;;
    member-stop)
      local n
      n="$(member_number "${1:-}")"
      stop_pid "m${n}" 60
      ;;
    member-start)
      local n
      n="$(member_number "${1:-}")"
      pid_alive "m${n}" || spawn_member "${n}"
      ;;
    incus)
      local n
      n="$(member_number "${1:-}")"
      shift
      pid_alive "m${n}" || { err "member ${n} is not running"; exit 1; }
      member_incus "${n}" "$@"
      ;;
    prerequisites) check_prerequisites ;;
    -h | --help | help) usage ;;
    *)
      err "unknown command '${command}' (valid: up, down, status, env, member-stop, member-start, incus, prerequisites)"
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
