# How the OpenClaw gateway of the `managed-openclaw` role is started: the one description that both
# the guest's systemd unit (./managed-openclaw.nix) and the container stand-in of the tests
# (scripts/lib/test-image-openclaw.sh) are made from, so the two cannot start it differently
# (scripts/tests/60-openclaw.sh compares the running stand-in with the unit of a real-lib evaluation).
#
# Plain data from the role's registry entry (nix/incus/roles.nix), builtins only: the stand-in's
# builder evaluates it without nixpkgs.
#
#   import ./managed-openclaw-gateway.nix role   # role: the registry entry (needs servicePort, user)
#
# Modelled on nix-openclaw's own NixOS module (nix/modules/nixos/openclaw.nix): `openclaw gateway
# --port PORT`, Restart=always after 5 s, bash and coreutils on PATH, $SHELL set to bash, the
# OPENCLAW_* environment. Where ours differs: the configuration is not baked under /etc at build
# time; pika-server delivers it into the state directory at run time, and the gateway starts once
# it exists.
role: let
  required = name:
    if (role.${name} or null) == null
    then
      throw "role ${role.id}: the OpenClaw gateway needs the role fact `${name}` (roles.toml: ${
        if name == "servicePort"
        then "service-port"
        else "[roles.${role.id}.user]"
      })"
    else role.${name};
  port = required "servicePort";
  stateDir = "/var/lib/openclaw";
  configFile = "${stateDir}/openclaw.json";
in {
  inherit port stateDir configFile;
  # The arguments of the payload's program (nix-openclaw's `openclaw`, the package's mainProgram).
  args = ["gateway" "--port" (toString port)];
  # The unprivileged user the gateway runs as: { name, uid, group, gid } (roles.toml).
  user = required "user";
  environment = {
    HOME = stateDir;
    OPENCLAW_STATE_DIR = stateDir;
    OPENCLAW_CONFIG_PATH = configFile;
    # Nix mode: no self-install or self-update inside the immutable image; the config is managed
    # from outside (the gateway never rewrites it).
    OPENCLAW_NIX_MODE = "1";
  };
  # nixpkgs packages whose bin/ is the service's PATH, as nix-openclaw gives its gateway: the
  # gateway's tools spawn shell commands.
  path = ["bash" "coreutils"];
  # The package whose program is $SHELL: the gateway spawns tool commands with $SHELL, and a system
  # user's login shell is nologin.
  shell = "bash";
  # Restart=always: a gateway that exits for any reason (a crash, a kill, a clean exit) comes back.
  restart = "always";
  restartSec = 5;
}
