#!/usr/bin/env bash
# The role registry end to end: generated files on main are fresh and parse, and in a temp copy,
# editing only roles.toml (rename an alias, add the roles of tests/fixtures/extra-role.toml) makes
# `cargo build` fail naming the stale outputs and the command; `pika-roles generate` then updates
# the enum's table, roles.nix and roles.sh; a hand edit to any of them is named by
# `pika-roles check` and undone by `generate`; a no-op build reruns no build script.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
PROG="20-codegen"

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
cat tests/fixtures/extra-role.toml >>"${copy}/roles.toml"
cp tests/fixtures/test-extra-arm.nix "${copy}/nix/incus/roles/"

export CARGO_TARGET_DIR="${copy}/target"
# The build's drift guard: roles.toml moved on, so every generated file is stale.
if log="$(cd "${copy}" && cargo build --quiet -p pika-incus-guest-role 2>&1)"; then
  err "cargo build passed with stale generated files"; exit 1
fi
for generated in nix/incus/roles.nix scripts/lib/roles.sh crates/pika-incus-guest-role/src/generated.rs; do
  grep -qF "${generated} is stale: run \`cargo run -p pika-roles-codegen -- generate\`" <<<"${log}" \
    || { err "the stale build does not name ${generated}: ${log}"; exit 1; }
done
(cd "${copy}" && cargo run --quiet -p pika-roles-codegen -- generate >/dev/null 2>&1)
(cd "${copy}" && cargo build --quiet -p pika-incus-guest-role)
grep -q "defaultAlias = \"${new_alias}\";" "${copy}/nix/incus/roles.nix" || { err "roles.nix lacks the renamed alias"; exit 1; }
grep -q '"test-extra-arm" = {' "${copy}/nix/incus/roles.nix" || { err "roles.nix lacks the new role"; exit 1; }
grep -q "\['${first}'\]='${new_alias}'" "${copy}/scripts/lib/roles.sh" || { err "roles.sh lacks the renamed alias"; exit 1; }
grep -q "\['test-extra-arm'\]='pika-test/arm'" "${copy}/scripts/lib/roles.sh" || { err "roles.sh lacks the new role"; exit 1; }
grep -q 'TestExtraArm,' "${copy}/crates/pika-incus-guest-role/src/generated.rs" \
  || { err "the generated enum lacks TestExtraArm"; exit 1; }
# The enum's own table-driven tests, run against the edited roles.toml, prove the enum followed it.
(cd "${copy}" && cargo test --quiet -p pika-incus-guest-role --test role -- --skip pin_deployed)
(cd "${copy}" && cargo run --quiet -p pika-roles-codegen -- check)

# A hand edit to a generated file is named by `check` and undone by `generate`.
for generated in scripts/lib/roles.sh nix/incus/roles.nix crates/pika-incus-guest-role/src/generated.rs; do
  cp "${copy}/${generated}" "${copy}/${generated}.fresh"
  printf '%s hand edit\n' '//' >>"${copy}/${generated}"
done
if log="$(cd "${copy}" && cargo run --quiet -p pika-roles-codegen -- check 2>&1)"; then
  err "check passed with hand-edited files"; exit 1
fi
(cd "${copy}" && cargo run --quiet -p pika-roles-codegen -- generate >/dev/null 2>&1)
for generated in scripts/lib/roles.sh nix/incus/roles.nix crates/pika-incus-guest-role/src/generated.rs; do
  grep -qF "stale: ${copy}/${generated}" <<<"${log}" || { err "check does not name ${generated}: ${log}"; exit 1; }
  cmp -s "${copy}/${generated}" "${copy}/${generated}.fresh" || { err "generate kept a hand edit to ${generated}"; exit 1; }
  rm "${copy}/${generated}.fresh"
done
# The rewrite changed files the build watches, so cargo reruns the script once more; after that,
# builds are no-ops.
(cd "${copy}" && cargo build --quiet -p pika-incus-guest-role)

# A no-op build must not rerun any build script.
log="$(cd "${copy}" && cargo build -p pika-incus-guest-role -vv 2>&1)"
if grep -q 'Running `.*build-script-build' <<<"${log}"; then
  err "a no-op cargo build reran a build script:"
  grep 'build-script-build' <<<"${log}" >&2
  exit 1
fi
echo "20-codegen: a stale build names every output; alias rename and new roles reached the enum's table, roles.nix and roles.sh; hand edits named by check and undone by generate; no-op build reran nothing"
