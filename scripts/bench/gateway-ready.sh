#!/usr/bin/env bash
# Benchmark: time to a ready OpenClaw gateway (the REAL one, the stand-in image of
# scripts/lib/test-image-openclaw.sh) through pika-server's API (`POST /v1/agents` returns once
# /health answers through the agent's proxy) vs the same image by hand: `incus launch`, a proxy
# device on loopback, the configuration pushed 0600 as the role's user, then polling /health
# through the device; and through the API with a warm pool of 1 (the claim rewrites the running
# gateway's token and returns once the gateway takes it). One run of each, one after the other
# (each gateway takes ~900 MB on the dir pool and most of a core while it starts), and the ratios. Needs a local incusd and npm (or
# PIKA_TEST_OPENCLAW_IMAGE_DIR); pika-server is $PIKA_SERVER_BIN, else built with cargo (release).
#
# Usage: scripts/bench/gateway-ready.sh
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# pika-test-bench-*: bench.sh's exit trap sweeps that prefix.
readonly PROJECT="pika-test-bench-gateway-$$"
readonly ROLE="managed-openclaw"
readonly PROFILE="pika-bench"
# How long either path may take to a ready gateway (not a goal: the ratio is the figure).
readonly READY_TIMEOUT=900

# shellcheck source=scripts/lib/roles.sh
source "${REPO_ROOT}/scripts/lib/roles.sh"
# shellcheck source=scripts/lib/test-image-openclaw.sh
source "${REPO_ROOT}/scripts/lib/test-image-openclaw.sh"

WORK=""
SERVER_PID=""

cleanup() {
  [[ -z "${SERVER_PID}" ]] || kill "${SERVER_PID}" 2>/dev/null || true
  [[ -z "${SERVER_PID}" ]] || wait "${SERVER_PID}" 2>/dev/null || true
  if incus project show "${PROJECT}" >/dev/null 2>&1; then
    local name fp
    for name in $(incus list --project "${PROJECT}" --format csv --columns n); do
      incus delete --force "${name}" --project "${PROJECT}" >/dev/null 2>&1 || true
    done
    for fp in $(incus image list --project "${PROJECT}" --format csv --columns F); do
      incus image delete "${fp}" --project "${PROJECT}" >/dev/null 2>&1 || true
    done
    incus profile delete "${PROFILE}" --project "${PROJECT}" >/dev/null 2>&1 || true
    incus project delete "${PROJECT}" >/dev/null 2>&1 || true
  fi
  [[ -z "${WORK}" ]] || rm -rf "${WORK}"
  return 0
}

# now: seconds since the epoch, with milliseconds.
now() {
  date +%s.%N | cut -c1-14
}

# since START: seconds from START (a `now`) until now.
since() {
  awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.3f\n", end - start }'
}

# server_bin: pika-server to run.
server_bin() {
  if [[ -n "${PIKA_SERVER_BIN:-}" ]]; then
    echo "${PIKA_SERVER_BIN}"
    return 0
  fi
  (cd "${REPO_ROOT}" && cargo build --quiet --release -p pika-server --bin pika-server) >&2
  echo "${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/release/pika-server"
}

# through_api BIN [POOL]: seconds from POST /v1/agents to its 201 (the gateway answered /health
# and takes the agent's token); with POOL, once a warm pool of POOL members is ready.
through_api() {
  local bin="$1" pool="${2:-}" ports token start body status
  ports="$(free_port)"
  # A pool holds a port per member, and the refill a claim wakes needs one more.
  ports="${ports}-$((ports + ${pool:-0} + 1))"
  PIKA_SERVER_LISTEN=127.0.0.1:0 PIKA_SERVER_STATE_DIR="${WORK}/server" \
    PIKA_SERVER_DB="${WORK}/server/agents.db" PIKA_SERVER_TOKENS_FILE="${WORK}/server/tokens" \
    PIKA_AGENT_INCUS_PROJECT="${PROJECT}" PIKA_AGENT_INCUS_PROFILE="${PROFILE}" \
    PIKA_AGENT_INCUS_STORAGE_POOL="${PIKA_TEST_STORAGE_POOL:-default}" \
    PIKA_AGENT_GATEWAY_PORTS="${ports}" RUST_LOG=warn \
    env ${pool:+"PIKA_AGENT_POOL_SIZE=${ROLE}=${pool}"} "${bin}" >"${WORK}/server.out" 2>"${WORK}/server.err" &
  SERVER_PID=$!
  local waited=0
  until grep -q '^pika-server listening on ' "${WORK}/server.out" 2>/dev/null; do
    ((waited++ < 300)) || { err "pika-server did not start: $(tail -n 5 "${WORK}/server.err")"; return 1; }
    sleep 0.2
  done
  local url
  url="$(sed -n 's/^pika-server listening on //p' "${WORK}/server.out")"
  token="$(PIKA_SERVER_TOKENS_FILE="${WORK}/server/tokens" "${bin}" token add bench)"
  [[ -z "${pool}" ]] || wait_pool "${bin}" "${url}" "${pool}" || return 1
  start="$(now)"
  body="$(curl -s -m "${READY_TIMEOUT}" -X POST -H "Authorization: Bearer ${token}" \
    -H 'Content-Type: application/json' -d '{}' -w '\n%{http_code}' "${url}/v1/agents")"
  status="${body##*$'\n'}"
  since "${start}"
  # The record without its one-time gateway token.
  [[ "${status}" == 201 ]] || { err "POST /v1/agents answered ${status}: $(jq -c 'del(.gateway_token)' <<<"${body%$'\n'*}")"; return 1; }
  curl -s -m 30 -X DELETE -H "Authorization: Bearer ${token}" \
    "${url}/v1/agents/$(jq -r .id <<<"${body%$'\n'*}")" >/dev/null
  kill "${SERVER_PID}"
  wait "${SERVER_PID}" 2>/dev/null || true
  SERVER_PID=""
}

