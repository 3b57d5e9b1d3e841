# The shared base of every Pika Incus guest role. ./guest-modules.nix imports it next to NixOS's own
# Incus guest module (incus-virtual-machine.nix or lxc-container.nix) and the role's module
# (nix/incus/roles/<id>.nix), and sets `pika.guestRole` from the role's registry entry, so the guest
# follows the role's runtime contract (roles.toml) instead of restating it.
{
  config,
  lib,
  ...
}: let
  role = config.pika.guestRole;
  # A role fact the registry always sets: typed and described, no default.
  fact = type: description: lib.mkOption {inherit type description;};
  mountType = lib.types.submodule {
    options = {
      name = fact lib.types.str "Incus disk device name.";
      path = fact lib.types.str "Absolute guest path the device is mounted at.";
      readOnly = fact lib.types.bool "Whether the mount is read-only.";
      optional = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Whether the launcher attaches the mount only when it has a source for it (caches).";
      };
    };
  };
  userType = lib.types.submodule {
    options = {
      name = fact lib.types.str "User name.";
      uid = fact lib.types.int "User ID.";
      group = fact lib.types.str "Primary group name.";
      gid = fact lib.types.int "Primary group ID.";
    };
  };
in {
  options.pika.guestRole = {
    id = fact lib.types.str "ID of the role this guest is built for (roles.toml).";
    readiness = fact lib.types.str "The role's readiness contract: booted, incus-agent, ssh, a lifecycle file path, or http://127.0.0.1:PORT/PATH.";
    mounts = lib.mkOption {
      type = lib.types.listOf mountType;
      default = [];
      description = "The role's mounts; the launcher attaches them as Incus disk devices.";
    };
    servicePort = lib.mkOption {
      type = lib.types.nullOr lib.types.port;
      default = null;
      description = "The guest TCP port of the role's service (roles.toml service-port), which launchers expose with an Incus proxy device.";
    };
    user = lib.mkOption {
      type = lib.types.nullOr userType;
      default = null;
      description = "The unprivileged user the role's workload runs as (roles.toml `user`), or null.";
    };
  };

  config = {
    # sshd exactly when the role is used over SSH; every other role is reached through the Incus
    # agent (VM) or `incus exec` (container). Priority 900, not mkDefault: NixOS's
    # lxc-instance-common.nix already says `mkDefault true`, and two mkDefaults that disagree are a
    # conflicting definition. A role module can still decide with a plain definition.
    services.openssh = {
      enable = lib.mkOverride 900 (role.readiness == "ssh");
      settings.PasswordAuthentication = lib.mkIf (role.readiness == "ssh") (lib.mkDefault false);
    };

    # lxc-instance-common.nix turns documentation on with mkOverride 890 (to beat minimal.nix's
    # mkDefault false); images stay small only with a stronger priority than that.
    documentation = {
      enable = lib.mkOverride 880 false;
      nixos.enable = lib.mkOverride 880 false;
    };

    # lxc-instance-common.nix imports installer/cd-dvd/channel.nix, whose default copies the whole
    # nixpkgs source into the image as root's channel (copyChannel = false does not stop it). A
    # guest is rebuilt from the flake, never from a channel.
    system.installer.channel.enable = false;

    # lxc-instance-common.nix gives root an empty password (initialHashedPassword "" at mkOverride
    # 150): `incus console` would be a root shell. Root is locked on every role; operators reach a
    # guest through `incus exec` (the Incus API) or, for SSH roles, with their keys. Priority 140
    # beats 150; with both set, NixOS warns that two password options disagree.
    users.users.root = {
      hashedPassword = "!";
      initialHashedPassword = lib.mkOverride 140 null;
    };

    # The mount points exist before Incus attaches the devices (bind mount or virtiofs). A
    # writable mount (a cache) belongs to the role's user, so an unattached optional one is still
    # a usable directory; the attached host directory brings its own owner.
    systemd.tmpfiles.rules = map (mount: let
      owner =
        if !mount.readOnly && role.user != null
        then "${role.user.name} ${role.user.group}"
        else "root root";
    in "d ${mount.path} 0755 ${owner} -")
    role.mounts;

    # Uplink: systemd-networkd with DHCP on the first Ethernet device Incus gives the guest.
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
    system.stateVersion = "26.05";
  };
}
