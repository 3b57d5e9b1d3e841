# Stub of nixpkgs nixos/modules/installer/cd-dvd/channel.nix (not in ../shared/nixpkgs-subset),
# for the evaluation tests only. The option has its real type and default; when it is on, the stub
# does what the real module does to the closure: boot.postBootCommands installs a copy of the
# nixpkgs source (`lib.cleanSource pkgs.path`) as root's channel. (The real module also pins
# nix.registry.nixpkgs to that copy; the stubs declare no nix.registry.) The real derivation is
# named nixos-<version>; the stubs have no system.nixos.version, hence the fixed name.
{
  config,
  lib,
  pkgs,
  ...
}: let
  nixpkgs = lib.cleanSource pkgs.path;
  channelSources = pkgs.runCommand "nixos-channel-sources" {} ''
    mkdir -p $out
    cp -prd ${nixpkgs} $out/nixos
  '';
in {
  options.system.installer.channel.enable =
    (lib.mkEnableOption "bundling NixOS/Nixpkgs channel in the installer")
    // {
      default = true;
    };
  config = lib.mkIf config.system.installer.channel.enable {
    boot.postBootCommands = lib.mkAfter ''
      if ! [ -e /var/lib/nixos/did-channel-init ]; then
        ${config.nix.package.out}/bin/nix-env -p /nix/var/nix/profiles/per-user/root/channels -i ${channelSources}
      fi
    '';
  };
}
