# Stub of github:openclaw/nix-openclaw for the offline tests (no network here):
#   --override-input nix-openclaw path:tests/nix/stub-inputs/nix-openclaw
# Only what this repository uses: packages.<system>.openclaw-gateway, whose program (`openclaw`,
# like the real package's meta.mainProgram) prints a marker. Its nixpkgs follows ours, as the
# repository's flake.nix asks of the real input; that nixpkgs is never fetched.
{
  description = "Stub nix-openclaw (tests only)";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  outputs = {nixpkgs, ...}: {
    # The real flake builds for x86_64-linux (and aarch64-darwin) only.
    packages.x86_64-linux.openclaw-gateway = nixpkgs.legacyPackages.x86_64-linux.runCommand "stub-openclaw-gateway" {meta.mainProgram = "openclaw";} ''
      mkdir -p "$out/bin"
      printf '#!/bin/sh\necho stub openclaw "$@"\n' > "$out/bin/openclaw"
      chmod +x "$out/bin/openclaw"
    '';
  };
}
