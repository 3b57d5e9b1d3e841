#!/usr/bin/env bash
# Test environment for scripts/test.sh and scripts/dev-lane.sh: installs what the tests need on a
# Debian machine (as root) and brings up a local incusd. Sourced, not executed.
#
# Public functions:
#   test_env_install_packages   apt-installs nix-bin, incus (bookworm-backports), busybox-static, ...
#   test_env_start_incusd       test_env_start_daemon + test_env_ensure_storage
#   test_env_start_daemon       starts incusd when its socket does not answer, trusting the test CA
#   test_env_ensure_ca          a test CA (TEST_ENV_CA_DIR) and a bundle of the system roots plus it
#   test_env_ensure_storage     dir storage pool "default" + root disk in the default profile
#   test_env_export             exports INCUS_SOCKET / PIKA_TEST_INCUS for the tests
#   test_env_cleanup_projects   deletes every Incus project named ${PIKA_TEST_PROJECT_PREFIX}-*
#                               (instances, images, profiles); test_env_export picks a prefix per run,
#                               so concurrent runs on one machine never delete each other's projects

TEST_ENV_INCUS_SOCKET="${INCUS_SOCKET:-/var/lib/incus/unix.socket}"
TEST_ENV_LOG_DIR="${PIKA_TEST_LOG_DIR:-/tmp/pika-test-logs}"
TEST_ENV_POOL="default"
# incusd fetches simplestreams images itself and trusts only its system roots (SSL_CERT_FILE), so it
# starts with a bundle that adds this CA; tests sign their HTTPS servers' certificates with it.
TEST_ENV_CA_DIR="${PIKA_TEST_CA_DIR:-/var/lib/pika-test-ca}"

test_env_log() {
  echo "test-env: $*" >&2
}

test_env_err() {
  echo "test-env: error: $*" >&2
}

# Adds the bookworm-backports suite next to the machine's own Debian source (incus lives there).
test_env_enable_backports() {
  local list="/etc/apt/sources.list.d/pika-bookworm-backports.sources"
  [[ -f "${list}" ]] && return 0
  local uri="http://deb.debian.org/debian"
  local found
  found="$(grep -h '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1 | awk '{print $2}')"
  [[ -n "${found}" ]] && uri="${found}"
  cat >"${list}" <<SOURCES
Types: deb
URIs: ${uri}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  TEST_ENV_APT_UPDATED=""
}

test_env_apt_update() {
  [[ -n "${TEST_ENV_APT_UPDATED:-}" ]] && return 0
  # A third-party source that cannot be reached must not stop us; the installs below fail loudly.
  apt-get update -qq || test_env_log "apt-get update reported errors (continuing)"
  TEST_ENV_APT_UPDATED=1
}

