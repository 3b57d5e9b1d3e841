# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# roles.toml sha256: 368ab9062f643546dfa64b8f5d1832621a850dffeec08f876be97d2959e0e624
{
  alphaPkg,
  betaPkg,
}: {
  # registry.nix compares it with builtins.hashFile of roles.toml before any use.
  manifestSha256 = "368ab9062f643546dfa64b8f5d1832621a850dffeec08f876be97d2959e0e624";
  roles = {
    "alpha" = {
      clusterGroup = null;
      cpu = 1;
      defaultAlias = "alpha/dev";
      description = "Alpha \"quoted\" \${notInterpolated} it's a \\ backslash, [brackets], ünïcödé ☃";
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
      rolesDigest = "111f9f74a41ca8c107e96ee53658d560ada9b47db2a1d37f0832cde47f7d12f8";
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
