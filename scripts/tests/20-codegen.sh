#!/usr/bin/env bash
# The role registry end to end: generated files on main are fresh and parse, and in a temp copy,
# editing only roles.toml (rename an alias, add a role) then `cargo build` updates the enum,
# roles.nix and roles.sh; a hand edit to roles.sh or roles.nix is undone by the next `cargo build`;
# a no-op build reruns no build script.
set -euo pipefail

err() {
  echo "20-codegen: error: $*" >&2
}

# `cargo roles` is the .cargo/config.toml alias for pika-roles.
cargo roles check
nix-instantiate --parse nix/incus/roles.nix >/dev/null
bash -n scripts/lib/roles.sh

copy="${PIKA_TEST_WORK:-$(mktemp -d)}/codegen-copy"
rm -rf "${copy}"
mkdir -p "${copy}"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "${copy}"
# shellcheck source=scripts/lib/roles.sh
source scripts/lib/roles.sh
first="${PIKA_ROLE_IDS[0]}"
old_alias="${PIKA_ROLE_DEFAULT_ALIAS[${first}]}"
new_alias="${old_alias}-renamed"
sed -i "s|^default-alias = \"${old_alias}\"|default-alias = \"${new_alias}\"|" "${copy}/roles.toml"
printf '{...}: {}\n' >"${copy}/nix/incus/zeta.nix"
cat >>"${copy}/roles.toml" <<'TOML'

[roles.zeta-runner]
description = "Zeta test role"
default-alias = "zeta/dev"
package = "zeta-runner-incus-image"
legacy-packages = []
image-name = "zeta-incus-dev"
variant = "zeta-incus-dev"
system = "x86_64-linux"
instance-type = "container"
disk-size-mib = 1024
modules = ["nix/incus/zeta.nix"]
special-args = []
runtime-mode = "one-shot"
readiness = "booted"
cpu = 1
memory-mib = 512
secure-boot = false
TOML

export CARGO_TARGET_DIR="${copy}/target"
(cd "${copy}" && cargo build --quiet -p pika-incus-guest-role)
grep -q "defaultAlias = \"${new_alias}\";" "${copy}/nix/incus/roles.nix" || { err "roles.nix lacks the renamed alias"; exit 1; }
grep -q '"zeta-runner" = {' "${copy}/nix/incus/roles.nix" || { err "roles.nix lacks the new role"; exit 1; }
grep -q "\['${first}'\]='${new_alias}'" "${copy}/scripts/lib/roles.sh" || { err "roles.sh lacks the renamed alias"; exit 1; }
grep -q "\['zeta-runner'\]='zeta/dev'" "${copy}/scripts/lib/roles.sh" || { err "roles.sh lacks the new role"; exit 1; }
grep -q 'ZetaRunner,' "${CARGO_TARGET_DIR}"/debug/build/pika-incus-guest-role-*/out/incus_guest_role.rs \
  || { err "the generated enum lacks ZetaRunner"; exit 1; }
# The enum's own table-driven tests, run against the edited roles.toml, prove the enum followed it.
(cd "${copy}" && cargo test --quiet -p pika-incus-guest-role --test role -- --skip pin_deployed)
(cd "${copy}" && cargo run --quiet -p pika-roles-codegen -- check)

# A hand edit to a generated file is undone by the next cargo build (build.rs watches its outputs).
for generated in scripts/lib/roles.sh nix/incus/roles.nix; do
  cp "${copy}/${generated}" "${copy}/${generated}.fresh"
  printf '# hand edit\n' >>"${copy}/${generated}"
done
(cd "${copy}" && cargo build --quiet -p pika-incus-guest-role)
for generated in scripts/lib/roles.sh nix/incus/roles.nix; do
  cmp -s "${copy}/${generated}" "${copy}/${generated}.fresh" || { err "cargo build kept a hand edit to ${generated}"; exit 1; }
  rm "${copy}/${generated}.fresh"
done
# The build that rewrote them changed files it watches, so cargo reruns the script once more
# (it rewrites nothing); after that, builds are no-ops.
(cd "${copy}" && cargo build --quiet -p pika-incus-guest-role)

# A no-op build must not rerun any build script.
log="$(cd "${copy}" && cargo build -p pika-incus-guest-role -vv 2>&1)"
if grep -q 'Running `.*build-script-build' <<<"${log}"; then
  err "a no-op cargo build reran a build script:"
  grep 'build-script-build' <<<"${log}" >&2
  exit 1
fi
echo "20-codegen: alias rename and new role reached enum, roles.nix and roles.sh; hand edits undone by cargo build; no-op build reran nothing"
