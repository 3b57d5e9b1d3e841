# Host example: pika-server provisioning managed OpenClaw agents on the local Incus.
# The image alias is not set: the server uses the role's default alias from roles.toml.
# Use it from a flake: nixosSystem { modules = [ pika.nixosModules.pika-server ./nix/hosts/pika-server.nix ]; }
{...}: {
  services.pika-server = {
    enable = true;
    listen = "0.0.0.0:8080";
    openFirewall = true;
    tokensFile = "/run/secrets/pika-server-tokens";
    incus = {
      guestRole = "managed-openclaw";
      project = "pika-agents";
      storagePool = "default";
    };
  };

  virtualisation.incus.enable = true;
  # NixOS's incus.nix asserts it: Incus manages its firewall rules through nftables only.
  networking.nftables.enable = true;
}
