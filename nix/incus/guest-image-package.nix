# Builds the Incus image of one guest role: evaluates the NixOS guest with `nixpkgsLib.nixosSystem`
# on the modules ./guest-modules.nix composes, builds its disk (virtual-machine) or rootfs
# (container), and packages it with ./package-incus-image.nix into metadata.tar.xz +
# disk.qcow2 | rootfs.squashfs + README.txt.
#
# What comes from nixpkgs and what is ours:
# - container rootfs: nixpkgs' `system.build.squashfs` (lxc-container.nix), as is.
# - VM disk: nixpkgs' make-disk-image (EFI, qcow2), called here rather than through
#   incus-virtual-machine.nix's `system.build.qemuImage`, because that one sizes the disk itself
#   (`diskSize = "auto"`) and compresses it, while a role fixes its size (roles.toml disk-size-mib).
# - metadata.yaml: ours. nixpkgs' `system.build.metadata` (lxc-image-metadata.nix) writes a fixed
#   description/os/release and has no option for further properties; a role image must carry its
#   description, variant, provenance (pika.*) and, when it is not Secure Boot capable,
#   `requirements.secureboot: "false"`.
{
  nixpkgsLib,
  pkgs,
}: {
  # The role's registry entry (nix/incus/roles.nix), its specialArgs resolved to packages.
  role,
  # Source revision for the provenance (the flake's self.rev, else its dirty rev, else "unknown").
  sourceRev ? "unknown",
  # Text for README.txt.
  buildInstructions ? "",
  importInstructions ? "",
}: let
  packageIncusImage = import ./package-incus-image.nix {inherit pkgs;};
  isVm = role.instanceType == "virtual-machine";

  nixos = nixpkgsLib.nixosSystem {
    inherit (role) system specialArgs;
    modules = import ./guest-modules.nix role;
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
        name = "${role.imageName}-disk";
        format = "qcow2";
        partitionTableType = "efi";
        inherit (role) diskSize;
        copyChannel = false;
      }
    else config.system.build.squashfs;

  # Provenance (read back by `pika-guest image status`); the names are a contract, keep them.
  provenance = {
    "pika.role" = role.id;
    "pika.source-rev" = sourceRev;
    "pika.roles-digest" = role.rolesDigest;
  };
  # Incus refuses to start a VM from such an image while security.secureboot is true or unset;
  # launchers set security.secureboot=false for these roles (IncusGuestRole::launch_config).
  requirements = nixpkgsLib.optionalAttrs (isVm && !role.secureBoot) {
    "requirements.secureboot" = "false";
  };
in
  packageIncusImage {
    name = role.imageName;
    inherit (role) system description variant instanceType;
    inherit image buildInstructions importInstructions;
    release = config.system.nixos.release;
    properties = provenance // requirements;
    # `pika.built-from`: the output path of the image itself.
    outPathProperty = "pika.built-from";
    # The image packaging is ours (the repository's license); the guest's packages keep theirs.
    meta.license = nixpkgsLib.licenses.mit;
    passthru = {
      inherit nixos image;
      inherit (role) diskSize;
      packageName = role.packageAttr;
      inherit (config.system.build) toplevel;
    };
  }
