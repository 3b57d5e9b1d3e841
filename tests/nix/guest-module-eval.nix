# Evaluates the guest NixOS modules of one role (its `modules` from the registry, plus
# nix/incus/incus-guest-base.nix) with `lib.evalModules`, and returns what the tests assert on.
#
# Stubbed (NixOS cannot be fetched here): `lib` is tests/nix/stub-nixpkgs/lib, `pkgs` the stub
# pkgs (placeholder packages), and the NixOS options the guest modules set are declared below
# with loose types. This checks that the modules evaluate and wire their payloads; it cannot
# check them against the real NixOS option set (the flake build on a machine with nixpkgs does).
#
#   nix-instantiate --eval --strict --json tests/nix/guest-module-eval.nix --argstr role ROLE-ID
{role}: let
  repoRoot = ../..;
  lib = import ./stub-nixpkgs/lib {};
  pkgs = import ./stub-nixpkgs/pkgs.nix {
    inherit lib;
    system = "x86_64-linux";
  };
  registryFile = import (repoRoot + "/nix/incus/registry.nix");
  # The role's payloads are the stub packages of the same name (see stub-nixpkgs/pkgs.nix).
  entry =
    (registryFile {
      inherit repoRoot;
      specialArgs = builtins.mapAttrs (name: _: pkgs.${name}) (builtins.functionArgs (import (repoRoot + "/nix/incus/roles.nix")));
    })
    .registry
    .${role};

  nixosOptionStubs = {lib, ...}: let
    loose = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      default = {};
    };
    anything = lib.mkOption {type = lib.types.anything;};
    bool = lib.mkOption {
      type = lib.types.bool;
      default = false;
    };
    str = lib.mkOption {type = lib.types.str;};
  in {
    options = {
      networking = {
        useNetworkd = bool;
        useDHCP = bool;
        hostName = str;
      };
      systemd = {
        network.enable = bool;
        network.networks = loose;
        services = loose;
        paths = loose;
        tmpfiles.rules = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = [];
        };
      };
      nix.settings = loose;
      documentation.enable = bool;
      services.openssh.enable = bool;
      services.journald.storage = str;
      boot.tmp.cleanOnBoot = bool;
      system.stateVersion = str;
      environment.systemPackages = lib.mkOption {
        type = lib.types.listOf lib.types.package;
        default = [];
      };
      users.users = loose;
      users.groups = loose;
      virtualisation.incus.agent.enable = anything;
    };
  };

  eval = lib.evalModules {
    modules = [nixosOptionStubs (repoRoot + "/nix/incus/incus-guest-base.nix")] ++ entry.modules;
    specialArgs = entry.specialArgs // {inherit pkgs;};
  };
  inherit (eval) config;
in {
  packages = map (p: p.pname or p.name) config.environment.systemPackages;
  payloads = map (name: entry.specialArgs.${name}.name) entry.specialArgNames;
  dhcpUplinks = builtins.attrNames (lib.filterAttrs (_: n: (n.networkConfig.DHCP or null) == "yes") config.systemd.network.networks);
  services = builtins.mapAttrs (_: s: s.serviceConfig.ExecStart or null) config.systemd.services;
  users = builtins.attrNames config.users.users;
  inherit (config.system) stateVersion;
}
