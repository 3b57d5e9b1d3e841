#!/usr/bin/env bash
# A real 3-member Incus cluster (scripts/lib/test-cluster.sh): `up` twice, the endpoint trusts the
# client certificate and nothing else, an image imported once launches on every member, a stopped
# member goes Offline and comes back with its instance running, and `down` leaves no namespace,
# process, directory or mount behind while the main incusd keeps working.
#
# Exits 77 (SKIPPED, loudly) only when the machine lacks a hard prerequisite (root, network
# namespaces, incusd, socat).
set -euo pipefail

readonly CLUSTER="scripts/lib/test-cluster.sh"
readonly SUITE="70-cluster"
# shellcheck source=scripts/lib/suite.sh
source scripts/lib/suite.sh

# Objects of concurrent test runs (their pika-test-* projects) are left out of the comparison.
main_incus_state() {
  {
    incus project list --format csv | sort
    incus list --all-projects --format csv --columns en | sort
    incus storage list --format csv --columns n | sort
  } | grep -v 'pika-test-' || true
}

# Waits until member NAME has cluster status STATUS (as member 1 sees it).
wait_member_status() {
  local name="$1" want="$2" got="" waited=0
  while ((waited < 90)); do
    got="$(bash "${CLUSTER}" incus 1 query "/1.0/cluster/members/${name}" | jq -r .status)"
    [[ "${got}" == "${want}" ]] && return 0
    sleep 1
    waited=$((waited + 1))
  done
  fail_now "member ${name} is ${got}, expected ${want} within 90s"
}

# From the cluster-wide list: a GET of one instance on an offline member fails outright.
instance_status() {
  bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${PROJECT}&recursion=1" \
    | jq -r --arg name "$1" '.[] | select(.name == $name) | .status'
}

# --- pika-server against the cluster (scripts/lib/cluster-agents.sh) ---------------------------

start_server() {
  cluster_server_start "${WORK}/$1" "${@:2}" || fail_now "pika-server $1 did not start"
  SERVER_URL="${PIKA_SERVER_URL}" TOKEN="${PIKA_SERVER_TOKEN}"
}

stop_server() {
  cluster_server_stop "${WORK}/$1"
}

# The health details (/healthz itself only says ok or not).
health() {
  curl -sS -H "Authorization: Bearer ${TOKEN}" "${SERVER_URL}/v1/health"
}

agents_json() {
  "${CLUSTER_BIN_DIR}/pika" --json agent list
}

# wait_agents JQ_FILTER WHAT: until the agent list satisfies the filter (true), 120 s at most.
wait_agents() {
  local filter="$1" what="$2" waited=0
  until [[ "$(agents_json | jq "${filter}")" == "true" ]]; do
    sleep 1
    waited=$((waited + 1))
    if ((waited > 120)); then
      agents_json | jq -c '[.agents[] | {id, state, location}]' >&2
      fail_now "agents did not reach: ${what} (120s)"
    fi
  done
}

provision_many() {
  cluster_provision_many "$1" 10 || fail_now "provisioning $1 agents through pika-server failed"
}

# run_ci_job GROUP: one pikaci job in a CI guest on the cluster ("" = no group); sets CI_LOCATION.
run_ci_job() {
  local group="$1" ci="${WORK}/ci-${1:-any}"
  mkdir -p "${ci}"
  git -C "${ci}" init -q
  printf 'cluster\n' >"${ci}/marker"
  printf '[targets.cluster-smoke]\ncommand = "grep -qx cluster marker"\n' >"${ci}/pikaci.toml"
  PIKACI_REMOTE_LINUX_VM_INCUS_ENDPOINT="${PIKA_CLUSTER_ENDPOINT}" \
    PIKACI_REMOTE_LINUX_VM_INCUS_CLIENT_CERT_PATH="${PIKA_CLUSTER_CLIENT_CERT}" \
    PIKACI_REMOTE_LINUX_VM_INCUS_CLIENT_KEY_PATH="${PIKA_CLUSTER_CLIENT_KEY}" \
    PIKACI_REMOTE_LINUX_VM_INCUS_SERVER_CERT_PATH="${PIKA_CLUSTER_SERVER_CERT}" \
    PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT="${AGENTS}" PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE="${AGENTS}" \
    PIKACI_REMOTE_LINUX_VM_INCUS_CLUSTER_GROUP="${group}" PIKACI_STATE_DIR="${ci}/runs" \
    "${CLUSTER_BIN_DIR}/pikaci" --config "${ci}/pikaci.toml" run >"${ci}/out.log" 2>&1 \
    || { cat "${ci}/out.log" >&2; fail_now "the pikaci job on the cluster did not pass"; }
  CI_LOCATION="$(PIKACI_STATE_DIR="${ci}/runs" "${CLUSTER_BIN_DIR}/pikaci" --config "${ci}/pikaci.toml" show latest --json \
    | jq -r '.jobs[0].remote_linux_vm.location // "none"')"
}

