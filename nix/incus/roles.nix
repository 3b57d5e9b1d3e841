# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# roles.toml sha256: 51253aa3e29ed791e2b10be4b70f492dc2da0c8f27eb1b511154477178299043
{
  openclawGatewayPkg,
  pikachatPkg,
}: {
  # registry.nix compares it with builtins.hashFile of roles.toml before any use.
  manifestSha256 = "51253aa3e29ed791e2b10be4b70f492dc2da0c8f27eb1b511154477178299043";
  roles = {
    "managed-openclaw" = {
      clusterGroup = null;
      cpu = 2;
      defaultAlias = "pika-agent/dev";
      description = "Pika managed OpenClaw Incus dev image";
      diskSize = 8192;
      id = "managed-openclaw";
      imageName = "pika-agent-incus-dev";
      instanceConfig = {};
      instanceType = "virtual-machine";
      legacyPackageAttrs = ["pika-agent-incus-dev-image"];
      memoryMib = 4096;
      modulePaths = ["nix/incus/roles/managed-openclaw.nix"];
      modules = [./roles/managed-openclaw.nix];
      mounts = [];
      packageAttr = "managed-openclaw-incus-image";
      readiness = "http://127.0.0.1:18789/health";
      rolesDigest = "6fe419742bb0d641c206396c5864ff92621a171bb20710d4fc64f23a1e0098d3";
      runtimeMode = "managed-service";
      secureBoot = false;
      servicePort = 18789;
      specialArgNames = ["openclawGatewayPkg" "pikachatPkg"];
      specialArgs = {inherit openclawGatewayPkg pikachatPkg;};
      system = "x86_64-linux";
      user = {
        gid = 2000;
        group = "openclaw";
        name = "openclaw";
        uid = 2000;
      };
      variant = "managed-openclaw-incus-dev";
    };
    "pi-sandbox" = {
      clusterGroup = null;
      cpu = 2;
      defaultAlias = "pi-sandbox/dev";
      description = "Pika operator sandbox: pi and opencode over SSH";
      diskSize = 16384;
      id = "pi-sandbox";
      imageName = "pi-sandbox-incus-dev";
      instanceConfig = {};
      instanceType = "virtual-machine";
      legacyPackageAttrs = [];
      memoryMib = 4096;
      modulePaths = ["nix/incus/roles/pi-sandbox.nix"];
      modules = [./roles/pi-sandbox.nix];
      mounts = [];
      packageAttr = "pi-sandbox-incus-image";
      readiness = "ssh";
      rolesDigest = "b4d7655c5a0c2ab4daf881d04ac49c471b1a1262bf4d8f99403479428cf2e67e";
      runtimeMode = "operator-sandbox";
      secureBoot = false;
      servicePort = null;
      specialArgNames = [];
      specialArgs = {};
      system = "x86_64-linux";
      user = null;
      variant = "pi-sandbox-incus-dev";
    };
    "pikaci-runner" = {
      clusterGroup = null;
      cpu = 2;
      defaultAlias = "pikaci/dev";
      description = "Pika CI Incus dev image";
      diskSize = 12288;
      id = "pikaci-runner";
      imageName = "pikaci-incus-dev";
      instanceConfig = {};
      instanceType = "virtual-machine";
      legacyPackageAttrs = ["pikaci-incus-dev-image"];
      memoryMib = 4096;
      modulePaths = ["nix/incus/roles/pikaci-runner.nix"];
      modules = [./roles/pikaci-runner.nix];
      mounts = [
        {
          name = "snapshot";
          optional = false;
          path = "/workspace/snapshot";
          readOnly = true;
        }
        {
          name = "cargo-home";
          optional = true;
          path = "/cargo-home";
          readOnly = false;
        }
        {
          name = "cargo-target";
          optional = true;
          path = "/cargo-target";
          readOnly = false;
        }
      ];
      packageAttr = "pikaci-runner-incus-image";
      readiness = "incus-agent";
      rolesDigest = "293334b5c3187b996a5d806e9cbc2c866a313e4232e5fe0e6ca84a3dd209b044";
      runtimeMode = "one-shot";
      secureBoot = false;
      servicePort = null;
      specialArgNames = [];
      specialArgs = {};
      system = "x86_64-linux";
      user = {
        gid = 100;
        group = "users";
        name = "pikaci";
        uid = 1000;
      };
      variant = "pikaci-incus-dev";
    };
  };
}
