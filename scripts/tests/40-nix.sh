#!/usr/bin/env bash
# Suite 40-nix: the Nix side (flake, image builder, drift guard, NixOS modules, formatting).
#
# Two kinds of evaluation:
# - The NixOS modules (every role's guest as VM and as container, the pika-server module, the host
#   example) on the REAL nixpkgs lib and NixOS's own Incus guest modules from the nixpkgs subset
#   ($PIKA_NIXPKGS_SUBSET, else ../shared/nixpkgs-subset next to the repository), other NixOS
#   options stubbed with their real types (tests/nix/nixos-stubs). Without the subset (a user's
#   machine) these tests are skipped, and the suite says so.
# - The flake, with no network: every input is replaced through --override-input by a stub flake
#   (tests/nix/stub-nixpkgs, tests/nix/stub-inputs/{crane,nix-openclaw,pika}); the stubs' builders
#   use host tools. nix-build, the image packaging and the imports into incusd are real.
# Run by scripts/test.sh; standalone: `bash scripts/tests/40-nix.sh` from the repository root
# (needs nix-bin, incusd, qemu-img, mksquashfs, jq, cargo).
set -euo pipefail

readonly SUITE="40-nix"
# shellcheck source=scripts/lib/nix-suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/nix-suite.sh"
readonly SYSTEM="x86_64-linux"
# Flake package names of the workspace binaries (not roles: those come from roles.toml), and the
# program each one installs (meta.mainProgram). A deliberate pin: nix/rust.nix must match it.
readonly WORKSPACE_BINARIES='["pika-cli","pika-guest","pika-roles","pika-server","pikaci"]'
readonly WORKSPACE_PROGRAMS='{"pika-cli":"pika","pika-guest":"pika-guest","pika-roles":"pika-roles","pika-server":"pika-server","pikaci":"pikaci"}'
# shellcheck disable=SC2016 # backticks are part of the message
readonly STALE_MESSAGE='nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`'

PROJECT="${PIKA_TEST_PROJECT_PREFIX:-pika-test}-nix-$$"
WORK=""
SKIPPED=()
# The nixpkgs subset (real lib + NixOS Incus modules) and the modules tree the tests evaluate.
SUBSET=""
MODULES=""

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
# flake sees exactly what a clone would, committed with a lock of the stub inputs.
copy_repo() {
  local dir="$1" overrides=()
  mkdir -p "${dir}"
  (cd "${REPO_ROOT}" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "${dir}")
  (cd "${dir}" && git init -q && git add -A)
  # A committed lock of the stub inputs: with a lock the flake does not match, Nix drops self.rev.
  mapfile -t overrides < <(override_inputs "${dir}")
  (cd "${dir}" && nix flake lock "${overrides[@]}" 2>"${WORK}/nix.stderr") \
    || { err "nix flake lock with the stub inputs: $(cat "${WORK}/nix.stderr")"; return 1; }
  commit_copy "${dir}"
}

# override_inputs DIR: --override-input arguments that replace every flake input by DIR's stubs.
override_inputs() {
  local dir="$1" input
  printf '%s\n' --override-input nixpkgs "path:${dir}/tests/nix/stub-nixpkgs"
  for input in crane nix-openclaw pika; do
    printf '%s\n' --override-input "${input}" "path:${dir}/tests/nix/stub-inputs/${input}"
  done
}

# commit_copy DIR: commits DIR's changes, so the flake has a clean self.rev.
commit_copy() {
  (cd "$1" && git add -A && git -c user.name=pika-test -c user.email=pika-test@localhost commit -qm "test edit")
}

# flake DIR ARGS...: nix with every input of DIR's flake stubbed.
flake() {
  local dir="$1" overrides=()
  shift
  mapfile -t overrides < <(override_inputs "${dir}")
  (cd "${dir}" && nix "$@" "${overrides[@]}" --no-write-lock-file 2>"${WORK}/nix.stderr")
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
  local dir="$1" check overrides=()
  mapfile -t overrides < <(override_inputs "${dir}")
  printf '{a=1;}\n' >"${WORK}/unformatted.nix"
  local fmt=(nix fmt "${overrides[@]}" --no-write-lock-file --)
  if (cd "${dir}" && "${fmt[@]}" --check flake.nix 2>"${WORK}/nix.stderr") \
    && ! (cd "${dir}" && "${fmt[@]}" --check "${WORK}/unformatted.nix" 2>/dev/null); then
    pass "nix fmt (the flake formatter) accepts flake.nix and rejects an unformatted file"
  else
    fail "nix fmt: $(cat "${WORK}/nix.stderr")"
  fi
  # Evaluates every output, module and check derivation. The Rust checks cannot build offline (the
  # stub crane refuses to run cargo; suite 10-rust runs the same cargo commands), so they are only
  # evaluated here; the others are built below.
  if flake "${dir}" flake check --no-build; then
    pass "nix flake check --no-build: every output and check evaluates (all inputs stubbed)"
  else
    fail "nix flake check --no-build: $(cat "${WORK}/nix.stderr")"
  fi
  for check in roles-registry-fresh nix-formatting; do
    if flake "${dir}" build --no-link ".#checks.${SYSTEM}.${check}"; then
      pass "checks.${check} builds"
    else
      fail "checks.${check}: $(cat "${WORK}/nix.stderr")"
    fi
  done
  assert_eq "flake checks: Rust (crane) + registry + formatting" \
    '["cargo-clippy","cargo-fmt","cargo-test","nix-formatting","role-images-boot","roles-generated-fresh","roles-registry-fresh"]' \
    "$(flake "${dir}" eval --json ".#checks.${SYSTEM}" --apply builtins.attrNames | jq -c sort)"
  assert_eq "clippy check denies warnings on all targets" '"--all-targets -- -D warnings"' \
    "$(flake "${dir}" eval --json ".#checks.${SYSTEM}.cargo-clippy.craneArgs.cargoClippyExtraArgs")"
}

