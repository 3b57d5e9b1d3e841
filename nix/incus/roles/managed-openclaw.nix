# Guest NixOS module of the `managed-openclaw` role (roles.toml): the server-managed OpenClaw agent.
# The shared base (../base.nix) and NixOS's Incus guest module come from ../guest-modules.nix.
#
# Payload: the OpenClaw gateway and pikachat are not in nixpkgs; they arrive through the role's
# special-args (`openclawGatewayPkg`, `pikachatPkg`), which ../payloads.nix maps to flake inputs.
#
# How the gateway starts (command line, environment, PATH, user, restart policy) is described once,
# in ./managed-openclaw-gateway.nix, from the role's facts (service-port, user); the test stand-in
# starts it from the same description. Unlike nix-openclaw's module, the configuration is not baked
# into the image: pika-server delivers openclaw.json into the state directory through Incus after
# the guest is up, and the gateway starts once that file exists (the path unit below).
{
  config,
  lib,
  pkgs,
  openclawGatewayPkg,
  pikachatPkg,
  ...
}: let
  gateway = import ./managed-openclaw-gateway.nix config.pika.guestRole;
  inherit (gateway) user;
  hardening = import ../../lib/systemd-hardening.nix;
in {
  options.pika.managedAgent.configFile = lib.mkOption {
    type = lib.types.str;
    default = gateway.configFile;
    readOnly = true;
    description = "Configuration written by pika-server when it provisions the agent; the gateway waits for it.";
  };

  config = {
    environment.systemPackages = [openclawGatewayPkg pikachatPkg];

    users.groups.${user.group}.gid = user.gid;
    users.users.${user.name} = {
      isSystemUser = true;
      inherit (user) uid group;
      home = gateway.stateDir;
    };

    systemd.services.openclaw-gateway = {
      description = "OpenClaw gateway (Pika managed agent)";
      wantedBy = ["multi-user.target"];
      wants = ["network-online.target"];
      after = ["network-online.target"];
      path = map (name: pkgs.${name}) gateway.path ++ [pikachatPkg];
      unitConfig.ConditionPathExists = gateway.configFile;
      environment =
        gateway.environment
        // {SHELL = lib.getExe' pkgs.${gateway.shell} gateway.shell;};
      serviceConfig =
        hardening
        // {
          ExecStart = lib.escapeShellArgs ([(lib.getExe openclawGatewayPkg)] ++ gateway.args);
          # Node's os.networkInterfaces(), which OpenClaw calls at startup, lists the interfaces
          # over an AF_NETLINK socket; without it the call throws and the gateway exits.
          RestrictAddressFamilies = hardening.RestrictAddressFamilies ++ ["AF_NETLINK"];
          User = user.name;
          Group = user.group;
          StateDirectory = baseNameOf gateway.stateDir;
          WorkingDirectory = gateway.stateDir;
          Restart = gateway.restart;
          RestartSec = gateway.restartSec;
        };
    };
    # Starts the gateway when pika-server has written the configuration (after boot); the
    # ConditionPathExists above keeps boot from starting it before.
    systemd.paths.openclaw-gateway = {
      wantedBy = ["multi-user.target"];
      pathConfig.PathExists = gateway.configFile;
    };
  };
}
