# Stub of github:sledtools/pika for the offline tests (no network here):
#   --override-input pika path:tests/nix/stub-inputs/pika
# Only what this repository uses: packages.<system>.pikachat. Like the real one it takes nixpkgs
# and nix-openclaw as inputs; both follow ours, as the repository's flake.nix asks of the real
# input, so neither URL is ever fetched.
{
  description = "Stub pika (tests only)";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  inputs.nix-openclaw.url = "github:openclaw/nix-openclaw";
  outputs = {nixpkgs, ...}: {
    packages = nixpkgs.lib.genAttrs ["x86_64-linux" "aarch64-linux"] (system: {
      pikachat = nixpkgs.legacyPackages.${system}.runCommand "stub-pikachat" {meta.mainProgram = "pikachat";} ''
        mkdir -p "$out/bin"
        printf '#!/bin/sh\necho stub pikachat "$@"\n' > "$out/bin/pikachat"
        chmod +x "$out/bin/pikachat"
      '';
    });
  };
}
