# Evaluates nix/modules/pika-server.nix with `lib.evalModules` and returns what the tests assert on.
#
# Stubbed (NixOS cannot be fetched here): `lib` is tests/nix/stub-nixpkgs/lib (a small module
# system with nixpkgs' semantics for options, types, mkIf and undeclared options), and the NixOS
# options the module sets (systemd.services, users.*, ...) are declared by `nixosOptionStubs`
# below, as loose types. The pika-server module itself is the real file.
#
#   nix-instantiate --eval --strict --json tests/nix/pika-server-module-eval.nix \
#     --arg settings '{ incus.guestRole = "..."; }'        # services.pika-server settings (enable = true added)
#     --arg host true                                      # or: evaluate nix/hosts/pika-server.nix instead
{
  settings ? {},
  host ? false,
  enable ? true,
}: let
  repoRoot = ../..;
  lib = import ./stub-nixpkgs/lib {};
  pkgs = import ./stub-nixpkgs/pkgs.nix {
    inherit lib;
    system = "x86_64-linux";
  };

  nixosOptionStubs = {lib, ...}: let
    loose = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      default = {};
    };
  in {
    options = {
      systemd.services = loose;
      users.users = loose;
      users.groups = loose;
      virtualisation.incus.enable = lib.mkEnableOption "incus";
      networking.firewall.allowedTCPPorts = lib.mkOption {
        type = lib.types.listOf lib.types.port;
        default = [];
      };
    };
  };

  serverPackage = pkgs.runCommand "pika-server-stub" {} ''mkdir -p "$out/bin"'';

  eval = lib.evalModules {
    modules =
      [
        nixosOptionStubs
        (repoRoot + "/nix/modules/pika-server.nix")
        {services.pika-server.package = serverPackage;}
      ]
      ++ (
        if host
        then [(repoRoot + "/nix/hosts/pika-server.nix")]
        else [{services.pika-server = settings // {inherit enable;};}]
      );
  };
  inherit (eval) config;
  service = config.systemd.services.pika-server or null;
in {
  services = builtins.attrNames config.systemd.services;
  environment =
    if service == null
    then null
    else service.environment;
  execStart =
    if service == null
    then null
    else service.serviceConfig.ExecStart;
  userGroups =
    if config.users.users ? pika-server
    then config.users.users.pika-server.extraGroups
    else null;
  guestRole = config.services.pika-server.incus.guestRole;
}