# wait_pool BIN URL N: waits until the pool reports N ready members and none launching.
wait_pool() {
  local bin="$1" url="$2" want="$3" admin detail="" start
  admin="$(PIKA_SERVER_TOKENS_FILE="${WORK}/server/tokens" "${bin}" token add --admin bench-ops)"
  start="$(now)"
  # The health report is cached for a second.
  until [[ "${detail}" == *"ready ${want} "* && "${detail}" == *"launching 0"* ]]; do
    awk -v s="$(since "${start}")" -v max="${READY_TIMEOUT}" 'BEGIN { exit !(s < max) }' || { err "the pool never got ready: ${detail}"; return 1; }
    sleep 1
    detail="$(curl -s -m 10 -H "Authorization: Bearer ${admin}" "${url}/v1/health" |
      jq -r --arg check "pool.${ROLE}" '.checks[] | select(.name == $check) | .detail')"
  done
}

# by_hand: seconds from `incus launch` to /health answering through a proxy device on loopback.
by_hand() {
  local port user start config="${WORK}/openclaw.json" name="by-hand"
  port="$(free_port)"
  IFS=: read -r -a user <<<"${PIKA_ROLE_USER[${ROLE}]}"
  jq -cn --argjson port "${PIKA_ROLE_SERVICE_PORT[${ROLE}]}" --arg token "$(openssl rand -hex 32)" \
    '{gateway: {mode: "local", port: $port, bind: "loopback", auth: {mode: "token", token: $token}}}' >"${config}"
  start="$(now)"
  incus launch "${PIKA_ROLE_DEFAULT_ALIAS[${ROLE}]}" "${name}" --project "${PROJECT}" --profile "${PROFILE}" -q
  incus config device add "${name}" gateway proxy "listen=tcp:127.0.0.1:${port}" \
    "connect=tcp:127.0.0.1:${PIKA_ROLE_SERVICE_PORT[${ROLE}]}" bind=host --project "${PROJECT}" -q
  incus file push "${config}" "${name}/var/lib/openclaw/openclaw.json" --project "${PROJECT}" \
    --mode 0600 --uid "${user[1]}" --gid "${user[3]}" --create-dirs -q
  until curl -sf -m 5 "http://127.0.0.1:${port}/health" >/dev/null; do
    awk -v s="$(since "${start}")" -v max="${READY_TIMEOUT}" 'BEGIN { exit !(s < max) }' || { err "the gateway by hand did not answer /health"; return 1; }
    sleep 0.2
  done
  since "${start}"
  rm -f "${config}"
  incus delete --force "${name}" --project "${PROJECT}" -q
}

main() {
  local image bin api raw pooled
  WORK="$(mktemp -d)"
  trap cleanup EXIT
  mkdir -p "${WORK}/server"
  image="$(test_image_openclaw)" || { err "the OpenClaw stand-in image does not build"; exit 1; }
  bin="$(server_bin)"
  incus project create "${PROJECT}" -c features.images=true -c features.profiles=true -q
  incus profile create "${PROFILE}" --project "${PROJECT}" -q
  incus profile device add "${PROFILE}" root disk path=/ "pool=${PIKA_TEST_STORAGE_POOL:-default}" --project "${PROJECT}" -q
  incus image import "${image}/metadata.tar.xz" "${image}/rootfs.squashfs" \
    --alias "${PIKA_ROLE_DEFAULT_ALIAS[${ROLE}]}" --project "${PROJECT}" -q
  # By hand first, so the image's first unpack on the pool is not the API's cost.
  raw="$(by_hand)"
  api="$(through_api "${bin}")"
  rm -rf "${WORK}/server" && mkdir -p "${WORK}/server"
  pooled="$(through_api "${bin}" 1)"
  printf 'ready gateway (real OpenClaw stand-in, one run each, by hand first)\n'
  printf '  by hand (incus launch + proxy device + config push + /health): %6.1f s\n' "${raw}"
  printf '  through the API (POST /v1/agents until its 201):               %6.1f s\n' "${api}"
  printf '  through the API, warm pool of 1 (claim: token rewrite + reload): %6.1f s\n' "${pooled}"
  awk -v api="${api}" -v raw="${raw}" -v pooled="${pooled}" \
    'BEGIN { printf "  ratio API / by hand: %.2fx (no pool), %.2fx (warm pool)\n", api / raw, pooled / raw }'
}

main "$@"
