# Base NixOS configuration shared by every Pika Incus guest role (imported by
# ./guest-image-package.nix next to nixpkgs' incus-virtual-machine.nix or lxc-container.nix).
# Uplink: systemd-networkd with DHCP on the first Ethernet device Incus gives the guest.
{lib, ...}: {
  networking = {
    useNetworkd = true;
    useDHCP = false;
    # Incus names the guest; the hostname comes from DHCP / the instance name.
    hostName = lib.mkDefault "";
  };
  systemd.network = {
    enable = true;
    networks."10-incus-uplink" = {
      matchConfig.Name = "en* eth*";
      networkConfig = {
        DHCP = "yes";
        IPv6AcceptRA = true;
      };
      linkConfig.RequiredForOnline = "routable";
    };
  };

  nix.settings.experimental-features = ["nix-command" "flakes"];
  documentation.enable = lib.mkDefault false;
  services.openssh.enable = lib.mkDefault false;
  system.stateVersion = "25.05";
}
