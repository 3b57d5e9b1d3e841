# Evaluates nix/modules/pika-server.nix on the REAL nixpkgs module system (../shared/nixpkgs-subset
# lib) and returns what the tests assert on. The NixOS options it sets come from
# tests/nix/nixos-stubs/options.nix (real types and defaults); `virtualisation.incus` is the stub of
# NixOS's incus.nix with its real nftables assertion (tests/nix/nixos-stubs/incus-host.nix).
# Failed assertions are returned, not thrown, so tests can assert on their messages.
#
#   nix-instantiate --eval --strict --json tests/nix/pika-server-module-eval.nix \
#     --arg nixpkgsLib SUBSET/lib \
#     --arg settings '{ incus.guestRole = "..."; }'        # services.pika-server settings (enable = true added)
#     --arg host true                                      # or: evaluate nix/hosts/pika-server.nix instead
{
  nixpkgsLib,
  settings ? {},
  host ? false,
  enable ? true,
  # Modules that bring the pika-server module themselves (e.g. the flake's nixosModules, twice).
  extraModules ? [],
}: let
  repoRoot = ../..;
  lib = import nixpkgsLib;
  pkgs = import ./stub-nixpkgs/pkgs.nix {
    inherit lib;
    system = "x86_64-linux";
  };

  serverPackage = pkgs.runCommand "pika-server-stub" {meta.mainProgram = "pika-server";} ''mkdir -p "$out/bin"'';

  eval = lib.evalModules {
    modules =
      [
        ./nixos-stubs/options.nix
        ./nixos-stubs/incus-host.nix
        {_module.args = {inherit pkgs;};}
      ]
      # The module file itself with a stub package, or the given modules (which bring it).
      ++ (
        if extraModules == []
        then [(repoRoot + "/nix/modules/pika-server.nix") {services.pika-server.package = serverPackage;}]
        else extraModules
      )
      ++ (
        if host
        then [(repoRoot + "/nix/hosts/pika-server.nix")]
        else [{services.pika-server = settings // {inherit enable;};}]
      );
  };
  inherit (eval) config;
  service = config.systemd.services.pika-server or null;
in {
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  services = builtins.attrNames config.systemd.services;
  environment =
    if service == null
    then null
    else service.environment;
  serviceConfig =
    if service == null
    then null
    else service.serviceConfig;
  userGroups =
    if config.users.users ? pika-server
    then config.users.users.pika-server.extraGroups
    else null;
  firewallPorts = config.networking.firewall.allowedTCPPorts;
  guestRole = config.services.pika-server.incus.guestRole;
}