test_env_install_packages() {
  local missing=()
  command -v nix-build >/dev/null || missing+=(nix-bin)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  command -v sqlite3 >/dev/null || missing+=(sqlite3)
  command -v qemu-img >/dev/null || missing+=(qemu-utils)
  command -v xz >/dev/null || missing+=(xz-utils)
  command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  command -v pgrep >/dev/null || missing+=(procps)
  # socat: the test cluster's loopback endpoint (scripts/lib/test-cluster.sh).
  command -v socat >/dev/null || missing+=(socat)
  # Shells whose parsers check the completion scripts of every binary; `script` gives tests a terminal.
  command -v zsh >/dev/null || missing+=(zsh)
  command -v fish >/dev/null || missing+=(fish)
  command -v script >/dev/null || missing+=(bsdutils)
  if ((${#missing[@]} > 0)); then
    test_env_log "installing ${missing[*]}"
    test_env_apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v incusd >/dev/null && [[ ! -x /usr/libexec/incus/incusd ]] && [[ ! -x /usr/lib/incus/incusd ]]; then
    test_env_log "installing incus from bookworm-backports"
    test_env_enable_backports
    test_env_apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports incus >/dev/null
  fi
  # incus-extra: incus-benchmark (bench.sh) and incus-simplestreams (image publishing tests).
  if ! command -v incus-simplestreams >/dev/null || ! command -v incus-benchmark >/dev/null; then
    test_env_log "installing incus-extra from bookworm-backports"
    test_env_enable_backports
    test_env_apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports incus-extra >/dev/null
  fi
}

test_env_ensure_ca() {
  [[ -s "${TEST_ENV_CA_DIR}/bundle.pem" ]] && return 0
  mkdir -p "${TEST_ENV_CA_DIR}"
  chmod 0700 "${TEST_ENV_CA_DIR}"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=pika test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "${TEST_ENV_CA_DIR}/ca.key" -out "${TEST_ENV_CA_DIR}/ca.pem" 2>/dev/null
  cat /etc/ssl/certs/ca-certificates.crt "${TEST_ENV_CA_DIR}/ca.pem" >"${TEST_ENV_CA_DIR}/bundle.pem.tmp" 2>/dev/null \
    || cp "${TEST_ENV_CA_DIR}/ca.pem" "${TEST_ENV_CA_DIR}/bundle.pem.tmp"
  mv "${TEST_ENV_CA_DIR}/bundle.pem.tmp" "${TEST_ENV_CA_DIR}/bundle.pem"
}

test_env_incusd_bin() {
  local candidate
  for candidate in "$(command -v incusd 2>/dev/null)" /usr/libexec/incus/incusd /usr/lib/incus/incusd /usr/sbin/incusd; do
    [[ -n "${candidate}" && -x "${candidate}" ]] && { echo "${candidate}"; return 0; }
  done
  return 1
}

# test_env_wait TRIES INTERVAL COMMAND...: runs COMMAND every INTERVAL seconds until it succeeds,
# TRIES times at most; fails when it never did.
test_env_wait() {
  local tries="$1" interval="$2" try
  shift 2
  for ((try = 0; try < tries; try++)); do
    "$@" && return 0
    sleep "${interval}"
  done
  return 1
}

test_env_incus_ready() {
  [[ -S "${TEST_ENV_INCUS_SOCKET}" ]] && timeout 5 incus query /1.0 >/dev/null 2>&1
}

test_env_start_incusd() {
  test_env_ensure_ca
  test_env_start_daemon
  test_env_ensure_storage
}

test_env_start_daemon() {
  mkdir -p "${TEST_ENV_LOG_DIR}"
  test_env_incus_ready && return 0
  # A running but slow incusd is waited for, never doubled.
  if ! pgrep -x incusd >/dev/null; then
    local bin
    if ! bin="$(test_env_incusd_bin)"; then
      test_env_err "incusd not found after install"
      return 1
    fi
    test_env_ensure_ca
    test_env_log "starting ${bin} (log: ${TEST_ENV_LOG_DIR}/incusd.log)"
    SSL_CERT_FILE="${TEST_ENV_CA_DIR}/bundle.pem" nohup "${bin}" --group root >>"${TEST_ENV_LOG_DIR}/incusd.log" 2>&1 &
  fi
  test_env_wait 90 1 test_env_incus_ready || {
    test_env_err "incusd did not answer on ${TEST_ENV_INCUS_SOCKET} within 90s; see ${TEST_ENV_LOG_DIR}/incusd.log"
    return 1
  }
}

# `incus admin init --minimal` fails on the bridge network here, so set up storage by hand: a dir
# pool and a root disk in the default profile.
test_env_ensure_storage() {
  if ! incus storage show "${TEST_ENV_POOL}" >/dev/null 2>&1; then
    incus storage create "${TEST_ENV_POOL}" dir >/dev/null
  fi
  if ! incus profile device show default 2>/dev/null | grep -q '^root:'; then
    incus profile device add default root disk path=/ pool="${TEST_ENV_POOL}" >/dev/null
  fi
}

test_env_export() {
  export INCUS_SOCKET="${TEST_ENV_INCUS_SOCKET}"
  export PIKA_TEST_INCUS=1
  export PIKA_TEST_STORAGE_POOL="${TEST_ENV_POOL}"
  # The CA incusd trusts (see test_env_ensure_ca): ca.pem, ca.key.
  export PIKA_TEST_CA_DIR="${TEST_ENV_CA_DIR}"
  # Every test project of this run starts with this prefix (tests read it; cleanup sweeps only it).
  export PIKA_TEST_PROJECT_PREFIX="${PIKA_TEST_PROJECT_PREFIX:-pika-test-r$$}"
  # Debian's nix-bin runs single-user as root here: no nixbld group, no sandbox.
  export NIX_CONFIG=$'build-users-group =\nsandbox = false'
}

# Deletes an Incus project and everything in it (instances, images, profiles but default).
test_env_delete_project() {
  local project="$1" name
  incus project show "${project}" >/dev/null 2>&1 || return 0
  for name in $(incus list --project "${project}" --format csv --columns n 2>/dev/null); do
    incus delete --force --project "${project}" "${name}" >/dev/null 2>&1 || true
  done
  for name in $(incus image list --project "${project}" --format csv --columns f 2>/dev/null); do
    incus image delete --project "${project}" "${name}" >/dev/null 2>&1 || true
  done
  for name in $(incus profile list --project "${project}" --format csv 2>/dev/null | cut -d, -f1); do
    [[ "${name}" == "default" ]] && continue
    incus profile delete --project "${project}" "${name}" >/dev/null 2>&1 || true
  done
  incus project delete "${project}" >/dev/null 2>&1 || true
}

test_env_cleanup_projects() {
  local project
  for project in $(incus project list --format csv 2>/dev/null | cut -d, -f1 | sed 's/ (current)$//'); do
    [[ "${project}" == "${PIKA_TEST_PROJECT_PREFIX:-pika-test}"-* ]] && test_env_delete_project "${project}"
  done
  return 0
}
