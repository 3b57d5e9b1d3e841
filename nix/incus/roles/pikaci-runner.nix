# Guest NixOS module of the `pikaci-runner` role (roles.toml): a CI runner guest for pikaci.
# The shared base (../base.nix) and NixOS's Incus guest module come from ../guest-modules.nix; the
# base creates the role's mount points (the read-only snapshot, the optional cargo caches).
#
# Jobs run as the role's user (roles.toml `[roles.pikaci-runner.user]`, here `pika.guestRole.user`):
# jerichoci execs every job command with that uid and gid, so a job cannot write the snapshot or
# anything else root owns.
#
# What a Rust job needs:
# - nix with flakes (the base turns them on; the user is a trusted nix user), so a job can run
#   `nix develop -c cargo test` against its own flake;
# - git and CA certificates, which `nix develop` uses to fetch a flake's inputs;
# - the toolchain the repository's devShell (flake.nix devShells.default) brings: cargo, rustc,
#   clippy, rustfmt, plus the C side that build scripts and the `cc` crate call (gcc as `cc`,
#   clang, pkg-config, make). Installed from the image's nixpkgs, the same store paths a devShell
#   on that nixpkgs resolves to are already in the guest's store, so `nix develop` fetches nothing
#   for them, and a job that runs `cargo` directly works too.
{
  config,
  lib,
  pkgs,
  ...
}: let
  # null for a role without a user (roles.toml): jerichoci then runs its jobs as root.
  inherit (config.pika.guestRole) user;
in {
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
    # The Rust toolchain of the repository's devShell and what build scripts call.
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
    trusted-users = ["root"] ++ lib.optional (user != null) user.name;
    sandbox = lib.mkDefault true;
    max-jobs = "auto";
  };

  users = lib.mkIf (user != null) {
    groups.${user.group}.gid = user.gid;
    users.${user.name} = {
      isNormalUser = true;
      inherit (user) uid group;
      home = "/home/${user.name}";
      createHome = true;
      shell = pkgs.bash;
    };
  };

  # CI guests are disposable: keep the journal in memory and skip what only slows boot.
  services.journald.storage = "volatile";
  boot.tmp.cleanOnBoot = true;
}
