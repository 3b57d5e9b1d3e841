# Guest NixOS module of the `managed-openclaw` role (roles.toml): the server-managed OpenClaw agent.
# The shared base (../base.nix) and NixOS's Incus guest module come from ../guest-modules.nix.
#
# Payload: the OpenClaw gateway and pikachat are not in nixpkgs; they arrive through the role's
# special-args (`openclawGatewayPkg`, `pikachatPkg`), which ../payloads.nix maps to flake inputs.
# pika-server provisions the agent at runtime by writing its configuration into
# /var/lib/openclaw (through the Incus agent); the gateway starts once that file exists.
{
  config,
  lib,
  openclawGatewayPkg,
  pikachatPkg,
  ...
}: let
  cfg = config.pika.managedAgent;
in {
  options.pika.managedAgent = {
    gatewayArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = ["gateway"];
      description = "Arguments passed to the OpenClaw gateway program (`meta.mainProgram` of its package).";
    };
    configFile = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/openclaw/openclaw.json";
      description = "Configuration written by pika-server when it provisions the agent; the gateway waits for it.";
    };
  };

  config = {
    environment.systemPackages = [openclawGatewayPkg pikachatPkg];

    users.groups.openclaw = {};
    users.users.openclaw = {
      isSystemUser = true;
      group = "openclaw";
      home = "/var/lib/openclaw";
    };

    systemd.services.openclaw-gateway = {
      description = "OpenClaw gateway (Pika managed agent)";
      wantedBy = ["multi-user.target"];
      wants = ["network-online.target"];
      after = ["network-online.target"];
      path = [pikachatPkg];
      unitConfig.ConditionPathExists = cfg.configFile;
      environment = {
        HOME = "/var/lib/openclaw";
        OPENCLAW_STATE_DIR = "/var/lib/openclaw";
        OPENCLAW_CONFIG_PATH = cfg.configFile;
        # Nix mode: no self-install or self-update inside the immutable image.
        OPENCLAW_NIX_MODE = "1";
      };
      serviceConfig =
        import ../../lib/systemd-hardening.nix
        // {
          ExecStart = lib.escapeShellArgs ([(lib.getExe openclawGatewayPkg)] ++ cfg.gatewayArgs);
          User = "openclaw";
          Group = "openclaw";
          StateDirectory = "openclaw";
          WorkingDirectory = "/var/lib/openclaw";
          Restart = "on-failure";
          RestartSec = 5;
        };
    };
    # Re-check for the provisioned configuration: pika-server writes it after boot.
    systemd.paths.openclaw-gateway = {
      wantedBy = ["multi-user.target"];
      pathConfig.PathExists = cfg.configFile;
    };
  };
}
