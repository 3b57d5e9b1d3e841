# Stub of nixpkgs nixos/modules/profiles/clone-config.nix (not in ../shared/nixpkgs-subset), for
# the evaluation tests only: its options with their real types and defaults. Its config (copying
# the configuration into /etc/nixos on first boot) is not evaluated.
{lib, ...}: {
  options.installer = {
    cloneConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
    };
    cloneConfigIncludes = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [];
    };
    cloneConfigExtra = lib.mkOption {
      type = lib.types.lines;
      default = "";
    };
  };
}
