# Stub of nixpkgs nixos/modules/installer/cd-dvd/channel.nix (not in ../shared/nixpkgs-subset),
# for the evaluation tests only: the one option incus-virtual-machine.nix reads, with its real
# type and default. The real module also copies a nixpkgs channel into the image (not evaluated).
{lib, ...}: {
  options.system.installer.channel.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
  };
}
