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

err() {
  echo "${SUITE}: error: $*" >&2
}

fail() {
  err "$*"
  exit 1
}

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
  fail "member ${name} is ${got}, expected ${want} within 90s"
}

# From the cluster-wide list: a GET of one instance on an offline member fails outright.
instance_status() {
  bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${PROJECT}&recursion=1" \
    | jq -r --arg name "$1" '.[] | select(.name == $name) | .status'
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
  local before start="${SECONDS}"
  before="$(main_incus_state)"
  trap 'bash "${CLUSTER}" down >/dev/null 2>&1 || true' EXIT

  # --- up, twice ---------------------------------------------------------------------------
  local first second
  first="$(bash "${CLUSTER}" up)" || fail "up failed"
  eval "$(grep '^PIKA_CLUSTER_[A-Z_]*=' <<<"${first}" | sed 's/^/export /')"
  [[ "${PIKA_CLUSTER_ENDPOINT}" =~ ^https://127\.0\.0\.1:[0-9]+$ ]] \
    || fail "endpoint is not on loopback: ${PIKA_CLUSTER_ENDPOINT}"
  local pids_first
  pids_first="$(bash "${CLUSTER}" status --json | jq -r '[.members[].pid] | join(" ")')"
  second="$(bash "${CLUSTER}" up)" || fail "second up failed"
  [[ "${first}" == "${second}" ]] || fail "a second up changed the endpoint or credentials"
  [[ "$(bash "${CLUSTER}" status --json | jq -r '[.members[].pid] | join(" ")')" == "${pids_first}" ]] \
    || fail "a second up restarted members"
  local status_json
  status_json="$(bash "${CLUSTER}" status --json)" || fail "status of a fresh cluster is not healthy"
  [[ "$(jq -r '[.members[] | select(.cluster_status == "Online" and .running)] | length' <<<"${status_json}")" == 3 ]] \
    || fail "expected 3 online members: ${status_json}"
  echo "${SUITE}: up twice: same endpoint, same member pids, 3 members online ($((SECONDS - start))s)"

  # --- the endpoint trusts our client certificate and nothing else ---------------------------
  [[ "$(endpoint_auth --cert "${PIKA_CLUSTER_CLIENT_CERT}" --key "${PIKA_CLUSTER_CLIENT_KEY}")" == "trusted true" ]] \
    || fail "the endpoint does not trust the printed client certificate"
  [[ "$(endpoint_auth)" == "untrusted false" ]] || fail "the endpoint trusts a client without a certificate"
  echo "${SUITE}: endpoint ${PIKA_CLUSTER_ENDPOINT} trusts the client certificate, not an anonymous client"

  # --- one image import, every member launches it ------------------------------------------
  local images="${PIKA_TEST_WORK:-/tmp}/cluster-image"
  # shellcheck source=scripts/lib/test-image.sh
  source scripts/lib/test-image.sh
  test_image_container "${images}" "pika cluster test image" "cluster"
  bash "${CLUSTER}" incus 1 project create "${PROJECT}" >/dev/null
  bash "${CLUSTER}" incus 1 image import "${images}/metadata.tar.xz" "${images}/rootfs.squashfs" \
    --project "${PROJECT}" --alias cluster-test >/dev/null
  local member
  local member output
  for member in ${PIKA_CLUSTER_MEMBERS//,/ }; do
    output="$(bash "${CLUSTER}" incus 1 launch cluster-test "c-${member}" --project "${PROJECT}" \
      --target "${member}" --storage "${PIKA_CLUSTER_STORAGE_POOL}" 2>&1)" \
      || fail "launch on ${member} of the image imported through node1 failed: ${output}"
  done
  local placed
  placed="$(bash "${CLUSTER}" incus 1 query "/1.0/instances?project=${PROJECT}&recursion=1" \
    | jq -r '[.[] | "\(.name)=\(.location)=\(.status)"] | sort | join(" ")')"
  [[ "${placed}" == "c-node1=node1=Running c-node2=node2=Running c-node3=node3=Running" ]] \
    || fail "expected one running instance per member, got: ${placed}"
  echo "${SUITE}: image imported once through node1, running on every member"

  # --- a stopped member goes offline, its instance keeps running and returns -----------------
  bash "${CLUSTER}" member-stop 3
  timeout 10 incus query /1.0 >/dev/null || fail "the main incusd stopped answering"
  wait_member_status node3 Offline
  [[ "$(instance_status c-node3)" == "Error" ]] || fail "an instance on an offline member is not reported as Error"
  bash "${CLUSTER}" status >/dev/null && fail "status reports a cluster with a stopped member as healthy"
  bash "${CLUSTER}" member-start 3
  wait_member_status node3 Online
  [[ "$(instance_status c-node3)" == "Running" ]] || fail "c-node3 is not running after its member returned"
  echo "${SUITE}: node3 stopped -> Offline (instance Error), restarted -> Online, instance Running"

  # --- down leaves nothing behind ------------------------------------------------------------
  local recorded_pids
  recorded_pids="$(bash "${CLUSTER}" status --json | jq -r '[.members[].pid] | join(" ")')"
  recorded_pids+=" $(cat "${PIKA_TEST_CLUSTER_DIR}"/pids/fwd-* | tr '\n' ' ')"
  bash "${CLUSTER}" down 2>"${PIKA_TEST_WORK:-/tmp}/cluster-down.log" \
    || { cat "${PIKA_TEST_WORK:-/tmp}/cluster-down.log" >&2; fail "down failed"; }
  trap - EXIT
  # The clean path: instances deleted through Incus, so no last-resort kill or cgroup removal.
  ! grep -E 'leftover' "${PIKA_TEST_WORK:-/tmp}/cluster-down.log" >&2 \
    || fail "down had to kill or remove leftovers (instance deletion through Incus failed)"
  local pid
  for pid in ${recorded_pids}; do
    kill -0 "${pid}" 2>/dev/null && fail "pid ${pid} of the cluster still runs after down"
  done
  [[ -z "$(ip netns list | grep '^pkc-' || true)" ]] || fail "namespaces left after down: $(ip netns list)"
  [[ ! -e "${PIKA_TEST_CLUSTER_DIR}" ]] || fail "${PIKA_TEST_CLUSTER_DIR} is left after down"
  ! grep -q "${PIKA_TEST_CLUSTER_DIR}" /proc/self/mountinfo || fail "mounts left under ${PIKA_TEST_CLUSTER_DIR}"
  local leftover
  leftover="$(find /sys/fs/cgroup -maxdepth 2 -name "lxc.*.${PROJECT}_*" 2>/dev/null | wc -l)"
  ((leftover == 0)) || fail "${leftover} cgroups lxc.*.${PROJECT}_* left after down"
  timeout 10 incus query /1.0 >/dev/null || fail "the main incusd stopped answering"
  [[ "$(main_incus_state)" == "${before}" ]] || fail "the main incusd's projects, instances or pools changed"
  echo "${SUITE}: down left no namespace, process, directory, mount or cgroup; main incusd untouched"
  echo "${SUITE}: ok in $((SECONDS - start))s"
}

main "$@"