# Every package (the role images and the Rust binaries) has meta description, license, platforms,
# and the system it is built for is among its platforms.
test_package_meta() {
  local dir="$1" system lacking
  for system in "${SYSTEM}" aarch64-linux; do
    lacking="$(flake "${dir}" eval --json ".#packages.${system}" --apply "ps: builtins.filter (n: let m = ps.\${n}.meta; in
        !(m ? description && m.description != \"\" && m ? license && builtins.elem \"${system}\" (m.platforms or []))) (builtins.attrNames ps)" | jq -c .)" \
      || { fail "packages.${system} meta: $(cat "${WORK}/nix.stderr")"; continue; }
    assert_eq "packages.${system}: every package has meta description, license and platforms with ${system}" "[]" "${lacking}"
  done
}

# checks.role-images-boot: one NixOS test per role of the system, importing the role's own image and
# launching it with the role's launch config (nix/incus/launch-config.nix; the Rust test
# nix_launch_config_is_the_rust_one ties it to IncusGuestRole::launch_config), waiting for readiness.
test_boot_checks() {
  local dir="$1" ids id package out script file flag missing
  ids="$(toml "${dir}" "[.roles | to_entries[] | select(.value.system == \"${SYSTEM}\") | .key] | sort")"
  assert_eq "role-images-boot has one test per ${SYSTEM} role" "${ids}" \
    "$(flake "${dir}" eval --json ".#checks.${SYSTEM}.role-images-boot.tests" --apply builtins.attrNames | jq -c sort)"
  for id in $(jq -r '.[]' <<<"${ids}"); do
    package="$(toml "${dir}" ".roles[\"${id}\"].package" | jq -r .)"
    out="$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.${package}.outPath")"
    script="$(flake "${dir}" eval --raw ".#checks.${SYSTEM}.role-images-boot.tests.${id}.testScript")" \
      || { fail "${id}: boot test: $(cat "${WORK}/nix.stderr")"; continue; }
    file="disk.qcow2"
    [[ "$(toml "${dir}" ".roles[\"${id}\"].\"instance-type\"" | jq -r .)" == "container" ]] && file="rootfs.squashfs"
    missing=""
    grep -qF "incus image import ${out}/metadata.tar.xz ${out}/${file} --alias" <<<"${script}" || missing+=" import-of-${package}"
    for flag in $(nix-instantiate --eval --strict --json -E "import ${dir}/nix/incus/launch-config.nix (import ${dir}/nix/incus/registry.nix { repoRoot = ${dir}; }).registry.\"${id}\"" 2>/dev/null \
      | jq -r 'to_entries[] | "\(.key)=\(.value)"'); do
      grep -qF -- "--config '${flag}'" <<<"${script}" || missing+=" ${flag}"
    done
    [[ "${file}" == "rootfs.squashfs" ]] || grep -qF -- " guest --vm " <<<"${script}" || missing+=" --vm"
    grep -qF "the guest becomes ready ($(toml "${dir}" ".roles[\"${id}\"].readiness" | jq -r .))" <<<"${script}" || missing+=" readiness"
    assert_eq "${id}: boot test imports the role's image, launches it with its launch config, waits for its readiness (missing:${missing:- none})" "" "${missing}"
  done
  # shellcheck disable=SC2016 # ${n} is Nix
  assert_eq "the boot tests are NixOS tests (vm-test-run-role-image-boot-<id>)" \
    "$(jq -c 'map("vm-test-run-role-image-boot-" + .)' <<<"${ids}")" \
    "$(flake "${dir}" eval --json ".#checks.${SYSTEM}.role-images-boot.tests" --apply 'ts: map (n: ts.${n}.name) (builtins.attrNames ts)' | jq -c sort)"
}

# pika's own nix-openclaw input follows ours: the lock holds one nix-openclaw.
test_flake_lock_follows() {
  local dir="$1"
  assert_eq "flake.lock: pika's nix-openclaw follows ours (one lock of it)" '["nix-openclaw"]' \
    "$(jq -c '.nodes[.nodes.root.inputs.pika].inputs["nix-openclaw"]' "${dir}/flake.lock")"
}

# The stub nixpkgs stands in for nixpkgs and nothing more: no role payload (every special-arg of
# roles.toml and every package the payload inputs provide) may hide in it.
test_stub_has_no_payload() {
  local dir="$1" names found
  names="$(toml "${dir}" '[.roles[]."special-args"[]] + ["openclaw", "openclaw-gateway", "pikachat"] | unique')"
  found="$(nix eval --json --impure --expr "builtins.attrNames (import ${dir}/tests/nix/stub-nixpkgs/pkgs.nix { lib = import ${dir}/tests/nix/stub-nixpkgs/lib {}; system = \"${SYSTEM}\"; })" \
    2>"${WORK}/nix.stderr" | jq -c --argjson names "${names}" '[.[] | select(. as $n | $names | index($n))]')" \
    || { fail "stub nixpkgs: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "the stub nixpkgs defines no payload (${names})" "[]" "${found}"
}

# The Rust packages (nix/rust.nix through the stub crane, which records its arguments): one
# dependency build for all, the program of each, and a source that keeps only what cargo reads.
test_rust_packages() {
  local dir="$1" deps programs src before after name program script shell missing=""
  deps="$(flake "${dir}" eval --json ".#packages.${SYSTEM}" \
    --apply "ps: map (n: ps.\${n}.craneArgs.cargoArtifacts.drvPath) (builtins.fromJSON ''${WORKSPACE_BINARIES}'')" | jq -c 'unique | length')" \
    || { fail "Rust packages: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "every binary shares one buildDepsOnly artifact" 1 "${deps}"
  assert_eq "clippy and tests reuse that artifact" 1 \
    "$(flake "${dir}" eval --json ".#checks.${SYSTEM}" --apply "cs: [cs.cargo-clippy.craneArgs.cargoArtifacts.drvPath cs.cargo-test.craneArgs.cargoArtifacts.drvPath]" \
      | jq -c --arg p "$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.pika-server.craneArgs.cargoArtifacts.drvPath")" '. + [$p] | unique | length')"
  programs="$(flake "${dir}" eval --json ".#packages.${SYSTEM}" \
    --apply "ps: builtins.listToAttrs (map (n: { name = n; value = ps.\${n}.meta.mainProgram; }) (builtins.fromJSON ''${WORKSPACE_BINARIES}''))" | jq -cS .)"
  assert_eq "meta.mainProgram of each Rust package" "$(jq -cS . <<<"${WORKSPACE_PROGRAMS}")" "${programs}"
  for name in $(jq -r '.[]' <<<"${WORKSPACE_BINARIES}"); do
    program="$(jq -r --arg n "${name}" '.[$n]' <<<"${WORKSPACE_PROGRAMS}")"
    script="$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.${name}.craneArgs.postInstall")"
    grep -qF "installShellCompletion --cmd ${program} " <<<"${script}" || missing+=" ${name}"
    for shell in bash fish zsh; do
      grep -qF -- "--${shell} <(\"\$out/bin/${program}\" completions ${shell})" <<<"${script}" || missing+=" ${name}:${shell}"
    done
  done
  assert_eq "each Rust package installs bash, fish and zsh completions of its program (missing:${missing:- none})" "" "${missing}"
  src="$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.pika-server.craneArgs.src")"
  local wanted
  missing=""
  for wanted in Cargo.lock roles.toml codegen/askama.toml codegen/templates/roles.nix nix/incus/roles.nix \
    scripts/lib/roles.sh $(toml "${dir}" '[.roles[].modules[]] | .[]' | jq -r .); do
    [[ -e "${src}/${wanted}" ]] || missing+=" ${wanted}"
  done
  assert_eq "Rust source keeps what cargo and build.rs read (missing:${missing:- none})" "" "${missing}"
  assert_eq "Rust source leaves out README.md, flake.nix, the test scripts" "" \
    "$(find "${src}" -type f \( -name README.md -o -name flake.nix -o -path '*/scripts/tests/*' \))"
  before="$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.pika-server.drvPath")"
  echo "An edit that is not Rust." >>"${dir}/README.md"
  (cd "${dir}" && git add -A)
  after="$(flake "${dir}" eval --raw ".#packages.${SYSTEM}.pika-server.drvPath")"
  git -C "${dir}" checkout -q HEAD -- README.md
  assert_eq "a README edit does not rebuild the Rust packages" "${before}" "${after}"
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
    assert_eq "${id}: ${file} is a link into the disk/rootfs derivation (no copy of it per commit)" \
      "link $(flake "${dir}" eval --raw ".#packages.${SYSTEM}.${package}.image.outPath")" \
      "$([[ -L "${out}/${file}" ]] && echo link) $(readlink "${out}/${file}" | sed 's|/[^/]*$||')"
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
    check_provenance "${dir}" "${id}" "${out}" "${info}"
  done
}

