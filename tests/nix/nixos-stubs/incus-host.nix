# Stub of nixpkgs nixos/modules/virtualisation/incus.nix (the Incus host module; not in
# ../shared/nixpkgs-subset), for the evaluation tests only: `virtualisation.incus.enable` with its
# real type and default, the firewall options it reads, and its nftables assertion, word for word.
# The daemon itself (units, kernel settings, packages) is not evaluated.
{
  config,
  lib,
  ...
}: {
  options = {
    virtualisation.incus.enable = lib.mkEnableOption "incusd, a daemon that manages containers and virtual machines";
    # services/networking/firewall.nix
    networking.firewall.enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
    };
  };

  config = lib.mkIf config.virtualisation.incus.enable {
    assertions = [
      {
        assertion = !(config.networking.firewall.enable && !config.networking.nftables.enable && config.virtualisation.incus.enable);
        message = "Incus on NixOS is unsupported using iptables. Set `networking.nftables.enable = true;`";
      }
    ];
  };
}
