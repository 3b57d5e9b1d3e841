# Payload packages for the roles' special-args (roles.toml `special-args`), by name.
#
# Precedence (first that exists): the `payloads` argument of lib.mkIncusGuestRolePackages,
# an attribute of the same name in pkgs (add it with an overlay), then the nixpkgs default below.
# A name with none of these throws when an image that needs it is built, saying what to set.
{
  pkgs,
  payloads ? {},
}: let
  # Payloads nixpkgs itself ships. pikachat is not in nixpkgs: it must be provided.
  nixpkgsDefaults = pkgs.lib.optionalAttrs (pkgs ? openclaw) {
    # OpenClaw (gateway + CLI) is pkgs/by-name/op/openclaw in recent nixpkgs.
    openclawGatewayPkg = pkgs.openclaw;
  };
  missing = name:
    throw ("Incus guest role payload `${name}` (roles.toml special-args) is not available: "
      + "pass it in `payloads` to lib.mkIncusGuestRolePackages { pkgs; payloads.${name} = ...; }, "
      + "or add pkgs.${name} with an overlay");
in
  name: payloads.${name} or pkgs.${name} or nixpkgsDefaults.${name} or (missing name)
