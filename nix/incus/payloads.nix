# Payloads of the roles' special-args (roles.toml `special-args`), by name: the one place that says
# where each comes from. nixpkgs ships neither, so both are flake inputs of this repository, each
# following our nixpkgs (flake.nix `inputs`); tests replace them with stub flakes through
# `--override-input` (tests/nix/stub-inputs/).
#
#   payloadFor = import ./payloads.nix { inherit inputs system; payloads ? { NAME = package; } };
#   payloadFor "pikachatPkg"
#
# `payloads` (from lib.mkIncusGuestRolePackages) takes precedence, for users who bring their own.
{
  inputs,
  system,
  payloads ? {},
}: let
  fromInput = input: package:
    inputs.${input}.packages.${system}.${package}
    or (throw "flake input `${input}` has no packages.${system}.${package}: it does not build for ${system}, or the input was overridden with one that lacks it");
  fromInputs = {
    openclawGatewayPkg = fromInput "nix-openclaw" "openclaw-gateway";
    pikachatPkg = fromInput "pika" "pikachat";
  };
  missing = name:
    throw ("Incus guest role payload `${name}` (roles.toml special-args) is not available: "
      + "map it to a flake input package in nix/incus/payloads.nix, "
      + "or pass it in `payloads` to lib.mkIncusGuestRolePackages { pkgs; payloads.${name} = ...; }");
in
  name: payloads.${name} or fromInputs.${name} or (missing name)
