# The Incus guest role registry, checked against its source.
#
# Loads the generated nix/incus/roles.nix, which carries the sha256 of the roles.toml it was
# generated from, and compares it with `builtins.hashFile` of roles.toml (the drift guard): when
# they differ, every use of `registry` throws
#   nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`
# Pure builtins: no nixpkgs needed, so the flake, the NixOS server module and the tests share this
# one loader. (`pika-roles check` compares whole contents, so hand edits are caught there.)
{
  # The repository root (a path): roles.toml and nix/incus/roles.nix are read from it.
  repoRoot,
  # The role payload packages, keyed by special-arg name (roles.toml `special-args`). A name that
  # is missing here throws only when a guest build actually needs it; metadata stays readable.
  specialArgs ? {},
}: let
  staleMessage = "nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`";
  mkRegistry = import (repoRoot + "/nix/incus/roles.nix");
  missingArg = name:
    throw ("Incus guest role special argument `${name}` (roles.toml special-args) was not provided: "
      + "pass it in `specialArgs` (the flake takes it from `pkgs.${name}`; add it with an overlay)");
  generated = mkRegistry (builtins.mapAttrs (name: _: specialArgs.${name} or (missingArg name)) (builtins.functionArgs mkRegistry));
  manifestSha256 = builtins.hashFile "sha256" (repoRoot + "/roles.toml");
  fresh = generated.manifestSha256 == manifestSha256;
  check =
    fresh
    || throw "${staleMessage}\n  roles.toml has sha256 ${manifestSha256}; roles.nix was generated from ${generated.manifestSha256}";
in {
  inherit fresh staleMessage;
  # The checked registry: role ID -> role entry (see roles.nix). Throws when roles.nix is stale.
  registry = builtins.seq check generated.roles;
  # Role IDs, sorted; also checked.
  roleIds = builtins.seq check (builtins.attrNames generated.roles);
}
