# Stub of nixpkgs nixos/modules/image/repart.nix (not in ../shared/nixpkgs-subset), for the
# evaluation tests only: declares the `image.repart` options incus-virtual-machine.nix sets, with
# the real types and defaults. The image itself (`image.repart.image`) is never built here.
{lib, ...}: let
  inherit (lib) mkOption types;
in {
  options.image.repart = {
    name = mkOption {type = types.str;};
    version = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    sectorSize = mkOption {
      type = types.nullOr types.int;
      default = null;
    };
    compression.enable = mkOption {
      type = types.bool;
      default = false;
    };
    mkfsOptions = mkOption {
      type = types.attrsOf (types.listOf types.str);
      default = {};
    };
    partitions = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          storePaths = mkOption {
            type = types.listOf types.path;
            default = [];
          };
          contents = mkOption {
            type = types.attrsOf (types.submodule {
              options.source = mkOption {type = types.path;};
            });
            default = {};
          };
          repartConfig = mkOption {type = types.attrsOf (types.oneOf [types.str types.int types.bool (types.listOf types.str)]);};
        };
      });
      default = {};
    };
    image = mkOption {
      type = types.package;
      readOnly = true;
    };
  };
}
