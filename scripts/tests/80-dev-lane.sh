#!/usr/bin/env bash
# The local lane once: `up` twice (it must be safe to repeat), check that an agent runs in the
# managed-openclaw role and the CI job passed in a pikaci-runner guest, then `down`, which must
# leave Incus exactly as it found it.
set -euo pipefail

readonly SUITE="80-dev-lane"
# shellcheck source=scripts/lib/suite.sh
source scripts/lib/suite.sh

# Objects of concurrent test runs (their pika-test-* projects) are left out of the comparison.
incus_state() {
  {
    incus project list --format csv | sort
    incus list --all-projects --format csv --columns en | sort
    incus image list --all-projects --format csv --columns elf 2>/dev/null | sort
    # Without the used-by count: instances of concurrent runs use the default profile too.
    incus profile list --format csv --columns nd | sort
    incus storage list --format csv --columns n | sort
  } | grep -v 'pika-test-' || true
}

# The lane has one fixed project and port per machine: one lane test at a time.
exec {lane_lock}>/tmp/pika-dev-lane-test.lock
flock "${lane_lock}"

export PIKA_LANE_STATE="${PIKA_TEST_WORK}/dev-lane"
export PIKA_LANE_PORT=18787
before="$(incus_state)"
trap 'bash scripts/dev-lane.sh down >/dev/null 2>&1 || true' EXIT

bash scripts/dev-lane.sh up >"${PIKA_TEST_WORK}/lane-up-1.log" 2>&1 \
  || { cat "${PIKA_TEST_WORK}/lane-up-1.log" >&2; fail_now "first up failed"; }
bash scripts/dev-lane.sh up >"${PIKA_TEST_WORK}/lane-up-2.log" 2>&1 \
  || { cat "${PIKA_TEST_WORK}/lane-up-2.log" >&2; fail_now "second up failed"; }
cat "${PIKA_TEST_WORK}/lane-up-2.log"

# shellcheck source=scripts/lib/roles.sh
source scripts/lib/roles.sh
agent_role="$(incus list --project pika-managed-agents --format json \
  | jq -r '[.[] | select(.config["user.pika.agent_id"] != null)] | if length == 1 then .[0].config["user.pika.guest_role"] + " " + .[0].status else "count=\(length)" end')"
[[ "${agent_role}" == "managed-openclaw Running" ]] || { fail_now "expected one running managed-openclaw agent, got: ${agent_role}"; }
for role in "${PIKA_ROLE_IDS[@]}"; do
  incus image alias list --project pika-managed-agents --format csv | grep -q "^${PIKA_ROLE_DEFAULT_ALIAS[${role}]}," \
    || { fail_now "alias ${PIKA_ROLE_DEFAULT_ALIAS[${role}]} of ${role} is missing"; }
done
grep -q '^ci: .*: passed$' "${PIKA_TEST_WORK}/lane-up-2.log" || { fail_now "the lane's CI job did not pass"; }

# Hand launch lines: the busybox stand-ins are containers (no VM flags); once a VM image serves a
# VM role whose image is not Secure Boot capable, the line turns Secure Boot off.
for role in "${PIKA_ROLE_IDS[@]}"; do
  grep -qx "launch ${role} by hand: incus launch ${PIKA_ROLE_DEFAULT_ALIAS[${role}]} NAME --project pika-managed-agents" \
    "${PIKA_TEST_WORK}/lane-up-2.log" || { fail_now "no container launch line for ${role}"; }
done
vm_role=""
for role in "${PIKA_ROLE_IDS[@]}"; do
  if [[ "${PIKA_ROLE_INSTANCE_TYPE[${role}]}" == "virtual-machine" && "${PIKA_ROLE_SECURE_BOOT[${role}]}" == "false" ]]; then
    vm_role="${role}"
    break
  fi
done
if [[ -n "${vm_role}" ]]; then
  CI=1 bash scripts/incus-role-image.sh --role "${vm_role}" import --local --project pika-managed-agents \
    --artifact "${PIKA_TEST_IMAGE_DIR}/vm" >/dev/null || { fail_now "importing the test VM image for ${vm_role}"; }
  bash scripts/dev-lane.sh status >"${PIKA_TEST_WORK}/lane-status.log" 2>&1
  grep -qx "launch ${vm_role} by hand: incus launch ${PIKA_ROLE_DEFAULT_ALIAS[${vm_role}]} NAME --project pika-managed-agents --vm -c security.secureboot=false" \
    "${PIKA_TEST_WORK}/lane-status.log" || { cat "${PIKA_TEST_WORK}/lane-status.log" >&2; fail_now "no Secure Boot off launch line for the VM role ${vm_role}"; }
fi

bash scripts/dev-lane.sh down
trap - EXIT
after="$(incus_state)"
if [[ "${before}" != "${after}" ]]; then
  diff <(echo "${before}") <(echo "${after}") >&2 || true
  fail_now "down did not leave Incus as it found it (diff above)"
fi
pass "up (twice), agent running as managed-openclaw, CI passed, down restored Incus"

# With nothing up, status still reports (every alias missing) and exits 0.
bash scripts/dev-lane.sh status >"${PIKA_TEST_WORK}/lane-status-down.log" 2>&1 \
  || { cat "${PIKA_TEST_WORK}/lane-status-down.log" >&2; fail_now "status with nothing up failed"; }
for role in "${PIKA_ROLE_IDS[@]}"; do
  grep -q "^${role} .* missing " "${PIKA_TEST_WORK}/lane-status-down.log" \
    || { cat "${PIKA_TEST_WORK}/lane-status-down.log" >&2; fail_now "status with nothing up does not list ${role} as missing"; }
done
pass "status with nothing up lists every role's alias as missing and exits 0"
suite_report
