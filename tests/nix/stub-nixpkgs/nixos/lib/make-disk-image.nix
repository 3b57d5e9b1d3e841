# Stub of nixpkgs' nixos/lib/make-disk-image.nix (see ../../flake.nix for why a stub): takes the
# same arguments the repository passes and makes an empty qcow2 of `diskSize` MiB with the host's
# qemu-img, at the path the real builder uses ($out/nixos.qcow2).
{
  pkgs,
  lib,
  config,
  diskSize,
  format,
  partitionTableType,
  name ? "nixos-disk-image",
  baseName ? "nixos",
  copyChannel ? true,
  ...
}:
assert format == "qcow2";
assert partitionTableType == "efi";
assert builtins.isInt diskSize;
  pkgs.runCommand name {toplevel = config.system.build.toplevel;} ''
    set -eu
    mkdir -p "$out"
    qemu-img create -q -f qcow2 "$out/${baseName}.qcow2" ${toString diskSize}M
  ''
