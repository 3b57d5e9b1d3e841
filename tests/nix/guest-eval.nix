# Evaluates one role's guest on the REAL nixpkgs module system and NixOS's own Incus guest modules
# (../shared/nixpkgs-subset, see its README), composed exactly as the image builder composes it
# (nix/incus/guest-modules.nix), and returns what the tests assert on. Every value returned is
# forced, so a conflicting definition or a type error anywhere in it fails the evaluation.
#
# Stubbed, because full NixOS cannot be fetched here: the options outside the subset
# (tests/nix/nixos-stubs/options.nix, real types and defaults) and the three modules the Incus
# modules import that the subset lacks (tests/nix/nixos-stubs/modules/). `pkgs` is the stub pkgs
# (placeholder packages; nothing is built). scripts/tests/40-nix.sh lays the stub modules over the
# subset's nixos/modules and passes that directory as `modulesPath`.
#
#   nix-instantiate --eval --strict --json tests/nix/guest-eval.nix --arg nixpkgsLib SUBSET/lib \
#     --arg modulesPath OVERLAY/nixos/modules --argstr role ID --argstr instanceType container
{
  # The real nixpkgs library (a path to nixpkgs' lib/).
  nixpkgsLib,
  # nixpkgs' nixos/modules (the subset with the stub modules laid over it).
  modulesPath,
  role,
  # Evaluate the role as this instance type (default: the role's own).
  instanceType ? null,
  # The repository to evaluate (a copy, for the tests that break something on purpose).
  repoRoot ? ../..,
}: let
  lib = import nixpkgsLib;
  system = "x86_64-linux";
  pkgs = import (repoRoot + "/tests/nix/stub-nixpkgs/pkgs.nix") {inherit lib system;};

  # Stand-ins for the role's payloads (flake inputs in the real build).
  payload = name:
    pkgs.runCommand "payload-${name}" {meta.mainProgram = name;} ''mkdir -p "$out/bin"'';
  inherit
    (import (repoRoot + "/nix/incus/registry.nix") {
      inherit repoRoot;
      specialArgs = lib.genAttrs (builtins.attrNames (builtins.functionArgs (import (repoRoot + "/nix/incus/roles.nix")))) payload;
    })
    registry
    ;
  entry =
    registry.${role}
    // lib.optionalAttrs (instanceType != null) {inherit instanceType;};

  eval = lib.evalModules {
    modules =
      [
        (repoRoot + "/tests/nix/nixos-stubs/options.nix")
        {_module.args = {inherit pkgs;};}
      ]
      ++ import (repoRoot + "/nix/incus/guest-modules.nix") entry;
    specialArgs = entry.specialArgs // {inherit modulesPath;};
  };
  inherit (eval) config;
  names = map (p: p.pname or p.name);
in {
  inherit (entry) instanceType;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  inherit (config) warnings;
  openssh = {
    inherit (config.services.openssh) enable startWhenNeeded;
    passwordAuthentication = config.services.openssh.settings.PasswordAuthentication;
  };
  documentation = config.documentation.enable;
  documentationNixos = config.documentation.nixos.enable;
  incusAgent = config.virtualisation.incus.agent.enable;
  packages = names config.environment.systemPackages;
  payloads = map (name: entry.specialArgs.${name}.name) entry.specialArgNames;
  services = builtins.mapAttrs (_: s: s.serviceConfig) config.systemd.services;
  # The rest of each unit: environment, PATH packages (by name), [Unit] section, wantedBy.
  units =
    builtins.mapAttrs (_: s: {
      inherit (s) environment unitConfig wantedBy;
      path = names s.path;
    })
    config.systemd.services;
  paths = builtins.attrNames config.systemd.paths;
  pathUnits = builtins.mapAttrs (_: p: {inherit (p) pathConfig wantedBy;}) config.systemd.paths;
  tmpfiles = config.systemd.tmpfiles.rules;
  dhcpUplinks = builtins.attrNames (lib.filterAttrs (_: n: (n.networkConfig.DHCP or null) == "yes") config.systemd.network.networks);
  users = builtins.mapAttrs (_: u: {inherit (u) isSystemUser isNormalUser group home extraGroups;}) config.users.users;
  groups = builtins.attrNames config.users.groups;
  nixSettings = config.nix.settings;
  inherit (config.networking) hostName useDHCP useNetworkd;
  inherit (config.system) stateVersion;
  inherit (config.boot) isContainer kernelParams;
  tags = config.system.nixos.tags;
  inherit (config.image) extension filePath;
  fileSystems = builtins.attrNames config.fileSystems;
  udev = config.services.udev.extraRules;
  defaultPackages = names config.environment.defaultPackages;
  upstreamUnits = config.systemd.additionalUpstreamSystemUnits;
  systemdPackages = names config.systemd.packages;
  journald = config.services.journald.storage;
  channel = config.system.installer.channel.enable;
  root = {inherit (config.users.users.root) hashedPassword initialHashedPassword;};
  groupIds = builtins.mapAttrs (_: g: g.gid) config.users.groups;
  userIds = builtins.mapAttrs (_: u: u.uid) config.users.users;
  # What the system's closure is rooted in, as far as the stubs carry it: the derivations the boot
  # commands and the installed packages refer to (names only, for the tests).
  closureRoots =
    map (drv: builtins.unsafeDiscardStringContext (builtins.baseNameOf drv)) (builtins.attrNames (builtins.getContext
        (config.boot.postBootCommands + builtins.concatStringsSep " " (map toString config.environment.systemPackages))));
}
