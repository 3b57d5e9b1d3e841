# What crane's sandbox gives `checks.cargo-test`: the source exactly as nix/rust.nix cuts it (its
# keep rule around crane's filterCargoSources, evaluated here on the real nixpkgs lib) and the
# names of the check's nativeBuildInputs (the only tools beyond stdenv the sandbox has).
#
# crane's filter is the stub crane's `filterCargoSources` (tests/nix/stub-inputs/crane): the same
# rule as crane's lib/filterCargoSources.nix, written in our words. Used by scripts/tests/15-rust-sandbox.sh:
#
#   nix-instantiate --eval --strict --json --read-write-mode tests/nix/rust-sandbox.nix \
#     --arg nixpkgsLib SUBSET/lib --arg repoRoot /path/to/a/tracked-files-copy
{
  # The real nixpkgs library (a path to nixpkgs' lib/).
  nixpkgsLib,
  # The repository as a commit holds it (a path; the flake's `self`).
  repoRoot,
}: let
  lib = import nixpkgsLib;
  pkgs = import (repoRoot + "/tests/nix/stub-nixpkgs/pkgs.nix") {
    inherit lib;
    system = "x86_64-linux";
  };
  crane = (import (repoRoot + "/tests/nix/stub-inputs/crane/flake.nix")).outputs {self = crane;};
  rust = import (repoRoot + "/nix/rust.nix") {
    craneLib = crane.mkLib pkgs;
    inherit pkgs repoRoot;
  };
  test = rust.checks.cargo-test.craneArgs;
in {
  # A store path: builtins.path copies the filtered tree (hence --read-write-mode).
  src = "${rust.src}";
  nativeBuildInputs = map (p: p.pname or p.name) (test.nativeBuildInputs or []);
}
