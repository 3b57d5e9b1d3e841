# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# roles.toml sha256: c8b5f617561b48247b930152eb656b08f8fd5b3cde48bbdcae4472cdde1e19b7
{
  alphaPkg,
  betaPkg,
}: {
  # registry.nix compares it with builtins.hashFile of roles.toml before any use.
  manifestSha256 = "c8b5f617561b48247b930152eb656b08f8fd5b3cde48bbdcae4472cdde1e19b7";
  roles = {
    "alpha" = {
      clusterGroup = null;
      cpu = 1;
      defaultAlias = "alpha/dev";
      description = "Alpha \"quoted\" \${notInterpolated} it's a \\ backslash, ünïcödé ☃";
      diskSize = 1024;
      id = "alpha";
      imageName = "alpha-img";
      instanceConfig = {};
      instanceType = "container";
      legacyPackageAttrs = ["alpha-legacy"];
      memoryMib = 512;
      modulePaths = ["nix/alpha.nix"];
      modules = [../alpha.nix];
      mounts = [];
      packageAttr = "alpha-image";
      readiness = "ssh";
      rolesDigest = "167a9ca8cd7286d7f22de95a9558632d807a185b1adcdde81ee2dd6109ee925a";
      runtimeMode = "operator-sandbox";
      secureBoot = false;
      servicePort = null;
      specialArgNames = ["alphaPkg"];
      specialArgs = {inherit alphaPkg;};
      system = "x86_64-linux";
      user = null;
      variant = "alpha-variant";
    };
    "beta" = {
      clusterGroup = "ci-hosts";
      cpu = 4;
      defaultAlias = "beta/dev";
      description = "Beta role";
      diskSize = 2048;
      id = "beta";
      imageName = "beta-img";
      instanceConfig = {
        "boot.autostart" = "false";
        "security.nesting" = "true";
      };
      instanceType = "virtual-machine";
      legacyPackageAttrs = [];
      memoryMib = 8192;
      modulePaths = ["nix/beta.nix"];
      modules = [../beta.nix];
      mounts = [
        {
          name = "snapshot";
          optional = false;
          path = "/workspace/snapshot";
          readOnly = true;
        }
        {
          name = "cache";
          optional = false;
          path = "/var/cache/beta";
          readOnly = false;
        }
      ];
      packageAttr = "beta-image";
      readiness = "/run/beta/ready";
      rolesDigest = "8e2d20ec01e94435d84768526d6b59f05a55d9067b797dc73c2b986b161dfe52";
      runtimeMode = "one-shot";
      secureBoot = true;
      servicePort = null;
      specialArgNames = ["alphaPkg" "betaPkg"];
      specialArgs = {inherit alphaPkg betaPkg;};
      system = "aarch64-linux";
      user = null;
      variant = "beta-variant";
    };
    "delta" = {
      clusterGroup = null;
      cpu = 2;
      defaultAlias = "delta/dev";
      description = "Delta service role";
      diskSize = 4096;
      id = "delta";
      imageName = "delta-img";
      instanceConfig = {};
      instanceType = "virtual-machine";
      legacyPackageAttrs = [];
      memoryMib = 2048;
      modulePaths = ["nix/alpha.nix"];
      modules = [../alpha.nix];
      mounts = [
        {
          name = "state";
          optional = false;
          path = "/var/lib/delta";
          readOnly = false;
        }
        {
          name = "cargo-home";
          optional = true;
          path = "/var/cache/cargo";
          readOnly = false;
        }
      ];
      packageAttr = "delta-image";
      readiness = "http://127.0.0.1:18789/healthz";
      rolesDigest = "c0b2a98871f78ca76d4704b56423c4da72b7d38044ead1f57b271fc8ac998b17";
      runtimeMode = "managed-service";
      secureBoot = false;
      servicePort = 18789;
      specialArgNames = [];
      specialArgs = {};
      system = "x86_64-linux";
      user = {
        gid = 100;
        group = "users";
        name = "delta";
        uid = 1001;
      };
      variant = "delta-variant";
    };
  };
}
