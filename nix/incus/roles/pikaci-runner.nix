# Guest NixOS module of the `pikaci-runner` role (roles.toml): a CI runner guest for pikaci.
# The shared base (../base.nix) and NixOS's Incus guest module come from ../guest-modules.nix; the
# role's read-only snapshot mount point (roles.toml mounts) is created by the base.
#
# Payload: nix (with flakes), git, bash and the tools CI jobs use; jobs run as the `pikaci`
# user in /workspace, which pikaci fills through the Incus agent.
{
  lib,
  pkgs,
  ...
}: {
  environment.systemPackages = with pkgs; [
    bash
    coreutils
    curl
    findutils
    git
    gnugrep
    gnumake
    gnused
    gnutar
    gzip
    jq
    nix
    openssh
    rsync
    xz
    zstd
    # The Rust toolchain of the repository's devShell (flake.nix) and what build scripts call.
    cargo
    rustc
    clippy
    rustfmt
    gcc
    clang
    pkg-config
  ];

  nix.settings = {
    experimental-features = ["nix-command" "flakes"];
    trusted-users = ["root" "pikaci"];
    sandbox = lib.mkDefault true;
    max-jobs = "auto";
  };

  users.groups.pikaci = {};
  users.users.pikaci = {
    isNormalUser = true;
    group = "pikaci";
    home = "/workspace";
    createHome = true;
    shell = pkgs.bash;
  };

  systemd.tmpfiles.rules = ["d /workspace 0755 pikaci pikaci -"];

  # CI guests are disposable: keep the journal in memory and skip what only slows boot.
  services.journald.storage = "volatile";
  boot.tmp.cleanOnBoot = true;
}
