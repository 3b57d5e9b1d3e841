#!/usr/bin/env bash
# Suite 40-nix: the Nix side (flake, image builder, drift guard, NixOS server module, formatting).
#
# nixpkgs cannot be fetched on the test machines, so the flake is evaluated and built with
# `--override-input nixpkgs path:tests/nix/stub-nixpkgs` (a stub whose runCommand builds with host
# tools; see tests/nix/stub-nixpkgs/flake.nix). nix-build, the image packaging, and the imports
# into incusd are real. Run by scripts/test.sh; standalone: `bash scripts/tests/40-nix.sh` from
# the repository root (needs nix-bin, incusd, qemu-img, mksquashfs, jq, cargo).
set -euo pipefail

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
readonly REPO_ROOT
readonly SYSTEM="x86_64-linux"
# Crate names of the workspace binaries the flake packages (not roles: those come from roles.toml).
readonly WORKSPACE_BINARIES='["pika-cli","pika-roles","pika-server","pikaci"]'
# shellcheck disable=SC2016 # backticks are part of the message
readonly STALE_MESSAGE='nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`'

PROJECT="${PIKA_TEST_PROJECT_PREFIX:-pika-test}-nix-$$"
WORK=""
FAILURES=0
CHECKS=0

err() {
  echo "40-nix: error: $*" >&2
}

log() {
  echo "40-nix: $*"
}

pass() {
  CHECKS=$((CHECKS + 1))
  log "ok: $*"
}

fail() {
  CHECKS=$((CHECKS + 1))
  FAILURES=$((FAILURES + 1))
  err "FAILED: $*"
}

# assert_eq WHAT EXPECTED ACTUAL
assert_eq() {
  if [[ "$2" == "$3" ]]; then
    pass "$1"
  else
    fail "$1: expected [$2], got [$3]"
  fi
}

# timed FUNCTION ARGS...: runs a test function and logs how long it took.
timed() {
  local start="${SECONDS}"
  "$@"
  log "$1: $((SECONDS - start)) s"
}

# Nix settings for this machine: no nixbld group, no binary cache (no network), no sandbox
# (builders use host tools), flakes on.
setup_nix() {
  export NIX_CONFIG=$'build-users-group =\nsubstituters =\nsandbox = false\nexperimental-features = nix-command flakes\nwarn-dirty = false'
  command -v nix >/dev/null || { err "nix is not installed (apt-get install nix-bin)"; exit 1; }
}

# alejandra: crates.io ships only its library; nix/tools/alejandra-cli is the thin CLI around it.
ensure_alejandra() {
  export PATH="${HOME}/.cargo/bin:${PATH}"
  command -v alejandra >/dev/null && return 0
  log "installing alejandra (nix/tools/alejandra-cli, ~20 s)"
  cargo install --quiet --locked --path "${REPO_ROOT}/nix/tools/alejandra-cli" --root "${HOME}/.cargo" \
    --target-dir "${WORK}/alejandra-target"
}

# The repository's Nix files (askama templates under codegen/templates are not Nix).
nix_files() {
  git -C "${REPO_ROOT}" ls-files -co --exclude-standard -- '*.nix' ':!codegen/templates/**'
}

# copy_repo DIR: the repository's files (tracked + new, not ignored) in a fresh git repo, so the
# flake sees exactly what a clone would.
copy_repo() {
  local dir="$1"
  mkdir -p "${dir}"
  (cd "${REPO_ROOT}" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "${dir}")
  (cd "${dir}" && git init -q && git add -A)
}

# flake DIR ARGS...: nix with the stub nixpkgs of DIR.
flake() {
  local dir="$1"
  shift
  (cd "${dir}" && nix "$@" --override-input nixpkgs "path:${dir}/tests/nix/stub-nixpkgs" --no-write-lock-file 2>"${WORK}/nix.stderr")
}

# toml DIR JQ: a jq query over DIR/roles.toml, parsed by Nix itself.
toml() {
  nix-instantiate --eval --strict --json -E "builtins.fromTOML (builtins.readFile $1/roles.toml)" 2>/dev/null | jq -c "$2"
}

