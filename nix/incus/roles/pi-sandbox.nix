# Guest NixOS module of the `pi-sandbox` role (roles.toml): an operator sandbox used over plain SSH,
# with the pi and opencode coding agents and the tools they lean on. No product daemon runs here.
# The shared base (../base.nix) and NixOS's Incus guest module come from ../guest-modules.nix; the
# base enables sshd because the role's readiness is `ssh`.
#
# Access: `pika-guest launch --role pi-sandbox NAME --ssh-key KEY.pub` writes the key to
# /root/.ssh/authorized_keys (sshd's default AuthorizedKeysFile) before it waits for port 22.
# Payload: everything comes from nixpkgs (`pi` is nixpkgs' pi-coding-agent).
{
  lib,
  pkgs,
  ...
}: {
  environment.systemPackages = with pkgs; [
    pi-coding-agent
    opencode
    tmux
    git
    jq
    ripgrep
    just
  ];

  # Keys only: the sandbox is reached as root with the operator's key, never with a password.
  services.openssh.settings.PermitRootLogin = lib.mkDefault "prohibit-password";
}
