# Builds the Incus image of one guest: evaluates the NixOS guest with `nixpkgsLib.nixosSystem`,
# builds its disk (virtual-machine: nixpkgs' make-disk-image, EFI, qcow2, `diskSize` MiB) or
# rootfs (container: the squashfs of nixpkgs' lxc-container.nix), and packages it with
# ./package-incus-image.nix into metadata.tar.xz + disk.qcow2 | rootfs.squashfs + README.txt.
#
# The metadata is ours, not nixpkgs' `system.build.metadata`: Incus shows the role's own
# description and variant (metadata.yaml properties), which nixpkgs' metadata cannot carry.
{
  nixpkgsLib,
  pkgs,
}: {
  system,
  # Store name of the image (roles.toml image-name).
  name,
  # The flake package attribute that builds it (for README.txt and passthru).
  packageName,
  description,
  variant,
  # Disk size in MiB (virtual-machine only).
  diskSize,
  # Guest NixOS modules of the role.
  modules,
  specialArgs ? {},
  buildInstructions,
  importInstructions,
  instanceType ? "virtual-machine",
}: let
  packageIncusImage = import ./package-incus-image.nix {inherit pkgs;};
  isVm = instanceType == "virtual-machine";
  instanceTypes = ["virtual-machine" "container"];

  # What every guest gets: nixpkgs' own Incus guest module for the instance type plus our base.
  incusGuestModule = {modulesPath, ...}: {
    imports = [
      (
        if isVm
        then "${modulesPath}/virtualisation/incus-virtual-machine.nix"
        else "${modulesPath}/virtualisation/lxc-container.nix"
      )
      ./incus-guest-base.nix
    ];
  };

  nixos = nixpkgsLib.nixosSystem {
    inherit system specialArgs;
    modules = [incusGuestModule] ++ modules;
  };
  inherit (nixos) config;
  guestPkgs = nixos.pkgs or pkgs;

  image =
    if isVm
    then
      import (guestPkgs.path + "/nixos/lib/make-disk-image.nix") {
        inherit config;
        pkgs = guestPkgs;
        lib = nixpkgsLib;
        name = "${name}-disk";
        format = "qcow2";
        partitionTableType = "efi";
        inherit diskSize;
        copyChannel = false;
      }
    else
      config.system.build.squashfs
      or (throw "${packageName}: this nixpkgs has no system.build.squashfs (lxc-container.nix); use NixOS 24.05 or later");
in
  if !(builtins.elem instanceType instanceTypes)
  then throw "${packageName}: instanceType `${instanceType}` is not one of ${builtins.concatStringsSep ", " instanceTypes}"
  else
    packageIncusImage {
      inherit name system description variant instanceType image buildInstructions importInstructions;
      release = config.system.nixos.release;
      passthru = {
        inherit nixos packageName diskSize;
        inherit (config.system.build) toplevel;
      };
    }