test_parse_all() {
  local file count=0 bad=0
  while IFS= read -r file; do
    count=$((count + 1))
    nix-instantiate --parse "${REPO_ROOT}/${file}" >/dev/null 2>"${WORK}/parse.stderr" \
      || { bad=$((bad + 1)); err "$(cat "${WORK}/parse.stderr")"; }
  done < <(nix_files)
  ((count > 10)) || { fail "expected the repository's .nix files, found ${count}"; return; }
  assert_eq "all ${count} .nix files parse" 0 "${bad}"
}

test_formatting() {
  local files=()
  mapfile -t files < <(nix_files)
  if (cd "${REPO_ROOT}" && alejandra --check --quiet "${files[@]}"); then
    pass "alejandra --check: ${#files[@]} files formatted"
  else
    (cd "${REPO_ROOT}" && alejandra --check "${files[@]}" 2>&1 | grep 'not formatted' >&2) || true
    fail "alejandra --check: files above are not formatted (run: alejandra <file>)"
  fi
}

# Package names per system equal roles.toml's canonical + legacy names; legacy == canonical drv.
test_flake_packages() {
  local dir="$1" system expected actual id canonical legacy
  for system in "${SYSTEM}" aarch64-linux; do
    expected="$(toml "${dir}" "[.roles[] | select(.system == \"${system}\") | .package, .\"legacy-packages\"[]] + ${WORKSPACE_BINARIES} | sort")"
    actual="$(flake "${dir}" eval --json ".#packages.${system}" --apply builtins.attrNames | jq -c sort)" \
      || { fail "packages.${system} does not evaluate: $(cat "${WORK}/nix.stderr")"; continue; }
    assert_eq "packages.${system} = roles.toml packages + workspace binaries" "${expected}" "${actual}"
  done
  local ids
  ids="$(toml "${dir}" "[.roles | to_entries[] | select(.value.system == \"${SYSTEM}\") | .key] | .[]" | jq -r .)"
  for id in ${ids}; do
    canonical="$(toml "${dir}" ".roles[\"${id}\"].package" | jq -r .)"
    canonical="$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.${canonical}.drvPath")" \
      || { fail "${id}: drvPath: $(cat "${WORK}/nix.stderr")"; continue; }
    echo "${canonical}" >>"${WORK}/drvpaths"
    for legacy in $(toml "${dir}" ".roles[\"${id}\"].\"legacy-packages\"[]" | jq -r .); do
      assert_eq "${id}: legacy ${legacy} is the canonical derivation" "${canonical}" \
        "$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.${legacy}.drvPath" || true)"
    done
  done
  assert_eq "every ${SYSTEM} role has its own derivation" "$(wc -w <<<"${ids}")" "$(sort -u "${WORK}/drvpaths" | wc -l)"
  rm -f "${WORK}/drvpaths"
}

test_flake_check() {
  local dir="$1"
  printf '{a=1;}\n' >"${WORK}/unformatted.nix"
  local fmt=(nix fmt --override-input nixpkgs "path:${dir}/tests/nix/stub-nixpkgs" --no-write-lock-file --)
  if (cd "${dir}" && "${fmt[@]}" --check flake.nix 2>"${WORK}/nix.stderr") \
    && ! (cd "${dir}" && "${fmt[@]}" --check "${WORK}/unformatted.nix" 2>/dev/null); then
    pass "nix fmt (the flake formatter) accepts flake.nix and rejects an unformatted file"
  else
    fail "nix fmt: $(cat "${WORK}/nix.stderr")"
  fi
  if flake "${dir}" flake check; then
    pass "nix flake check (roles-registry-fresh, nix-formatting, module/devShell evaluation)"
  else
    fail "nix flake check: $(cat "${WORK}/nix.stderr")"
  fi
}

