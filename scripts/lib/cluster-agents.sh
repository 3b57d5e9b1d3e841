#!/usr/bin/env bash
# pika-server on the test cluster of scripts/lib/test-cluster.sh, for the cluster suite and the
# cluster benchmark. Sourced, not executed; needs the PIKA_CLUSTER_* variables `up` prints and the
# binaries in CLUSTER_BIN_DIR (default: debug/ of CARGO_TARGET_DIR, else target/debug; run from the
# repository root).
#
#   cluster_agents_project PROJECT IMAGE_DIR
#       creates PROJECT with a profile of the same name (root disk on the cluster's pool) and
#       imports the busybox image of IMAGE_DIR under every role's default alias
#   cluster_server_start DIR [FLAG...]
#       starts pika-server on the cluster endpoint, state in DIR, agents in CLUSTER_AGENTS_PROJECT;
#       exports PIKA_SERVER_URL and PIKA_SERVER_TOKEN (what `pika` reads)
#   cluster_server_stop DIR
#   cluster_provision_many COUNT IN_FLIGHT
#       provisions COUNT agents through `pika`, IN_FLIGHT requests at a time

CLUSTER_AGENTS_TOOL="scripts/lib/test-cluster.sh"
CLUSTER_BIN_DIR="${CLUSTER_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"

cluster_agents_project() {
  local project="$1" images="$2" role fingerprint
  CLUSTER_AGENTS_PROJECT="${project}"
  bash "${CLUSTER_AGENTS_TOOL}" incus 1 project create "${project}" >/dev/null
  bash "${CLUSTER_AGENTS_TOOL}" incus 1 profile create "${project}" --project "${project}" >/dev/null
  # pika-server gives its instances a root disk itself; pikaci's guests take it from the profile.
  bash "${CLUSTER_AGENTS_TOOL}" incus 1 profile device add "${project}" root disk path=/ \
    pool="${PIKA_CLUSTER_STORAGE_POOL}" --project "${project}" >/dev/null
  # shellcheck source=scripts/lib/roles.sh
  source scripts/lib/roles.sh
  bash "${CLUSTER_AGENTS_TOOL}" incus 1 image import "${images}/metadata.tar.xz" "${images}/rootfs.squashfs" \
    --project "${project}" >/dev/null
  fingerprint="$(bash "${CLUSTER_AGENTS_TOOL}" incus 1 image list --project "${project}" --format csv --columns f)"
  for role in "${PIKA_ROLE_IDS[@]}"; do
    bash "${CLUSTER_AGENTS_TOOL}" incus 1 image alias create "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}" \
      "${fingerprint}" --project "${project}" >/dev/null
  done
}

cluster_server_start() {
  local state="$1" waited=0
  shift
  mkdir -p "${state}"
  PIKA_SERVER_TOKEN="$("${CLUSTER_BIN_DIR}/pika-server" token add --admin cluster-test --state-dir "${state}")"
  "${CLUSTER_BIN_DIR}/pika-server" serve --listen 127.0.0.1:0 --state-dir "${state}" \
    --incus-endpoint "${PIKA_CLUSTER_ENDPOINT}" --incus-project "${CLUSTER_AGENTS_PROJECT}" \
    --incus-profile "${CLUSTER_AGENTS_PROJECT}" --incus-storage-pool "${PIKA_CLUSTER_STORAGE_POOL}" \
    --incus-client-cert-path "${PIKA_CLUSTER_CLIENT_CERT}" --incus-client-key-path "${PIKA_CLUSTER_CLIENT_KEY}" \
    --incus-server-cert-path "${PIKA_CLUSTER_SERVER_CERT}" --incus-member-check-secs 2 "$@" \
    >"${state}/out.log" 2>"${state}/server.log" &
  echo "$!" >"${state}/pid"
  PIKA_SERVER_URL=""
  until [[ -n "${PIKA_SERVER_URL}" ]]; do
    PIKA_SERVER_URL="$(sed -n 's/^pika-server listening on //p' "${state}/out.log" 2>/dev/null)"
    sleep 0.2
    waited=$((waited + 1))
    if ((waited > 150)); then
      cat "${state}/server.log" >&2
      echo "cluster-agents: pika-server in ${state} did not start" >&2
      return 1
    fi
  done
  export PIKA_SERVER_URL PIKA_SERVER_TOKEN
}

cluster_server_stop() {
  local pid_file="$1/pid"
  [[ -s "${pid_file}" ]] || return 0
  kill "$(cat "${pid_file}")" 2>/dev/null || true
  wait "$(cat "${pid_file}")" 2>/dev/null || true
  rm -f "${pid_file}"
}

cluster_provision_many() {
  local count="$1" in_flight="$2"
  # shellcheck disable=SC2016 # sh -c expands its own $0 and $1
  seq "${count}" | xargs -P "${in_flight}" -I{} sh -c \
    '"$1/pika" --json agent provision --name "cluster-$0" >/dev/null' {} "${CLUSTER_BIN_DIR}"
}
