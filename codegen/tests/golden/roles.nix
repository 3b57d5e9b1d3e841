# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
{
  alphaPkg,
  betaPkg,
}: {
  "alpha" = {
    id = "alpha";
    system = "x86_64-linux";
    packageAttr = "alpha-image";
    legacyPackageAttrs = ["alpha-legacy"];
    defaultAlias = "alpha/dev";
    imageName = "alpha-img";
    variant = "alpha-variant";
    instanceType = "container";
    diskSize = 1024;
    description = "Alpha \"quoted\" \${notInterpolated} it's a \\ backslash, ünïcödé ☃";
    modules = [../alpha.nix];
    modulePaths = ["nix/alpha.nix"];
    specialArgNames = ["alphaPkg"];
    specialArgs = {inherit alphaPkg;};
    runtimeMode = "operator-sandbox";
    readiness = "ssh";
    cpu = 1;
    memoryMib = 512;
    secureBoot = false;
    clusterGroup = null;
    servicePort = null;
    user = null;
    mounts = [];
    instanceConfig = {};
    rolesDigest = "81140d759864c48366abf909d920531ae99f2476f679729566923ec2121fef0b";
  };
  "beta" = {
    id = "beta";
    system = "aarch64-linux";
    packageAttr = "beta-image";
    legacyPackageAttrs = [];
    defaultAlias = "beta/dev";
    imageName = "beta-img";
    variant = "beta-variant";
    instanceType = "virtual-machine";
    diskSize = 2048;
    description = "Beta role";
    modules = [../beta.nix];
    modulePaths = ["nix/beta.nix"];
    specialArgNames = ["alphaPkg" "betaPkg"];
    specialArgs = {inherit alphaPkg betaPkg;};
    runtimeMode = "one-shot";
    readiness = "/run/beta/ready";
    cpu = 4;
    memoryMib = 8192;
    secureBoot = true;
    clusterGroup = "ci-hosts";
    servicePort = null;
    user = null;
    mounts = [
      {
        name = "snapshot";
        path = "/workspace/snapshot";
        readOnly = true;
        optional = false;
      }
      {
        name = "cache";
        path = "/var/cache/beta";
        readOnly = false;
        optional = false;
      }
    ];
    instanceConfig = {
      "boot.autostart" = "false";
      "security.nesting" = "true";
    };
    rolesDigest = "bf79e55d8dd5071a008049e49691afd8fca3abf275293a6d100d731032bd20c4";
  };
  "delta" = {
    id = "delta";
    system = "x86_64-linux";
    packageAttr = "delta-image";
    legacyPackageAttrs = [];
    defaultAlias = "delta/dev";
    imageName = "delta-img";
    variant = "delta-variant";
    instanceType = "virtual-machine";
    diskSize = 4096;
    description = "Delta service role";
    modules = [../alpha.nix];
    modulePaths = ["nix/alpha.nix"];
    specialArgNames = [];
    specialArgs = {};
    runtimeMode = "managed-service";
    readiness = "http://127.0.0.1:18789/healthz";
    cpu = 2;
    memoryMib = 2048;
    secureBoot = false;
    clusterGroup = null;
    servicePort = 18789;
    user = {
      name = "delta";
      uid = 1001;
      group = "users";
      gid = 100;
    };
    mounts = [
      {
        name = "state";
        path = "/var/lib/delta";
        readOnly = false;
        optional = false;
      }
      {
        name = "cargo-home";
        path = "/var/cache/cargo";
        readOnly = false;
        optional = true;
      }
    ];
    instanceConfig = {};
    rolesDigest = "3bfdf9b5471491ea4eac5bf9d65454f8f823d8d0b1cfe620928df31932915745";
  };
}
