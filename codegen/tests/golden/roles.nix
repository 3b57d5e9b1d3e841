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
    description = "Alpha \"quoted\" \${notInterpolated} it's a \\ backslash";
    modules = [../alpha.nix];
    modulePaths = ["nix/alpha.nix"];
    specialArgNames = ["alphaPkg"];
    specialArgs = {inherit alphaPkg;};
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
  };
}