# check_provenance DIR ID RESULT IMAGE-JSON: the imported image's properties carry the role, the
# copy's commit, the digest of the role's roles.toml table, its own output path, what
# incus-simplestreams needs, and the Secure Boot requirement of roles.toml.
check_provenance() {
  local dir="$1" id="$2" out="$3" info="$4" digest secure_boot type
  # The digest is computed once, by the codegen, over the role's typed spec (roles.sh carries it).
  # shellcheck source=/dev/null
  digest="$(source "${dir}/scripts/lib/roles.sh" && echo "${PIKA_ROLE_ROLES_DIGEST[${id}]}")"
  assert_eq "${id}: provenance pika.role, pika.source-rev (the copy's commit), pika.roles-digest" \
    "${id} $(git -C "${dir}" rev-parse HEAD) ${digest}" \
    "$(jq -r '.properties | [.["pika.role"], .["pika.source-rev"], .["pika.roles-digest"]] | join(" ")' <<<"${info}")"
  assert_eq "${id}: pika.built-from is the image's output path" "$(readlink -f "${out}")" \
    "$(jq -r '.properties["pika.built-from"]' <<<"${info}")"
  assert_eq "${id}: os, release, variant, architecture properties (incus-simplestreams)" "nixos stub $(toml "${dir}" ".roles[\"${id}\"].variant" | jq -r .) x86_64" \
    "$(jq -r '.properties | [.os, .release, .variant, .architecture] | join(" ")' <<<"${info}")"
  secure_boot="$(toml "${dir}" ".roles[\"${id}\"].\"secure-boot\"" | jq -r .)"
  type="$(toml "${dir}" ".roles[\"${id}\"].\"instance-type\"" | jq -r .)"
  if [[ "${type}" == "virtual-machine" && "${secure_boot}" == "false" ]]; then
    assert_eq "${id}: VM image not Secure Boot capable: requirements.secureboot=false" "false" \
      "$(jq -r '.properties["requirements.secureboot"]' <<<"${info}")"
  else
    assert_eq "${id}: no Secure Boot requirement (${type}, secure-boot ${secure_boot})" "null" \
      "$(jq -r '.properties["requirements.secureboot"]' <<<"${info}")"
  fi
}

