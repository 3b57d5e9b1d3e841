#!/usr/bin/env bash
# Builds tiny Incus test images from busybox-static. Sourced, not executed.
#
#   test_image_container OUTDIR [DESCRIPTION] [MARKER] [ROLE] [REV]
#       OUTDIR/metadata.tar.xz + OUTDIR/rootfs.squashfs (a split container image, ~1 MiB).
#       MARKER is written to /etc/pika-test-marker so two builds get different fingerprints.
#   test_image_vm OUTDIR [DESCRIPTION] [MARKER] [ROLE] [REV]
#       OUTDIR/metadata.tar.xz + OUTDIR/disk.qcow2 (imports; VMs cannot start on these machines).
#
#   Provenance, as the flake's images carry it (metadata.yaml properties): pika.role = ROLE (default:
#   the first role of the registry), pika.source-rev = REV (default test-MARKER), pika.roles-digest =
#   the role's digest from scripts/lib/roles.sh, pika.built-from = test-image:MARKER; plus os,
#   release, variant and architecture, which incus-simplestreams needs. ROLE "-" makes an image
#   without provenance, as one imported by hand.
#   test_image_shared DIR
#       DIR/container and DIR/vm, exported as PIKA_TEST_IMAGE_DIR for the tests and benchmarks.

test_image_busybox() {
  local candidate
  for candidate in /bin/busybox /usr/bin/busybox; do
    [[ -x "${candidate}" ]] && { echo "${candidate}"; return 0; }
  done
  echo "test-image: busybox-static is not installed" >&2
  return 1
}

# shellcheck source=scripts/lib/roles.sh
[[ -n "${PIKA_ROLE_IDS+set}" ]] || source "$(dirname "${BASH_SOURCE[0]}")/roles.sh"

# test_image_metadata DIR DESCRIPTION VARIANT [MARKER] [ROLE] [REV] -> DIR/metadata.tar.xz
# (reproducible). ROLE "-": no pika.* provenance.
test_image_metadata() {
  local out="$1" description="$2" variant="$3" marker="${4:-0}" role="${5:-${PIKA_ROLE_IDS[0]}}"
  local rev="${6:-test-${4:-0}}" work
  work="$(mktemp -d)"
  cat >"${work}/metadata.yaml" <<YAML
architecture: x86_64
creation_date: 1700000000
properties:
  architecture: x86_64
  description: "${description}"
  os: busybox
  release: test
  variant: "${variant}"
YAML
  if [[ "${role}" != "-" ]]; then
    cat >>"${work}/metadata.yaml" <<YAML
  pika.role: "${role}"
  pika.source-rev: "${rev}"
  pika.roles-digest: "${PIKA_ROLE_ROLES_DIGEST[${role}]:-}"
  pika.built-from: "test-image:${marker}"
YAML
  fi
  printf 'templates: {}\n' >>"${work}/metadata.yaml"
  tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
    -C "${work}" -cJf "${out}/metadata.tar.xz" metadata.yaml
  rm -rf "${work}"
}

test_image_rootfs() {
  local root="$1" marker="$2" busybox applet
  busybox="$(test_image_busybox)" || return 1
  mkdir -p "${root}"/{bin,sbin,etc,dev,proc,sys,tmp,root,run,var/log,workspace}
  # As on NixOS: every user may write /tmp (a role's unprivileged user writes its job output there).
  chmod 1777 "${root}/tmp"
  cp "${busybox}" "${root}/bin/busybox"
  for applet in $("${busybox}" --list); do
    [[ "${applet}" == "busybox" ]] && continue
    [[ -e "${root}/bin/${applet}" ]] || ln -s busybox "${root}/bin/${applet}"
  done
  # A tiny init: busybox init ignores SIGPWR, which Incus sends for a clean stop, so a stop would
  # hang until its timeout. This one exits on SIGPWR/SIGTERM and otherwise just waits.
  #
  # A stand-in of a role's gateway (pika-server's OpenClaw gateway): once pika-server has delivered
  # the configuration (gateway.rs CONFIG_PATH), busybox httpd answers GET /health on the guest's
  # loopback at the service port of the first role that has one (roles.toml `service-port`), and
  # comes back when killed, like the unit's Restart=always. Without a delivered file nothing listens.
  local port="" role
  for role in "${PIKA_ROLE_IDS[@]}"; do
    if [[ -n "${PIKA_ROLE_SERVICE_PORT[${role}]:-}" ]]; then
      port="${PIKA_ROLE_SERVICE_PORT[${role}]}"
      break
    fi
  done
  mkdir -p "${root}/srv/gateway"
  printf '{"ok":true,"status":"live"}\n' >"${root}/srv/gateway/health"
  cat >"${root}/sbin/init" <<INIT
#!/bin/sh
trap 'exit 0' PWR TERM INT
mkdir -p /run /tmp
# The loopback interface comes up like on any booted system (the gateway listens there).
ip link set lo up 2>/dev/null
gateway() {
  while :; do
    [ -n "${port}" ] && [ -f /var/lib/openclaw/openclaw.json ] && httpd -f -p "127.0.0.1:${port}" -h /srv/gateway
    sleep 1
  done
}
gateway &
while :; do
  sleep 86400 &
  wait \$!
done
INIT
  chmod 0755 "${root}/sbin/init"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"${root}/etc/passwd"
  printf 'root:x:0:\n' >"${root}/etc/group"
  printf '%s\n' "${marker}" >"${root}/etc/pika-test-marker"
}

test_image_container() {
  local out="$1" description="${2:-pika test container image}" marker="${3:-0}" work
  mkdir -p "${out}"
  work="$(mktemp -d)"
  test_image_rootfs "${work}/rootfs" "${marker}" || { rm -rf "${work}"; return 1; }
  test_image_metadata "${out}" "${description}" "test-container" "${marker}" "${@:4}"
  rm -f "${out}/rootfs.squashfs"
  mksquashfs "${work}/rootfs" "${out}/rootfs.squashfs" -noappend -quiet -all-root \
    -mkfs-time 1700000000 -all-time 1700000000 >/dev/null
  rm -rf "${work}"
}

test_image_vm() {
  local out="$1" description="${2:-pika test vm image}" marker="${3:-0}" work
  mkdir -p "${out}"
  work="$(mktemp -d)"
  # A tiny raw disk whose first bytes carry the marker, converted to qcow2.
  truncate -s 4M "${work}/disk.raw"
  printf 'pika-test-vm %s\n' "${marker}" | dd of="${work}/disk.raw" conv=notrunc status=none
  qemu-img convert -f raw -O qcow2 "${work}/disk.raw" "${out}/disk.qcow2"
  test_image_metadata "${out}" "${description}" "test-vm" "${marker}" "${@:4}"
  rm -rf "${work}"
}

test_image_shared() {
  local dir="$1"
  test_image_container "${dir}/container" "pika test container image" "shared"
  test_image_vm "${dir}/vm" "pika test vm image" "shared"
  export PIKA_TEST_IMAGE_DIR="${dir}"
}
