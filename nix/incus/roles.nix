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
    modules = [./managed-agent-image.nix];
    modulePaths = ["nix/incus/managed-agent-image.nix"];
    specialArgNames = ["openclawGatewayPkg" "pikachatPkg"];
    specialArgs = {inherit openclawGatewayPkg pikachatPkg;};
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
    modules = [./pikaci-image.nix];
    modulePaths = ["nix/incus/pikaci-image.nix"];
    specialArgNames = [];
    specialArgs = {};
  };
}
