#!/usr/bin/env bash
# Benchmark: provisioning agents through pika-server on the 3-member test cluster, placed by the
# Incus scheduler over all members, against the same on a single member (a cluster group holding
# only node1), in one run on the same cluster, image and server settings. Prints each wall time
# (best of ROUNDS, alternating) and the ratio single/cluster (> 1: the cluster is faster).
#
# Usage: scripts/bench/cluster-provision.sh [--agents N] [--in-flight M] [--rounds R]
#   defaults: 60 agents, 20 requests in flight, 2 rounds. Needs root (scripts/lib/test-cluster.sh).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
readonly CLUSTER="scripts/lib/test-cluster.sh"
readonly SOLO_GROUP="pika-bench-solo"

# timed_round DIR [FLAG...]: wall seconds to provision AGENTS agents, then deletes them.
timed_round() {
  local dir="$1" start end id
  shift
  cluster_server_start "${dir}" "$@"
  start="$(date +%s.%N)"
  cluster_provision_many "${AGENTS}" "${IN_FLIGHT}" || { err "provisioning failed (${dir})"; return 1; }
  end="$(date +%s.%N)"
  local spread
  spread="$("${CLUSTER_BIN_DIR}/pika" --json agent list \
    | jq -r '[.agents[].location] | group_by(.) | map("\(.[0])=\(length)") | join(" ")')"
  echo "  $(basename "${dir}"): $(elapsed "${start}" "${end}")s (${spread})" >&2
  for id in $("${CLUSTER_BIN_DIR}/pika" --json agent list | jq -r '.agents[].id'); do
    "${CLUSTER_BIN_DIR}/pika" agent delete "${id}" >/dev/null
  done
  cluster_server_stop "${dir}"
  rm -rf "${dir}"
  elapsed "${start}" "${end}"
}

elapsed() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'
}

min() {
  awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'
}

main() {
  AGENTS=60 IN_FLIGHT=20
  local rounds=2
  while (($# > 0)); do
    case "$1" in
      --agents) AGENTS="$2"; shift ;;
      --in-flight) IN_FLIGHT="$2"; shift ;;
      --rounds) rounds="$2"; shift ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown argument $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  cd "${REPO_ROOT}"
  bash "${CLUSTER}" prerequisites || { err "no cluster can run here"; exit 1; }
  exec {lock}>/tmp/pika-test-cluster.lock
  flock "${lock}"
  export PIKA_TEST_CLUSTER_DIR="/var/lib/pika-test-cluster"
  # Global: the EXIT trap runs after main has returned.
  work="$(mktemp -d)"
  trap 'cluster_server_stop "${work}/cluster"; cluster_server_stop "${work}/single"; bash "${CLUSTER}" down >/dev/null 2>&1; rm -rf "${work}"' EXIT
  # shellcheck source=scripts/lib/test-image.sh
  source scripts/lib/test-image.sh
  # shellcheck source=scripts/lib/cluster-agents.sh
  source scripts/lib/cluster-agents.sh
  cargo build -q --release -p pika-server -p pika-cli
  export CLUSTER_BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
  eval "$(bash "${CLUSTER}" up | sed 's/^/export /')"
  test_image_container "${work}/image" "pika cluster bench image" "bench"
  cluster_agents_project pika-bench-cluster "${work}/image"
  bash "${CLUSTER}" incus 1 cluster group create "${SOLO_GROUP}" >/dev/null
  bash "${CLUSTER}" incus 1 cluster group assign node1 "default,${SOLO_GROUP}" >/dev/null
  local cluster_best="" single_best="" round seconds
  for round in $(seq "${rounds}"); do
    echo "round ${round}:" >&2
    # Alternate the order, so neither mode always runs on a warmer cluster.
    if ((round % 2)); then
      seconds="$(timed_round "${work}/cluster")"; cluster_best="$(min "${seconds}" "${cluster_best:-${seconds}}")"
      seconds="$(timed_round "${work}/single" --incus-cluster-group "${SOLO_GROUP}")"; single_best="$(min "${seconds}" "${single_best:-${seconds}}")"
    else
      seconds="$(timed_round "${work}/single" --incus-cluster-group "${SOLO_GROUP}")"; single_best="$(min "${seconds}" "${single_best:-${seconds}}")"
      seconds="$(timed_round "${work}/cluster")"; cluster_best="$(min "${seconds}" "${cluster_best:-${seconds}}")"
    fi
  done
  printf 'provision %s agents, %s in flight, through pika-server (best of %s):\n' "${AGENTS}" "${IN_FLIGHT}" "${rounds}"
  printf '  on 3 members (Incus scheduler): %.2fs\n' "${cluster_best}"
  printf '  on 1 member (cluster group with node1 only): %.2fs\n' "${single_best}"
  printf '  ratio single/cluster: %sx (> 1: the cluster is faster; one machine, %s cores, bounds it)\n' \
    "$(awk -v s="${single_best}" -v c="${cluster_best}" 'BEGIN { printf "%.2f", s / c }')" "$(nproc)"
}

main "$@"