# A third (container) and fourth (aarch64, new special arg) role appear with no flake edit.
test_new_roles() {
  local dir="$1" json
  copy_repo "${dir}"
  cat "${REPO_ROOT}/tests/fixtures/extra-role.toml" >>"${dir}/roles.toml"
  cp "${REPO_ROOT}/tests/fixtures/test-extra-arm.nix" "${dir}/nix/incus/roles/test-extra-arm.nix"
  (cd "${REPO_ROOT}" && cargo run -q -p pika-roles-codegen -- generate --manifest "${dir}/roles.toml" >/dev/null 2>&1) \
    || { fail "pika-roles-codegen generate for the extra roles"; return; }
  commit_copy "${dir}"
  if ! git -C "${REPO_ROOT}" diff --no-index --quiet -- "${REPO_ROOT}/flake.nix" "${dir}/flake.nix"; then
    fail "the extra-role copy changed flake.nix"
  fi
  test_flake_packages "${dir}"
  build_and_import "${dir}"
  assert_eq "aarch64 role: metadata architecture" '"aarch64"' \
    "$(flake "${dir}" eval --json ".#packages.aarch64-linux.test-extra-arm-image.architecture")"
  refuses "missing payload package: error names the special arg and where to map it" \
    "payload \`testExtraPayloadPkg\` (roles.toml special-args) is not available: map it to a flake input package in nix/incus/payloads.nix" \
    flake "${dir}" eval --raw ".#packages.aarch64-linux.test-extra-arm-image.drvPath"
  # The new role's facts reach its guest through the shared base (real Incus modules).
  if [[ -z "${SUBSET}" ]]; then
    SKIPPED+=("test_new_roles:ssh-role-guest")
  elif json="$(guest_eval "${dir}" test-extra-container container)"; then
    assert_eq "new role with readiness ssh: sshd on, password login off, its mount point exists, no failed assertion" \
      "true false true []" \
      "$(jq -r '[.openssh.enable, .openssh.passwordAuthentication, (.tmpfiles | index("d /srv/pika-data 0755 root root -") != null), (.failedAssertions | tojson)] | map(tostring) | join(" ")' <<<"${json}")"
  else
    fail "new ssh role's guest does not evaluate: $(cat "${WORK}/nix.stderr")"
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
    elif grep -qF "${STALE_MESSAGE}" "${WORK}/nix.stderr" && grep -qF "roles.toml has sha256 $(sha256sum "${dir}/roles.toml" | cut -d' ' -f1)" "${WORK}/nix.stderr"; then
      pass "stale roles.nix: .#${attr} fails with the stale message naming roles.toml's hash"
    else
      fail "stale roles.nix: .#${attr}: unexpected error: $(cat "${WORK}/nix.stderr")"
    fi
  done
  refuses "stale roles.nix: nix build fails with the message" "${STALE_MESSAGE}" \
    flake "${dir}" build ".#$(toml "${dir}" ".roles[\"${id}\"].package" | jq -r .)" --dry-run
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
    --check --no-out-link >/dev/null 2>"${WORK}/nix.stderr"; then
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
    assert_eq "packaged ${id}: extra property, and the output path property is the output path" \
      "${id} $(readlink -f "${WORK}/packaged-${id}")" \
      "$(jq -r '.properties["pika.role"] + " " + .properties["pika.built-from"]' <<<"${info}")"
  done
  refuses "packaging refuses a property that overrides a standard one" "packageIncusImage: \`properties\` may not set variant" \
    nix-build "${expr}" --arg rootfs "${rootfs}" --arg properties '{ variant = "x"; }' -A container --no-out-link

  id="$(toml "${REPO_ROOT}" '.roles | keys[0]' | jq -r .)"
  if nix-build "${expr}" --arg rootfs "${rootfs}" --arg missingDisk true -A "${id}" --no-out-link >/dev/null 2>"${WORK}/nix.stderr"; then
    fail "packaging a disk output without a qcow2 succeeded"
  elif grep -q 'packageIncusImage: error: no \*.qcow2 in .*disk/rootfs output is missing' "${WORK}/nix.stderr"; then
    pass "missing disk output: clear error"
  else
    fail "missing disk output: $(cat "${WORK}/nix.stderr")"
  fi
}

