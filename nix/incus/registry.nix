# The Incus guest role registry, checked against its source.
#
# Loads the generated nix/incus/roles.nix and compares it field by field with roles.toml (the drift
# guard): when they differ, every use of `registry` throws
#   nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`
# followed by the differences. Pure builtins: no nixpkgs needed, so the flake, the NixOS server
# module and the tests share this one loader.
{
  # The repository root (a path): roles.toml and nix/incus/roles.nix are read from it.
  repoRoot,
  # The role payload packages, keyed by special-arg name (roles.toml `special-args`). A name that
  # is missing here throws only when a guest build actually needs it; metadata stays readable.
  specialArgs ? {},
}: let
  manifestFile = repoRoot + "/roles.toml";
  rolesFile = repoRoot + "/nix/incus/roles.nix";
  staleMessage = "nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`";

  manifest = builtins.fromTOML (builtins.readFile manifestFile);
  tomlRoles = manifest.roles or {};

  mkRegistry = import rolesFile;
  formals = builtins.functionArgs mkRegistry;
  missingArg = name:
    throw ("Incus guest role special argument `${name}` (roles.toml special-args) was not provided: "
      + "pass it in `specialArgs` (the flake takes it from `pkgs.${name}`; add it with an overlay)");
  rawRegistry = mkRegistry (builtins.mapAttrs (name: _: specialArgs.${name} or (missingArg name)) formals);

  sort = builtins.sort builtins.lessThan;
  unique = list:
    builtins.attrNames (builtins.listToAttrs (map (name: {
        inherit name;
        value = null;
      })
      list));
  show = value: builtins.toJSON value;

  # roles.toml key -> roles.nix attribute, compared as plain values.
  fieldMap = {
    description = "description";
    default-alias = "defaultAlias";
    package = "packageAttr";
    legacy-packages = "legacyPackageAttrs";
    image-name = "imageName";
    variant = "variant";
    system = "system";
    instance-type = "instanceType";
    disk-size-mib = "diskSize";
    modules = "modulePaths";
    special-args = "specialArgNames";
    runtime-mode = "runtimeMode";
    readiness = "readiness";
    cpu = "cpu";
    memory-mib = "memoryMib";
    secure-boot = "secureBoot";
    cluster-group = "clusterGroup";
    service-port = "servicePort";
    user = "user";
    mounts = "mounts";
    instance-config = "instanceConfig";
  };
  # Optional roles.toml keys: the value roles.nix carries when the key is absent.
  fieldDefaults = {
    legacy-packages = [];
    special-args = [];
    cluster-group = null;
    service-port = null;
    user = null;
    mounts = [];
    instance-config = {};
  };
  # roles.toml shapes that roles.nix spells differently.
  fieldShapes = {
    mounts = map (m: {
      inherit (m) name path;
      readOnly = m.read-only;
      optional = m.optional or false;
    });
    # A value is a string or { value, reason }; roles.nix keeps the value.
    instance-config = builtins.mapAttrs (_: v:
      if builtins.isAttrs v
      then v.value
      else v);
  };
  rolesDigest = import ./roles-digest.nix;

  roleProblems = id: let
    toml = tomlRoles.${id};
    nix = rawRegistry.${id};
    fieldProblems =
      builtins.concatMap (
        key: let
          attr = fieldMap.${key};
          want = (fieldShapes.${key} or (v: v)) (toml.${key} or (fieldDefaults.${key} or null));
          have = nix.${attr} or null;
        in
          if want == have
          then []
          else ["role ${id}: roles.toml ${key} = ${show want}, roles.nix ${attr} = ${show have}"]
      )
      (builtins.attrNames fieldMap);
    # The module paths (Nix paths relative to nix/incus) must point at the files roles.toml names.
    modulePathsWanted = map (path: toString (repoRoot + "/${path}")) (toml.modules or []);
    modulePathsHave = map toString (nix.modules or []);
    moduleProblems =
      if modulePathsWanted == modulePathsHave
      then []
      else ["role ${id}: roles.nix modules do not point at roles.toml modules ${show (toml.modules or [])}"];
    idProblems =
      if (nix.id or null) == id
      then []
      else ["role ${id}: roles.nix id = ${show (nix.id or null)}"];
    specialArgProblems =
      if sort (builtins.attrNames (nix.specialArgs or {})) == sort (toml.special-args or [])
      then []
      else ["role ${id}: roles.nix specialArgs does not carry roles.toml special-args ${show (toml.special-args or [])}"];
    # The digest of the role's own table, recomputed here: the image's provenance relies on it.
    digestWanted = rolesDigest toml;
    digestProblems =
      if (nix.rolesDigest or null) == digestWanted
      then []
      else ["role ${id}: roles.nix rolesDigest = ${show (nix.rolesDigest or null)}, roles.toml's table digests to ${show digestWanted}"];
  in
    idProblems ++ fieldProblems ++ moduleProblems ++ specialArgProblems ++ digestProblems;

  tomlIds = sort (builtins.attrNames tomlRoles);
  nixIds = sort (builtins.attrNames rawRegistry);
  idSetProblems =
    if tomlIds == nixIds
    then []
    else ["role IDs: roles.toml has ${show tomlIds}, roles.nix has ${show nixIds}"];
  wantedFormals = unique (builtins.concatMap (id: tomlRoles.${id}.special-args or []) tomlIds);
  formalProblems =
    if sort (builtins.attrNames formals) == wantedFormals
    then []
    else ["roles.nix arguments ${show (sort (builtins.attrNames formals))} differ from the special-args of roles.toml ${show wantedFormals}"];

  problems =
    if idSetProblems != []
    then idSetProblems
    else formalProblems ++ builtins.concatMap roleProblems tomlIds;
  fresh = problems == [];
  check =
    if fresh
    then true
    else throw "${staleMessage}\n  ${builtins.concatStringsSep "\n  " problems}";
in {
  inherit fresh problems staleMessage manifest rolesDigest;
  # The checked registry: role ID -> role entry (see roles.nix). Throws when roles.nix is stale.
  registry = builtins.seq check rawRegistry;
  # Role IDs in roles.toml order-independent (sorted) form; also checked.
  roleIds = builtins.seq check nixIds;
}
