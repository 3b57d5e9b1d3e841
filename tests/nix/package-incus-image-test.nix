# Builds the packaging step (nix/incus/package-incus-image.nix) for real with nix-build, from
# inputs made here: a fake qcow2 (host qemu-img) per role of the registry, and a container image
# from a given squashfs (the busybox rootfs scripts/test.sh builds). Used by scripts/tests/40-nix.sh.
#
# Stubbed: `pkgs` is tests/nix/stub-nixpkgs/pkgs.nix, whose runCommand builds with /bin/sh and
# the host's tar/xz/qemu-img (nixpkgs' stdenv cannot be fetched here). The packaging function is
# the real file, and its output is imported into the real incusd by the test.
{
  # A squashfs root filesystem file for the container case.
  rootfs,
  # Description for the container case (the test passes awkward characters through it).
  containerDescription ? "pika packaging test container",
  # Set to true to package a disk output that holds no *.qcow2 (must fail to build).
  missingDisk ? false,
  # Extra metadata.yaml properties of every image (e.g. one that clashes with a standard one).
  properties ? {},
}: let
  repoRoot = ../..;
  lib = import ./stub-nixpkgs/lib {};
  pkgs = import ./stub-nixpkgs/pkgs.nix {
    inherit lib;
    system = builtins.currentSystem;
  };
  packageIncusImage = import (repoRoot + "/nix/incus/package-incus-image.nix") {inherit pkgs;};
  inherit (import (repoRoot + "/nix/incus/registry.nix") {inherit repoRoot;}) registry;

  # What nixpkgs' make-disk-image leaves: a directory with one qcow2 (here: empty, diskSize MiB).
  fakeDisk = role:
    pkgs.runCommand "${role.imageName}-fake-disk" {} ''
      set -eu
      mkdir -p "$out"
      ${
        if missingDisk
        then ''echo "no disk here" > "$out/README"''
        else ''qemu-img create -q -f qcow2 "$out/nixos.qcow2" ${toString role.diskSize}M''
      }
    '';

  vmImages = builtins.mapAttrs (id: role:
    packageIncusImage {
      name = role.imageName;
      inherit (role) system description variant;
      release = "test";
      instanceType = "virtual-machine";
      image = fakeDisk role;
      properties = {"pika.role" = id;} // properties;
      outPathProperty = "pika.built-from";
      buildInstructions = "packaging test";
      importInstructions = "incus image import metadata.tar.xz disk.qcow2";
    })
  registry;
in
  vmImages
  // {
    container = packageIncusImage {
      name = "pika-packaging-test-container";
      system = builtins.currentSystem;
      description = containerDescription;
      variant = "packaging-test";
      release = "test";
      instanceType = "container";
      image = rootfs;
      properties = {"requirements.secureboot" = "false";} // properties;
    };
  }