# module_eval ARGS...: JSON of tests/nix/pika-server-module-eval.nix (real nixpkgs lib).
module_eval() {
  nix-instantiate --eval --strict --json "${REPO_ROOT}/tests/nix/pika-server-module-eval.nix" \
    --arg nixpkgsLib "${SUBSET}/lib" "$@" 2>"${WORK}/nix.stderr"
}

# expect_assertion WHAT MESSAGE-FRAGMENT ARGS...: the module evaluates and exactly that assertion fails.
expect_assertion() {
  local what="$1" fragment="$2" json
  shift 2
  json="$(module_eval "$@")" || { fail "${what}: $(cat "${WORK}/nix.stderr")"; return; }
  if jq -e --arg f "${fragment}" '(.failedAssertions | length) == 1 and (.failedAssertions[0] | contains($f))' <<<"${json}" >/dev/null; then
    pass "${what}: assertion \"${fragment}\""
  else
    fail "${what}: expected one failed assertion with \"${fragment}\", got $(jq -c .failedAssertions <<<"${json}")"
  fi
}

test_server_module() {
  local id json valid
  for id in $(toml "${REPO_ROOT}" '.roles | keys[]' | jq -r .); do
    json="$(module_eval --arg settings "{ incus.guestRole = \"${id}\"; }")" || { fail "module eval ${id}: $(cat "${WORK}/nix.stderr")"; continue; }
    assert_eq "module, guestRole ${id}: role variable, no alias variable, no failed assertion" "${id} false []" \
      "$(jq -r '(.environment.PIKA_AGENT_INCUS_GUEST_ROLE) + " " + (.environment | has("PIKA_AGENT_INCUS_IMAGE_ALIAS") | tostring) + " " + (.failedAssertions | tojson)' <<<"${json}")"
  done
  json="$(module_eval --arg settings '{ incus.imageAlias = "pika-test/alias"; incus.endpoint = "https://incus.test:8443"; incus.clientCertPath = "/run/pika/client.crt"; incus.clientKeyPath = "/run/pika/client.key"; }')"
  assert_eq "module, alias + HTTPS endpoint + client cert, no role: variables" "pika-test/alias https://incus.test:8443 /run/pika/client.crt false [] []" \
    "$(jq -r '[.environment.PIKA_AGENT_INCUS_IMAGE_ALIAS, .environment.PIKA_AGENT_INCUS_ENDPOINT, .environment.PIKA_AGENT_INCUS_CLIENT_CERT_PATH, (.environment | has("PIKA_AGENT_INCUS_GUEST_ROLE") | tostring), (.userGroups | tojson), (.failedAssertions | tojson)] | join(" ")' <<<"${json}")"
  assert_eq "module: the service runs under the shared hardening (ProtectSystem=strict, no capabilities)" 'strict [""]' \
    "$(jq -r '.serviceConfig.ProtectSystem + " " + (.serviceConfig.CapabilityBoundingSet | tojson)' <<<"${json}")"
  json="$(module_eval --arg settings '{ incus.allowed.projects = [ "b" "c" ]; incus.allowed.endpoints = [ "https://x:8443" ]; }')"
  assert_eq "module, allow-lists: comma-separated variables, empty lists emit none" "b,c https://x:8443 false" \
    "$(jq -r '[.environment.PIKA_AGENT_INCUS_ALLOWED_PROJECTS, .environment.PIKA_AGENT_INCUS_ALLOWED_ENDPOINTS, (.environment | has("PIKA_AGENT_INCUS_ALLOWED_PROFILES") | tostring)] | join(" ")' <<<"${json}")"
  json="$(module_eval --arg host true)" || { fail "host example: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "host example: managed-openclaw, no alias, socket group, port opened, every assertion passes" \
    'managed-openclaw false ["incus-admin"] [8080] []' \
    "$(jq -r '[.environment.PIKA_AGENT_INCUS_GUEST_ROLE, (.environment | has("PIKA_AGENT_INCUS_IMAGE_ALIAS") | tostring), (.userGroups | tojson), (.firewallPorts | tojson), (.failedAssertions | tojson)] | join(" ")' <<<"${json}")"
  json="$(module_eval --arg enable false)"
  assert_eq "module disabled: no service, no port" "[] []" "$(jq -c '.services, .firewallPorts' <<<"${json}" | paste -sd' ')"
  expect_assertion "relative database path" "services.pika-server.database must be an absolute path" \
    --arg settings '{ database = "pika.db"; }'
  expect_assertion "HTTPS endpoint without client certificate" "set services.pika-server.incus.clientCertPath and clientKeyPath" \
    --arg settings '{ incus.endpoint = "https://incus.test:8443"; incus.clientCertPath = "/run/pika/client.crt"; }'
  json="$(module_eval --arg settings '{ database = "/srv/pika/pika.db"; }')"
  assert_eq "a database outside the state directory stays writable (ReadWritePaths)" '["/srv/pika"]' \
    "$(jq -c .serviceConfig.ReadWritePaths <<<"${json}")"
  valid="$(toml "${REPO_ROOT}" '.roles | keys | map("\"" + . + "\"") | join(", ")' | jq -r .)"
  refuses "module rejects an unknown role, listing ${valid}" \
    "services.pika-server.incus.guestRole' is not of type \`null or one of ${valid}'" \
    module_eval --arg settings '{ incus.guestRole = "no-such-role"; }'
}

