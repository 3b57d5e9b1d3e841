# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
{
  openclawGatewayPkg,
  pikachatPkg,
}: {
  "managed-openclaw" = {
    id = "managed-openclaw";
    system = "x86_64-linux";
    packageAttr = "managed-openclaw-incus-image";
    legacyPackageAttrs = ["pika-agent-incus-dev-image"];
    defaultAlias = "pika-agent/dev";
    imageName = "pika-agent-incus-dev";
    variant = "managed-openclaw-incus-dev";
    instanceType = "virtual-machine";
    diskSize = 8192;
    description = "Pika managed OpenClaw Incus dev image";
    modules = [./roles/managed-openclaw.nix];
    modulePaths = ["nix/incus/roles/managed-openclaw.nix"];
    specialArgNames = ["openclawGatewayPkg" "pikachatPkg"];
    specialArgs = {inherit openclawGatewayPkg pikachatPkg;};
    runtimeMode = "managed-service";
    readiness = "http://127.0.0.1:18789/health";
    cpu = 2;
    memoryMib = 4096;
    secureBoot = false;
    clusterGroup = null;
    servicePort = 18789;
    user = {
      name = "openclaw";
      uid = 2000;
      group = "openclaw";
      gid = 2000;
    };
    mounts = [];
    instanceConfig = {};
    rolesDigest = "9aeb4ae9f01a18b60b9ea5d645f23a8160bdbb59115c04c9353ac1695e978340";
  };
  "pi-sandbox" = {
    id = "pi-sandbox";
    system = "x86_64-linux";
    packageAttr = "pi-sandbox-incus-image";
    legacyPackageAttrs = [];
    defaultAlias = "pi-sandbox/dev";
    imageName = "pi-sandbox-incus-dev";
    variant = "pi-sandbox-incus-dev";
    instanceType = "virtual-machine";
    diskSize = 16384;
    description = "Pika operator sandbox: pi and opencode over SSH";
    modules = [./roles/pi-sandbox.nix];
    modulePaths = ["nix/incus/roles/pi-sandbox.nix"];
    specialArgNames = [];
    specialArgs = {};
    runtimeMode = "operator-sandbox";
    readiness = "ssh";
    cpu = 2;
    memoryMib = 4096;
    secureBoot = false;
    clusterGroup = null;
    servicePort = null;
    user = null;
    mounts = [];
    instanceConfig = {};
    rolesDigest = "61975a5a452d55fef70c039f0d9a8bea5c2f298c6055bb264d9c9e5f44c16b58";
  };
  "pikaci-runner" = {
    id = "pikaci-runner";
    system = "x86_64-linux";
    packageAttr = "pikaci-runner-incus-image";
    legacyPackageAttrs = ["pikaci-incus-dev-image"];
    defaultAlias = "pikaci/dev";
    imageName = "pikaci-incus-dev";
    variant = "pikaci-incus-dev";
    instanceType = "virtual-machine";
    diskSize = 12288;
    description = "Pika CI Incus dev image";
    modules = [./roles/pikaci-runner.nix];
    modulePaths = ["nix/incus/roles/pikaci-runner.nix"];
    specialArgNames = [];
    specialArgs = {};
    runtimeMode = "one-shot";
    readiness = "incus-agent";
    cpu = 2;
    memoryMib = 4096;
    secureBoot = false;
    clusterGroup = null;
    servicePort = null;
    user = {
      name = "pikaci";
      uid = 1000;
      group = "users";
      gid = 100;
    };
    mounts = [
      {
        name = "snapshot";
        path = "/workspace/snapshot";
        readOnly = true;
        optional = false;
      }
      {
        name = "cargo-home";
        path = "/cargo-home";
        readOnly = false;
        optional = true;
      }
      {
        name = "cargo-target";
        path = "/cargo-target";
        readOnly = false;
        optional = true;
      }
    ];
    instanceConfig = {};
    rolesDigest = "d626ea8dab3d0a336d338ed3f5f3fd65d546b75123905197283bb577bc468837";
  };
}