# build_and_import DIR: builds every role's package from the flake, imports it into incusd and
# checks the imported image's architecture, description and type against roles.toml.
build_and_import() {
  local dir="$1" id package out file arch fingerprint info prefix
  prefix="$(basename "${dir}")"
  clear_images
  for id in $(toml "${dir}" '.roles | keys[]' | jq -r .); do
    [[ "$(toml "${dir}" ".roles[\"${id}\"].system" | jq -r .)" == "${SYSTEM}" ]] || continue
    package="$(toml "${dir}" ".roles[\"${id}\"].package" | jq -r .)"
    out="${dir}/result-${id}"
    if ! flake "${dir}" build ".#${package}" -o "${out}"; then
      fail "${id}: nix build .#${package}: $(cat "${WORK}/nix.stderr")"
      continue
    fi
    file="disk.qcow2"
    [[ "$(toml "${dir}" ".roles[\"${id}\"].\"instance-type\"" | jq -r .)" == "container" ]] && file="rootfs.squashfs"
    [[ -f "${out}/${file}" && -f "${out}/README.txt" ]] || { fail "${id}: ${out} lacks ${file} or README.txt"; continue; }
    incus image import "${out}/metadata.tar.xz" "${out}/${file}" --project "${PROJECT}" --alias "${prefix}/${id}" >/dev/null \
      || { fail "${id}: incus image import"; continue; }
    fingerprint="$(incus query "/1.0/images/aliases/${prefix}%2F${id}?project=${PROJECT}" | jq -r .target)"
    info="$(incus query "/1.0/images/${fingerprint}?project=${PROJECT}")"
    arch="$(toml "${dir}" ".roles[\"${id}\"].system" | jq -r 'split("-")[0]')"
    assert_eq "${id}: imported architecture" "${arch}" "$(jq -r .architecture <<<"${info}")"
    assert_eq "${id}: imported description" "$(toml "${dir}" ".roles[\"${id}\"].description" | jq -r .)" \
      "$(jq -r .properties.description <<<"${info}")"
    assert_eq "${id}: imported type" "$(toml "${dir}" ".roles[\"${id}\"].\"instance-type\"" | jq -r .)" \
      "$(jq -r .type <<<"${info}")"
    if grep -qF "$(toml "${dir}" ".roles[\"${id}\"].\"default-alias\"" | jq -r .)" "${out}/README.txt"; then
      pass "${id}: README.txt names the default alias"
    else
      fail "${id}: README.txt lacks the default alias"
    fi
  done
}

# A third (container) and fourth (aarch64, new special arg) role appear with no flake edit.
test_new_roles() {
  local dir="$1"
  copy_repo "${dir}"
  cat >>"${dir}/roles.toml" <<'TOML'

[roles.test-extra-container]
description = "Extra test role: \"container\" image"
default-alias = "pika-test/extra"
package = "test-extra-container-image"
legacy-packages = ["test-extra-old-image", "test-extra-older-image"]
image-name = "pika-test-extra"
variant = "test-extra"
system = "x86_64-linux"
instance-type = "container"
disk-size-mib = 1024
modules = ["nix/incus/pikaci-image.nix"]
special-args = []
runtime-mode = "one-shot"
readiness = "booted"
cpu = 1
memory-mib = 512
secure-boot = false

[roles.test-extra-arm]
description = "Extra test role on aarch64"
default-alias = "pika-test/arm"
package = "test-extra-arm-image"
legacy-packages = []
image-name = "pika-test-arm"
variant = "test-arm"
system = "aarch64-linux"
instance-type = "virtual-machine"
disk-size-mib = 2048
modules = ["nix/incus/test-extra-arm.nix"]
special-args = ["testExtraPayloadPkg"]
runtime-mode = "one-shot"
readiness = "booted"
cpu = 1
memory-mib = 512
secure-boot = false
TOML
  printf '%s\n' '# Test-only guest module.' '{testExtraPayloadPkg, ...}: {environment.systemPackages = [testExtraPayloadPkg];}' \
    >"${dir}/nix/incus/test-extra-arm.nix"
  (cd "${REPO_ROOT}" && cargo run -q -p pika-roles-codegen -- generate --manifest "${dir}/roles.toml" >/dev/null 2>&1) \
    || { fail "pika-roles-codegen generate for the extra roles"; return; }
  (cd "${dir}" && git add -A)
  if ! git -C "${REPO_ROOT}" diff --no-index --quiet -- "${REPO_ROOT}/flake.nix" "${dir}/flake.nix"; then
    fail "the extra-role copy changed flake.nix"
  fi
  test_flake_packages "${dir}"
  build_and_import "${dir}"
  assert_eq "aarch64 role: metadata architecture" '"aarch64"' \
    "$(flake "${dir}" eval --json ".#packages.aarch64-linux.test-extra-arm-image.architecture")"
  if flake "${dir}" eval --raw ".#packages.aarch64-linux.test-extra-arm-image.drvPath" >/dev/null; then
    fail "a role whose special arg nixpkgs lacks must not evaluate"
  elif grep -qF "payload \`testExtraPayloadPkg\` (roles.toml special-args) is not available" "${WORK}/nix.stderr"; then
    pass "missing payload package: error names the special arg and what to set"
  else
    fail "missing payload package: unexpected error: $(cat "${WORK}/nix.stderr")"
  fi
}

# roles.toml edited without regenerating: every role output and the check fail with the message.
test_stale() {
  local dir="$1" id attr
  copy_repo "${dir}"
  id="$(toml "${dir}" '.roles | keys[0]' | jq -r .)"
  sed -i "0,/^disk-size-mib = .*/s//disk-size-mib = 4242/" "${dir}/roles.toml"
  (cd "${dir}" && git add -A)
  for attr in "packages.${SYSTEM}" "checks.${SYSTEM}.roles-registry-fresh" "lib.incusGuestRoles"; do
    if flake "${dir}" eval --json ".#${attr}" --apply builtins.attrNames >/dev/null; then
      fail "stale roles.nix: .#${attr} evaluated"
    elif grep -qF "${STALE_MESSAGE}" "${WORK}/nix.stderr" && grep -q "disk-size-mib = 4242" "${WORK}/nix.stderr"; then
      pass "stale roles.nix: .#${attr} fails with the stale message naming the field"
    else
      fail "stale roles.nix: .#${attr}: unexpected error: $(cat "${WORK}/nix.stderr")"
    fi
  done
  if flake "${dir}" build ".#$(toml "${dir}" ".roles[\"${id}\"].package" | jq -r .)" --dry-run; then
    fail "stale roles.nix: nix build evaluated"
  elif grep -qF "${STALE_MESSAGE}" "${WORK}/nix.stderr"; then
    pass "stale roles.nix: nix build fails with the message"
  else
    fail "stale roles.nix: nix build: $(cat "${WORK}/nix.stderr")"
  fi
}

# The packaging step alone: nix-build from a fake qcow2 per role and the busybox rootfs.
test_packaging() {
  local expr="${REPO_ROOT}/tests/nix/package-incus-image-test.nix" rootfs out info description id
  clear_images
  rootfs="${PIKA_TEST_IMAGE_DIR:-}/container/rootfs.squashfs"
  if [[ ! -f "${rootfs}" ]]; then
    # shellcheck source=scripts/lib/test-image.sh
    source "${REPO_ROOT}/scripts/lib/test-image.sh"
    test_image_container "${WORK}/busybox" "busybox" "nix-packaging"
    rootfs="${WORK}/busybox/rootfs.squashfs"
  fi
  # shellcheck disable=SC2016 # literal ${x} and $HOME: the description must survive Nix, YAML and Incus
  description='Odd: "quoted" \ ${x} $HOME: é'
  out="${WORK}/packaged"
  nix-build "${expr}" --arg rootfs "${rootfs}" --argstr containerDescription "${description}" -A container \
    -o "${out}" >/dev/null 2>"${WORK}/nix.stderr" || { fail "packaging container: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "metadata.tar.xz holds only metadata.yaml, owner 0/0, mtime 1" "-rw-r--r-- 0/0 metadata.yaml 1970-01-01 00:00" \
    "$(tar --utc -tvJf "${out}/metadata.tar.xz" | awk '{print $1, $2, $6, $4, $5}')"
  if nix-build "${expr}" --arg rootfs "${rootfs}" --argstr containerDescription "${description}" -A container \
    --check >/dev/null 2>"${WORK}/nix.stderr"; then
    pass "packaging output is reproducible (nix-build --check)"
  else
    fail "packaging output is not reproducible: $(cat "${WORK}/nix.stderr")"
  fi
  incus image import "${out}/metadata.tar.xz" "${out}/rootfs.squashfs" --project "${PROJECT}" --alias packaged/c >/dev/null \
    || { fail "packaged container: incus image import"; return; }
  info="$(incus query "/1.0/images/$(incus query "/1.0/images/aliases/packaged%2Fc?project=${PROJECT}" | jq -r .target)?project=${PROJECT}")"
  assert_eq "packaged container: description survives quoting" "${description}" "$(jq -r .properties.description <<<"${info}")"
  incus launch packaged/c packaged --project "${PROJECT}" >/dev/null 2>&1 || true
  assert_eq "packaged container starts with the rootfs it was given" \
    "$(unsquashfs -cat "${rootfs}" etc/pika-test-marker 2>/dev/null)" \
    "$(incus exec packaged --project "${PROJECT}" -- cat /etc/pika-test-marker 2>/dev/null)"
  incus delete --force packaged --project "${PROJECT}" >/dev/null 2>&1 || true

  for id in $(toml "${REPO_ROOT}" '.roles | keys[]' | jq -r .); do
    nix-build "${expr}" --arg rootfs "${rootfs}" -A "${id}" -o "${WORK}/packaged-${id}" >/dev/null 2>"${WORK}/nix.stderr" \
      || { fail "packaging ${id}: $(cat "${WORK}/nix.stderr")"; continue; }
    incus image import "${WORK}/packaged-${id}/metadata.tar.xz" "${WORK}/packaged-${id}/disk.qcow2" \
      --project "${PROJECT}" --alias "packaged/${id}" >/dev/null || { fail "packaged ${id}: incus image import"; continue; }
    info="$(incus query "/1.0/images/$(incus query "/1.0/images/aliases/packaged%2F${id}?project=${PROJECT}" | jq -r .target)?project=${PROJECT}")"
    assert_eq "packaged ${id}: architecture, type" \
      "$(toml "${REPO_ROOT}" ".roles[\"${id}\"].system | split(\"-\")[0]" | jq -r .) virtual-machine" \
      "$(jq -r '.architecture + " " + .type' <<<"${info}")"
    assert_eq "packaged ${id}: description, variant" \
      "$(toml "${REPO_ROOT}" ".roles[\"${id}\"] | .description + \" / \" + .variant" | jq -r .)" \
      "$(jq -r '.properties.description + " / " + .properties.variant' <<<"${info}")"
  done

  id="$(toml "${REPO_ROOT}" '.roles | keys[0]' | jq -r .)"
  if nix-build "${expr}" --arg rootfs "${rootfs}" --arg missingDisk true -A "${id}" --no-out-link >/dev/null 2>"${WORK}/nix.stderr"; then
    fail "packaging a disk output without a qcow2 succeeded"
  elif grep -q 'packageIncusImage: error: no \*.qcow2 in .*disk/rootfs output is missing' "${WORK}/nix.stderr"; then
    pass "missing disk output: clear error"
  else
    fail "missing disk output: $(cat "${WORK}/nix.stderr")"
  fi
}

# module_eval ARGS...: JSON of tests/nix/pika-server-module-eval.nix (stub lib.evalModules).
module_eval() {
  nix-instantiate --eval --strict --json "${REPO_ROOT}/tests/nix/pika-server-module-eval.nix" "$@" 2>"${WORK}/nix.stderr"
}

test_server_module() {
  local id json valid
  for id in $(toml "${REPO_ROOT}" '.roles | keys[]' | jq -r .); do
    json="$(module_eval --arg settings "{ incus.guestRole = \"${id}\"; }")" || { fail "module eval ${id}: $(cat "${WORK}/nix.stderr")"; continue; }
    assert_eq "module, guestRole ${id}: role variable, no alias variable" "${id} false" \
      "$(jq -r '(.environment.PIKA_AGENT_INCUS_GUEST_ROLE) + " " + (.environment | has("PIKA_AGENT_INCUS_IMAGE_ALIAS") | tostring)' <<<"${json}")"
  done
  json="$(module_eval --arg settings '{ incus.imageAlias = "pika-test/alias"; incus.endpoint = "https://incus.test:8443"; incus.insecureTls = true; }')"
  assert_eq "module, alias + endpoint set, no role: variables" "pika-test/alias https://incus.test:8443 true false []" \
    "$(jq -r '[.environment.PIKA_AGENT_INCUS_IMAGE_ALIAS, .environment.PIKA_AGENT_INCUS_ENDPOINT, .environment.PIKA_AGENT_INCUS_INSECURE_TLS, (.environment | has("PIKA_AGENT_INCUS_GUEST_ROLE") | tostring), (.userGroups | tojson)] | join(" ")' <<<"${json}")"
  json="$(module_eval --arg settings '{ incus.allowed.projects = [ "b" "c" ]; incus.allowed.endpoints = [ "https://x:8443" ]; }')"
  assert_eq "module, allow-lists: comma-separated variables, empty lists emit none" "b,c https://x:8443 false" \
    "$(jq -r '[.environment.PIKA_AGENT_INCUS_ALLOWED_PROJECTS, .environment.PIKA_AGENT_INCUS_ALLOWED_ENDPOINTS, (.environment | has("PIKA_AGENT_INCUS_ALLOWED_PROFILES") | tostring)] | join(" ")' <<<"${json}")"
  json="$(module_eval --arg host true)" || { fail "host example: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "host example: managed-openclaw role, no alias, local socket group" "managed-openclaw false [\"incus-admin\"]" \
    "$(jq -r '[.environment.PIKA_AGENT_INCUS_GUEST_ROLE, (.environment | has("PIKA_AGENT_INCUS_IMAGE_ALIAS") | tostring), (.userGroups | tojson)] | join(" ")' <<<"${json}")"
  json="$(module_eval --arg enable false)"
  assert_eq "module disabled: no service" "[]" "$(jq -c .services <<<"${json}")"
  valid="$(toml "${REPO_ROOT}" '.roles | keys | map("\"" + . + "\"") | join(", ")' | jq -r .)"
  if module_eval --arg settings '{ incus.guestRole = "no-such-role"; }' >/dev/null; then
    fail "module accepted an unknown guest role"
  elif grep -qF "services.pika-server.incus.guestRole' is not of type \`null or one of ${valid}'" "${WORK}/nix.stderr"; then
    pass "module rejects an unknown role, listing ${valid}"
  else
    fail "unknown role: unexpected error: $(cat "${WORK}/nix.stderr")"
  fi
}

# Deletes the images of the test project (the same image may be imported by two tests).
clear_images() {
  local fingerprint
  for fingerprint in $(incus query "/1.0/images?project=${PROJECT}" | jq -r '.[] | split("/") | last'); do
    incus image delete "${fingerprint}" --project "${PROJECT}" >/dev/null
  done
}

# Every role's guest modules evaluate (stub lib.evalModules) and carry its payloads.
test_guest_modules() {
  local id json
  for id in $(toml "${REPO_ROOT}" '.roles | keys[]' | jq -r .); do
    json="$(nix-instantiate --eval --strict --json "${REPO_ROOT}/tests/nix/guest-module-eval.nix" --argstr role "${id}" \
      2>"${WORK}/nix.stderr")" || { fail "guest modules of ${id} do not evaluate: $(cat "${WORK}/nix.stderr")"; continue; }
    assert_eq "guest ${id}: payloads installed, DHCP uplink, stateVersion" "true true true" \
      "$(jq -r '[(.payloads - .packages == []), (.dhcpUplinks | length > 0), (.stateVersion | length > 0)] | map(tostring) | join(" ")' <<<"${json}")"
    # Deliberate pins: what each of today's roles must run.
    case "${id}" in
      managed-openclaw)
        assert_eq "guest ${id}: openclaw-gateway runs the payload's program" "true" \
          "$(jq -r '.services["openclaw-gateway"] | test("stub-openclaw-gateway/bin/openclaw'"'"' '"'"'gateway'"'"'$")' <<<"${json}")"
        ;;
      pikaci-runner)
        assert_eq "guest ${id}: nix, git and bash installed, pikaci user" "true" \
          "$(jq -r '((["nix", "git", "bash"] - .packages) == []) and (.users | index("pikaci") != null)' <<<"${json}")"
        ;;
      *) ;;
    esac
  done
}

cleanup() {
  if incus project show "${PROJECT}" >/dev/null 2>&1; then
    incus delete --force packaged --project "${PROJECT}" >/dev/null 2>&1 || true
    clear_images || true
    incus project delete "${PROJECT}" >/dev/null 2>&1 || true
  fi
  [[ -n "${WORK}" ]] && rm -rf "${WORK}"
  return 0
}

main() {
  WORK="$(mktemp -d "${PIKA_TEST_WORK:-/tmp}/nix.XXXXXX")"
  trap cleanup EXIT
  setup_nix
  ensure_alejandra
  incus project create "${PROJECT}" -c features.images=true -c features.profiles=false >/dev/null

  timed test_parse_all
  timed test_formatting
  copy_repo "${WORK}/repo"
  timed test_flake_packages "${WORK}/repo"
  timed test_flake_check "${WORK}/repo"
  timed build_and_import "${WORK}/repo"
  timed test_new_roles "${WORK}/extra"
  timed test_stale "${WORK}/stale"
  timed test_packaging
  timed test_server_module
  timed test_guest_modules

  log "$((CHECKS - FAILURES)) of ${CHECKS} checks passed"
  ((FAILURES == 0))
}

main "$@"