# The host example without nftables fails incus.nix's assertion (so the example's line matters),
# and the flake's module imported twice (as pika-server and as default) evaluates once.
test_host_and_flake_module() {
  local dir="$1" json overrides=()
  sed -i '/networking.nftables.enable = true;/d' "${dir}/nix/hosts/pika-server.nix"
  json="$(nix-instantiate --eval --strict --json "${dir}/tests/nix/pika-server-module-eval.nix" --arg nixpkgsLib "${SUBSET}/lib" \
    --arg host true 2>"${WORK}/nix.stderr")" || { fail "host example without nftables: $(cat "${WORK}/nix.stderr")"; return; }
  # shellcheck disable=SC2016 # the backticks are part of the message
  assert_eq "host example without nftables: incus.nix's assertion fails" \
    '["Incus on NixOS is unsupported using iptables. Set `networking.nftables.enable = true;`"]' "$(jq -c .failedAssertions <<<"${json}")"
  git -C "${dir}" checkout -q -- nix/hosts/pika-server.nix
  mapfile -t overrides < <(override_inputs "${dir}")
  json="$(cd "${dir}" && nix eval --impure --json "${overrides[@]}" --no-write-lock-file .#nixosModules --apply "modules:
    import ./tests/nix/pika-server-module-eval.nix {
      nixpkgsLib = ${SUBSET}/lib;
      extraModules = [modules.pika-server modules.default];
      settings = { incus.guestRole = \"$(toml "${dir}" '.roles | keys[0]' | jq -r .)\"; };
    }" 2>"${WORK}/nix.stderr")" || { fail "flake module imported twice: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "flake module imported twice (pika-server + default): one definition, the flake's package" \
    "[] pika-server" \
    "$(jq -r '(.failedAssertions | tojson) + " " + (.serviceConfig.ExecStart | capture("-(?<name>pika-server)-package/bin") | .name)' <<<"${json}")"
}

# Deletes the images of the test project (the same image may be imported by two tests).
clear_images() {
  local fingerprint
  for fingerprint in $(incus query "/1.0/images?project=${PROJECT}" | jq -r '.[] | split("/") | last'); do
    incus image delete "${fingerprint}" --project "${PROJECT}" >/dev/null
  done
}

# guest_eval DIR ROLE TYPE: JSON of DIR's tests/nix/guest-eval.nix (real lib, real Incus modules).
guest_eval() {
  nix-instantiate --eval --strict --json "$1/tests/nix/guest-eval.nix" --arg nixpkgsLib "${SUBSET}/lib" \
    --arg modulesPath "${MODULES}" --argstr role "$2" --argstr instanceType "$3" 2>"${WORK}/nix.stderr"
}

# Every role, as VM and as container, composed as the image builder composes it, on NixOS's real
# Incus guest modules: no conflict, no failed assertion, and the role's contract in the guest.
test_guest_modules() {
  local id type json readiness mounts
  for id in $(toml "${REPO_ROOT}" '.roles | keys[]' | jq -r .); do
    readiness="$(toml "${REPO_ROOT}" ".roles[\"${id}\"].readiness" | jq -r .)"
    mounts="$(toml "${REPO_ROOT}" "[.roles[\"${id}\"].mounts // [] | .[].path] | sort")"
    for type in virtual-machine container; do
      json="$(guest_eval "${REPO_ROOT}" "${id}" "${type}")" \
        || { fail "guest ${id} as ${type} does not evaluate: $(cat "${WORK}/nix.stderr")"; continue; }
      assert_eq "guest ${id} as ${type}: no failed assertion, payloads installed, DHCP uplink, small docs" \
        "[] true true false false" \
        "$(jq -r '[(.failedAssertions | tojson), (.payloads - .packages == []), (.dhcpUplinks | length > 0), .documentation, .documentationNixos] | map(tostring) | join(" ")' <<<"${json}")"
      assert_eq "guest ${id} as ${type}: sshd exactly when readiness is ssh (${readiness})" \
        "$([[ "${readiness}" == "ssh" ]] && echo true || echo false)" "$(jq -r .openssh.enable <<<"${json}")"
      assert_eq "guest ${id} as ${type}: every mount point exists (tmpfiles)" "${mounts}" \
        "$(jq -c --argjson want "${mounts}" '[.tmpfiles[] | split(" ") | select(.[0] == "d") | .[1] | select(. as $p | $want | index($p))] | sort' <<<"${json}")"
      assert_eq "guest ${id} as ${type}: NixOS's Incus module for the type (container flag, incus-agent on VMs)" \
        "$([[ "${type}" == "container" ]] && echo "true false" || echo "false true")" "$(jq -r '"\(.isContainer) \(.incusAgent)"' <<<"${json}")"
      assert_eq "guest ${id} as ${type}: no nixpkgs channel (no nixpkgs source among the closure roots), root locked, no password warning" \
        "false 0 ! null []" \
        "$(jq -r '[.channel, (.closureRoots | map(select(test("-nixos-channel-sources|-source$"))) | length), .root.hashedPassword, .root.initialHashedPassword, (.warnings | tojson)] | map(tostring) | join(" ")' <<<"${json}")"
      # Deliberate pins: what each of today's roles must run.
      case "${id}" in
        managed-openclaw)
          assert_eq "guest ${id} as ${type}: openclaw-gateway runs the payload's program, hardened" "true strict" \
            "$(jq -r '.services["openclaw-gateway"] | (.ExecStart | test("payload-openclawGatewayPkg/bin/openclawGatewayPkg gateway --port [0-9]+$") | tostring) + " " + .ProtectSystem' <<<"${json}")"
          ;;
        pikaci-runner)
          assert_eq "guest ${id} as ${type}: nix, git, bash and the Rust toolchain installed; jobs' user pikaci uid 1000, group users gid 100; caches owned by it" \
            "true pikaci:1000:users:100 true" \
            "$(jq -r '((["nix", "git", "bash", "cargo", "rustc", "clippy", "rustfmt", "gcc", "clang", "pkg-config"] - .packages) == [] | tostring)
              + " pikaci:\(.userIds.pikaci):\(.users.pikaci.group):\(.groupIds.users) "
              + ([.tmpfiles[] | select(test("^d /cargo-(home|target) 0755 pikaci users -$"))] | length == 2 | tostring)' <<<"${json}")"
          ;;
        *) ;;
      esac
    done
  done
}

