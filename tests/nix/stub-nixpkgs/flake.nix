# A stub of the nixpkgs flake, for tests only: nixpkgs cannot be fetched on the test machines
# (no network), so the repository flake is evaluated with
#   --override-input nixpkgs path:tests/nix/stub-nixpkgs
# It provides only what the flake and its tests touch: `lib` (a few functions, `nixosSystem`,
# `evalModules`) and `legacyPackages.<system>` whose `runCommand` builds with host tools
# (/bin/sh, tar, xz, qemu-img, mksquashfs from the machine). Nothing here is NixOS: a guest
# "system" is a placeholder derivation recording its modules and special args.
{
  description = "Stub nixpkgs for the Pika tests (no network)";
  outputs = {self}: let
    lib = import ./lib {};
  in {
    inherit lib;
    legacyPackages = lib.genAttrs ["x86_64-linux" "aarch64-linux"] (system: import ./pkgs.nix {inherit lib system;});
  };
}