# GET /1.0 through the endpoint: "<auth> <clustered>".
endpoint_auth() {
  curl -sS --max-time 10 --insecure "$@" "${PIKA_CLUSTER_ENDPOINT}/1.0" \
    | jq -r '.metadata.auth + " " + (.metadata.environment.server_clustered // false | tostring)'
}

main() {
  local skip_reason
  if ! skip_reason="$(bash "${CLUSTER}" prerequisites 2>&1)"; then
    echo "${SUITE}: SKIPPED: ${skip_reason}" >&2
    exit 77
  fi
  # One cluster test at a time on a machine (fixed namespace names and state directory).
  exec {lock}>/tmp/pika-test-cluster.lock
  flock "${lock}"
  export PIKA_TEST_CLUSTER_DIR="/var/lib/pika-test-cluster"
  PROJECT="${PIKA_TEST_PROJECT_PREFIX:-pika-test}-cluster"
  WORK="${PIKA_TEST_WORK:-/tmp}/cluster-suite"
  mkdir -p "${WORK}"
  local before start="${SECONDS}"
  before="$(main_incus_state)"
  trap 'stop_server pinned; stop_server main; bash "${CLUSTER}" down >/dev/null 2>&1 || true' EXIT

  # --- up, twice ---------------------------------------------------------------------------
  local first second
  first="$(bash "${CLUSTER}" up)" || fail_now "up failed"
  eval "$(grep '^PIKA_CLUSTER_[A-Z_]*=' <<<"${first}" | sed 's/^/export /')"
  [[ "${PIKA_CLUSTER_ENDPOINT}" =~ ^https://127\.0\.0\.1:[0-9]+$ ]] \
    || fail_now "endpoint is not on loopback: ${PIKA_CLUSTER_ENDPOINT}"
  local pids_first
  pids_first="$(bash "${CLUSTER}" status --json | jq -r '[.members[].pid] | join(" ")')"
  second="$(bash "${CLUSTER}" up)" || fail_now "second up failed"
  [[ "${first}" == "${second}" ]] || fail_now "a second up changed the endpoint or credentials"
  [[ "$(bash "${CLUSTER}" status --json | jq -r '[.members[].pid] | join(" ")')" == "${pids_first}" ]] \
    || fail_now "a second up restarted members"
  local status_json
  status_json="$(bash "${CLUSTER}" status --json)" || fail_now "status of a fresh cluster is not healthy"
  [[ "$(jq -r '[.members[] | select(.cluster_status == "Online" and .running)] | length' <<<"${status_json}")" == 3 ]] \
    || fail_now "expected 3 online members: ${status_json}"
  pass "up twice: same endpoint, same member pids, 3 members online ($((SECONDS - start))s)"

  # --- the endpoint trusts our client certificate and nothing else ---------------------------
  [[ "$(endpoint_auth --cert "${PIKA_CLUSTER_CLIENT_CERT}" --key "${PIKA_CLUSTER_CLIENT_KEY}")" == "trusted true" ]] \
    || fail_now "the endpoint does not trust the printed client certificate"
  [[ "$(endpoint_auth)" == "untrusted false" ]] || fail_now "the endpoint trusts a client without a certificate"
  pass "endpoint ${PIKA_CLUSTER_ENDPOINT} trusts the client certificate, not an anonymous client"

  # --- one image import, every member launches it ------------------------------------------
  local images="${PIKA_TEST_WORK:-/tmp}/cluster-image"
  # shellcheck source=scripts/lib/test-image.sh
  source scripts/lib/test-image.sh
  # shellcheck source=scripts/lib/cluster-agents.sh
  source scripts/lib/cluster-agents.sh
  test_image_container "${images}" "pika cluster test image" "cluster"
  bash "${CLUSTER}" incus 1 project create "${PROJECT}" >/dev/null
  bash "${CLUSTER}" incus 1 image import "${images}/metadata.tar.xz" "${images}/rootfs.squashfs" \
    --project "${PROJECT}" --alias cluster-test >/dev/null
  local member
  local member output
  for member in ${PIKA_CLUSTER_MEMBERS//,/ }; do
    output="$(bash "${CLUSTER}" incus 1 launch cluster-test "c-${member}" --project "${PROJECT}" \
      --target "${member}" --storage "${PIKA_CLUSTER_STORAGE_POOL}" 2>&1)" \
      || fail_now "launch on ${member} of the image imported through node1 failed: ${output}"
  done
  local placed
  placed="$(bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${PROJECT}&recursion=1" \
    | jq -r '[.[] | "\(.name)=\(.location)=\(.status)"] | sort | join(" ")')"
  [[ "${placed}" == "c-node1=node1=Running c-node2=node2=Running c-node3=node3=Running" ]] \
    || fail_now "expected one running instance per member, got: ${placed}"
  pass "image imported once through node1, running on every member"

  # --- pika-server places 30 agents over the members ----------------------------------------
  cargo build -q -p pika-server -p pika-cli -p pikaci || fail_now "building pika-server, pika and pikaci"
  AGENTS="${PROJECT}-agents"
  cluster_agents_project "${AGENTS}" "${images}"
  start_server main
  local started="${SECONDS}"
  provision_many 30
  pass "30 agents provisioned through pika-server in $((SECONDS - started))s"
  local listed spread
  listed="$(agents_json)"
  [[ "$(jq '[.agents[] | select(.state == "running")] | length' <<<"${listed}")" == 30 ]] \
    || fail_now "not all 30 agents are running: $(jq -c '[.agents[].state] | group_by(.) | map({(.[0]): length}) | add' <<<"${listed}")"
  spread="$(jq -r '[.agents[].location] | group_by(.) | map("\(.[0])=\(length)") | join(" ")' <<<"${listed}")"
  (($(jq '[.agents[].location] | unique | length' <<<"${listed}") >= 2)) \
    || fail_now "the 30 agents did not spread over two members or more: ${spread}"
  # The recorded location is where Incus says each instance is.
  local incus_locations api_locations
  incus_locations="$(bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${AGENTS}&recursion=1" \
    | jq -r '[.[] | "\(.name)=\(.location)"] | sort | join(" ")')"
  api_locations="$(jq -r '[.agents[] | "\(.instance_name)=\(.location)"] | sort | join(" ")' <<<"${listed}")"
  [[ "${incus_locations}" == "${api_locations}" ]] || fail_now "recorded locations differ from Incus's"
  local shown_id shown
  shown_id="$(jq -r '.agents[0].id' <<<"${listed}")"
  shown="$("${CLUSTER_BIN_DIR}/pika" agent show "${shown_id}")"
  grep -q "^location: *$(jq -r '.agents[0].location' <<<"${listed}")$" <<<"${shown}" \
    || fail_now "pika agent show does not print the location: ${shown}"
  health | jq -e '.checks[] | select(.name == "cluster") | .detail | test("3 members, ok")' \
    >/dev/null || fail_now "/v1/health does not show the healthy cluster: $(health)"
  pass "spread ${spread}; locations match Incus; pika agent show and /v1/health show them"

  # --- a stopped member makes its agents unreachable, nothing is deleted, and they come back --
  local on_node3
  on_node3="$(jq '[.agents[] | select(.location == "node3")] | length' <<<"${listed}")"
  bash "${CLUSTER}" member-stop 3
  timeout 10 incus query /1.0 >/dev/null || fail_now "the main incusd stopped answering"
  wait_member_status node3 Offline
  [[ "$(instance_status c-node3)" == "Error" ]] || fail_now "an instance on an offline member is not reported as Error"
  bash "${CLUSTER}" status >/dev/null && fail_now "status reports a cluster with a stopped member as healthy"
  wait_agents "[.agents[] | select(.location == \"node3\") | .state == \"unreachable\"] | all" \
    "agents on node3 unreachable"
  listed="$(agents_json)"
  [[ "$(jq '.agents | length' <<<"${listed}")" == 30 ]] || fail_now "agents were deleted while node3 was offline"
  [[ "$(jq '[.agents[] | select(.state == "unreachable")] | length' <<<"${listed}")" == "${on_node3}" ]] \
    || fail_now "agents off node3 became unreachable too"
  [[ "$(bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${AGENTS}" | jq length)" == 30 ]] \
    || fail_now "instances were deleted while node3 was offline"
  health | jq -e --arg n "${on_node3}" '.checks[] | select(.name == "cluster") | .detail | test("degraded.*node3 Offline.*; " + $n + " agents unreachable")' \
    >/dev/null || fail_now "/v1/health does not name the offline member: $(health)"
  [[ "$(curl -sS "${SERVER_URL}/healthz")" == '{"ok":true}' ]] \
    || fail_now "/healthz fails while the server can still place agents on two members"
  pass "node3 stopped: its ${on_node3} agents unreachable, all 30 rows and instances kept, /v1/health degraded"
  bash "${CLUSTER}" member-start 3
  wait_member_status node3 Online
  [[ "$(instance_status c-node3)" == "Running" ]] || fail_now "c-node3 is not running after its member returned"
  wait_agents '[.agents[] | .state == "running"] | all' "all 30 agents running again"
  pass "node3 restarted: Online, its agents running again without operator action"

  # --- an operator's cluster group pins placement ---------------------------------------------
  bash "${CLUSTER}" incus 1 cluster group create pika-pinned >/dev/null
  bash "${CLUSTER}" incus 1 cluster group assign node2 default,pika-pinned >/dev/null
  local main_url="${SERVER_URL}" main_token="${TOKEN}"
  # A second server on the same members owns its own gateway port range: the main server's
  # proxy devices still hold ports of the default range there.
  start_server pinned --incus-cluster-group pika-pinned --gateway-ports 19000-19199
  provision_many 6
  [[ "$(agents_json | jq -r '[.agents[].location] | unique | join(",")')" == "node2" ]] \
    || fail_now "agents of a server with --incus-cluster-group pika-pinned left the group: $(agents_json | jq -c '[.agents[].location]')"
  for shown_id in $(agents_json | jq -r '.agents[].id'); do
    "${CLUSTER_BIN_DIR}/pika" agent delete "${shown_id}" >/dev/null || fail_now "deleting agent ${shown_id}"
  done
  stop_server pinned
  export PIKA_SERVER_URL="${main_url}" PIKA_SERVER_TOKEN="${main_token}"
  SERVER_URL="${main_url}" TOKEN="${main_token}"
  pass "--incus-cluster-group pika-pinned put all 6 agents on node2 (its only member)"

  # --- pikaci runs a job on the cluster, through the same endpoint --------------------------
  run_ci_job ""
  [[ "${CI_LOCATION}" =~ ^node[123]$ ]] || fail_now "the pikaci job recorded no cluster member: ${CI_LOCATION}"
  local ci_anywhere="${CI_LOCATION}"
  run_ci_job pika-pinned
  [[ "${CI_LOCATION}" == "node2" ]] \
    || fail_now "PIKACI_REMOTE_LINUX_VM_INCUS_CLUSTER_GROUP=pika-pinned ran the job on ${CI_LOCATION}"
  pass "pikaci jobs passed on the cluster (on ${ci_anywhere}; with the cluster group pika-pinned on node2)"

  for shown_id in $(agents_json | jq -r '.agents[].id'); do
    "${CLUSTER_BIN_DIR}/pika" agent delete "${shown_id}" >/dev/null || fail_now "deleting agent ${shown_id}"
  done
  [[ "$(bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${AGENTS}" | jq length)" == 0 ]] \
    || fail_now "instances remain after deleting every agent"
  stop_server main
  pass "every agent deleted through the API, no instance left"

  # --- down leaves nothing behind ------------------------------------------------------------
  local recorded_pids
  recorded_pids="$(bash "${CLUSTER}" status --json | jq -r '[.members[].pid] | join(" ")')"
  recorded_pids+=" $(cat "${PIKA_TEST_CLUSTER_DIR}"/pids/fwd-* | tr '\n' ' ')"
  bash "${CLUSTER}" down 2>"${PIKA_TEST_WORK:-/tmp}/cluster-down.log" \
    || { cat "${PIKA_TEST_WORK:-/tmp}/cluster-down.log" >&2; fail_now "down failed"; }
  trap - EXIT
  # The clean path: instances deleted through Incus, so no last-resort kill or cgroup removal.
  ! grep -E 'leftover' "${PIKA_TEST_WORK:-/tmp}/cluster-down.log" >&2 \
    || fail_now "down had to kill or remove leftovers (instance deletion through Incus failed)"
  local pid
  for pid in ${recorded_pids}; do
    kill -0 "${pid}" 2>/dev/null && fail_now "pid ${pid} of the cluster still runs after down"
  done
  [[ -z "$(ip netns list | grep '^pkc-' || true)" ]] || fail_now "namespaces left after down: $(ip netns list)"
  [[ ! -e "${PIKA_TEST_CLUSTER_DIR}" ]] || fail_now "${PIKA_TEST_CLUSTER_DIR} is left after down"
  ! grep -q "${PIKA_TEST_CLUSTER_DIR}" /proc/self/mountinfo || fail_now "mounts left under ${PIKA_TEST_CLUSTER_DIR}"
  local leftover
  leftover="$(find /sys/fs/cgroup -maxdepth 2 -name "lxc.*.${PROJECT}_*" 2>/dev/null | wc -l)"
  ((leftover == 0)) || fail_now "${leftover} cgroups lxc.*.${PROJECT}_* left after down"
  timeout 10 incus query /1.0 >/dev/null || fail_now "the main incusd stopped answering"
  [[ "$(main_incus_state)" == "${before}" ]] || fail_now "the main incusd's projects, instances or pools changed"
  pass "down left no namespace, process, directory, mount or cgroup; main incusd untouched"
  log "$((SECONDS - start))s"
  suite_report
}

main "$@"