# The tests can fail: a copy with the old priorities brings back the bugs they guard against.
test_guest_regressions() {
  local dir="$1" id json
  id="$(toml "${dir}" '.roles | keys[0]' | jq -r .)"
  sed -i 's/enable = lib.mkOverride 900 (role.readiness == "ssh");/enable = lib.mkDefault false;/' "${dir}/nix/incus/base.nix"
  grep -q 'enable = lib.mkDefault false;' "${dir}/nix/incus/base.nix" || { fail "regression copy: base.nix has no openssh line to revert"; return; }
  if guest_eval "${dir}" "${id}" virtual-machine >/dev/null; then
    fail "openssh mkDefault false: evaluated without the conflict"
  elif grep -q "The option \`services.openssh.enable' has conflicting definition values" "${WORK}/nix.stderr" \
    && grep -q "lxc-instance-common.nix': true" "${WORK}/nix.stderr"; then
    pass "openssh mkDefault false (the old base) conflicts with lxc-instance-common.nix, as on NixOS"
  else
    fail "openssh mkDefault false: unexpected error: $(cat "${WORK}/nix.stderr")"
  fi
  git -C "${dir}" checkout -q -- nix/incus/base.nix
  sed -i 's/enable = lib.mkOverride 880 false;/enable = lib.mkDefault false;/' "${dir}/nix/incus/base.nix"
  json="$(guest_eval "${dir}" "${id}" container)" || { fail "documentation regression copy: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "documentation mkDefault false (the old base) loses to lxc-instance-common.nix's mkOverride 890" "true" \
    "$(jq -r .documentation <<<"${json}")"
  git -C "${dir}" checkout -q -- nix/incus/base.nix
  # Without the base's lines: the channel's nixpkgs copy is a closure root, root has lxc's empty
  # password, and with only hashedPassword NixOS warns of two password options.
  revert_base_line "${dir}" "system.installer.channel.enable = false;"
  json="$(guest_eval "${dir}" "${id}" container)" || { fail "channel regression copy: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "without channel.enable = false the nixpkgs channel copy is among the closure roots" "1" \
    "$(jq -r '.closureRoots | map(select(test("-nixos-channel-sources"))) | length' <<<"${json}")"
  revert_base_line "${dir}" 'hashedPassword = "!";'
  revert_base_line "${dir}" "initialHashedPassword = lib.mkOverride 140 null;"
  json="$(guest_eval "${dir}" "${id}" container)" || { fail "root regression copy: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "without the base's root lines root has lxc-instance-common.nix's empty password" '"" null' \
    "$(jq -r '(.root.initialHashedPassword | tojson) + " " + (.root.hashedPassword | tojson)' <<<"${json}")"
  git -C "${dir}" checkout -q -- nix/incus/base.nix
  revert_base_line "${dir}" "initialHashedPassword = lib.mkOverride 140 null;"
  json="$(guest_eval "${dir}" "${id}" container)" || { fail "root warning copy: $(cat "${WORK}/nix.stderr")"; return; }
  assert_eq "hashedPassword alone (lxc's initial one still set): NixOS's two-passwords warning" "1" \
    "$(jq -r '[.warnings[] | select(test("The user .root. has multiple of the options"))] | length' <<<"${json}")"
  git -C "${dir}" checkout -q -- nix/incus/base.nix
}

# revert_base_line DIR LINE: deletes LINE (a fixed string) from DIR's nix/incus/base.nix, or fails.
revert_base_line() {
  local file="$1/nix/incus/base.nix"
  grep -qF -- "$2" "${file}" || { fail "regression copy: base.nix has no line $2"; return 1; }
  grep -vF -- "$2" "${file}" >"${file}.new" && mv "${file}.new" "${file}"
}

# real_nixpkgs TEST ARGS...: runs a test that needs the subset, or records it as skipped.
real_nixpkgs() {
  if [[ -n "${SUBSET}" ]]; then
    timed "$@"
  else
    SKIPPED+=("$1")
  fi
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

  SUBSET="$(find_subset)"
  [[ -n "${SUBSET}" ]] && make_modules_tree

  timed test_parse_all
  timed test_formatting
  copy_repo "${WORK}/repo"
  timed test_flake_packages "${WORK}/repo"
  timed test_flake_check "${WORK}/repo"
  timed test_rust_packages "${WORK}/repo"
  timed test_stub_has_no_payload "${WORK}/repo"
  timed test_package_meta "${WORK}/repo"
  timed test_flake_lock_follows "${WORK}/repo"
  timed test_boot_checks "${WORK}/repo"
  timed build_and_import "${WORK}/repo"
  timed test_new_roles "${WORK}/extra"
  timed test_stale "${WORK}/stale"
  timed test_packaging
  real_nixpkgs test_server_module
  real_nixpkgs test_host_and_flake_module "${WORK}/repo"
  real_nixpkgs test_guest_modules
  real_nixpkgs test_guest_regressions "${WORK}/repo"

  if ((${#SKIPPED[@]} > 0)); then
    log "SKIPPED (no nixpkgs subset: set PIKA_NIXPKGS_SUBSET or put it at ../shared/nixpkgs-subset): ${SKIPPED[*]}"
    log "these evaluate the NixOS modules on the real nixpkgs lib; \`nix flake check\` with real nixpkgs covers them"
  else
    log "NixOS module tests ran on the real nixpkgs lib and Incus modules of ${SUBSET}"
  fi
  suite_report
}

main "$@"
