{
  description = "Pika Incus guest roles: role images, the pika-server NixOS module and the Pika tools";

  inputs = {
    # rustc in release-26.05 satisfies the workspace's rust-version (Cargo.toml); see README "Nix".
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane";
    # Role payloads nixpkgs does not ship (nix/incus/payloads.nix maps special-args to them).
    nix-openclaw = {
      url = "github:openclaw/nix-openclaw";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # pika's own flake takes nix-openclaw as an input too: one lock of it, ours.
    pika = {
      url = "github:sledtools/pika";
      inputs.nixpkgs.follows = "nixpkgs";
      inputs.nix-openclaw.follows = "nix-openclaw";
    };
  };

  # Everything role-specific comes from roles.toml through the generated nix/incus/roles.nix:
  # this file names no role. A new role in roles.toml gets its packages here with no edit.
  outputs = inputs @ {
    self,
    nixpkgs,
    crane,
    ...
  }: let
    inherit (nixpkgs) lib;
    systems = ["x86_64-linux" "aarch64-linux"];
    forAllSystems = lib.genAttrs systems;

    # Provenance of the images: the commit, or the dirty rev of a dirty tree, or "unknown".
    sourceRev = self.rev or self.dirtyRev or "unknown";

    # The registry with payloads resolved (nix/incus/payloads.nix), checked against roles.toml
    # (drift guard): a stale roles.nix is an evaluation error.
    registryFor = {
      system,
      payloads ? {},
    }: let
      payloadFor = import ./nix/incus/payloads.nix {inherit inputs system payloads;};
      names = lib.unique (builtins.concatMap (role: role.specialArgNames) (builtins.attrValues metadataRegistry));
    in
      (import ./nix/incus/registry.nix {
        repoRoot = ./.;
        specialArgs = lib.genAttrs names payloadFor;
      })
      .registry;
    # Role metadata only (the payload arguments are never forced through it).
    metadataRegistry = (import ./nix/incus/registry.nix {repoRoot = ./.;}).registry;

    # mkIncusGuestRoleImagePkg pkgs role -> the image derivation of one registry entry.
    mkIncusGuestRoleImagePkg = pkgs: role:
      import ./nix/incus/guest-image-package.nix {
        nixpkgsLib = lib;
        inherit pkgs;
      } {
        inherit role sourceRev;
        buildInstructions =
          "nix build .#packages.${role.system}.${role.packageAttr}   # Incus guest role ${role.id}"
          + lib.optionalString (role.legacyPackageAttrs != [])
          "\n(the same image is also .#${lib.concatStringsSep ", .#" role.legacyPackageAttrs})";
        importInstructions = let
          file =
            if role.instanceType == "container"
            then "rootfs.squashfs"
            else "disk.qcow2";
        in "incus image import result/metadata.tar.xz result/${file} --alias ${role.defaultAlias}\n(the default alias of role ${role.id}; pika-server and pikaci find the image by it)";
      };

    # All role packages of one system: canonical and legacy names -> the same derivation.
    #   mkIncusGuestRolePackages { pkgs; payloads ? { <special-arg> = <package>; } }
    mkIncusGuestRolePackages = {
      pkgs,
      payloads ? {},
    }: let
      inherit (pkgs.stdenv.hostPlatform) system;
      roles = builtins.filter (role: role.system == system) (builtins.attrValues (registryFor {inherit system payloads;}));
    in
      builtins.listToAttrs (builtins.concatMap (role: let
        image = mkIncusGuestRoleImagePkg pkgs role;
      in
        map (name: lib.nameValuePair name image) ([role.packageAttr] ++ role.legacyPackageAttrs))
      roles);

    # The Rust workspace (crane): packages and checks of one system.
    rustFor = pkgs:
      import ./nix/rust.nix {
        craneLib = crane.mkLib pkgs;
        inherit pkgs;
        repoRoot = ./.;
      };
  in {
    lib = {
      # The role registry (nix/incus/roles.nix checked against roles.toml), metadata only.
      incusGuestRoles = metadataRegistry;
      inherit mkIncusGuestRoleImagePkg mkIncusGuestRolePackages;
      guestImagePackage = import ./nix/incus/guest-image-package.nix;
      packageIncusImage = import ./nix/incus/package-incus-image.nix;
    };

    packages = forAllSystems (system: let
      pkgs = nixpkgs.legacyPackages.${system};
    in
      mkIncusGuestRolePackages {inherit pkgs;} // (rustFor pkgs).flakePackages);

    nixosModules = {
      pika-server = {pkgs, ...}: {
        # A key makes the module system import this module once, however many times (and under
        # however many names: `default` is the same module) a configuration lists it.
        key = "pika-incus-guest-roles#nixosModules.pika-server";
        imports = [./nix/modules/pika-server.nix];
        services.pika-server.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.pika-server;
      };
      default = self.nixosModules.pika-server;
    };

    checks = forAllSystems (system: let
      pkgs = nixpkgs.legacyPackages.${system};
      registryCheck = import ./nix/incus/registry.nix {repoRoot = ./.;};
    in
      {
        # Evaluating this fails with the stale message when roles.nix does not match roles.toml.
        roles-registry-fresh = pkgs.runCommand "roles-registry-fresh" {
          roles = builtins.seq registryCheck.registry (builtins.attrNames registryCheck.registry);
        } ''echo "roles.nix matches roles.toml: $roles" > "$out"'';
        # On a machine with KVM: every role's image (this flake's package) boots in an Incus host
        # VM with the role's launch config and becomes ready (nix/incus/boot-test.nix). `tests`
        # holds the test of each role by ID.
        role-images-boot = let
          tests = lib.mapAttrs (_: role:
            import ./nix/incus/boot-test.nix {inherit pkgs lib;} {
              inherit role;
              image = self.packages.${system}.${role.packageAttr};
            }) (lib.filterAttrs (_: role: role.system == system) metadataRegistry);
        in
          pkgs.linkFarmFromDrvs "role-images-boot" (builtins.attrValues tests) // {inherit tests;};
        # codegen/templates/*.nix are askama templates, not Nix.
        nix-formatting = pkgs.runCommand "nix-formatting" {nativeBuildInputs = [pkgs.alejandra];} ''
          alejandra --check --exclude ${self}/codegen/templates ${self} && touch "$out"
        '';
      }
      // (rustFor pkgs).checks);

    formatter = forAllSystems (system: nixpkgs.legacyPackages.${system}.alejandra);

    devShells = forAllSystems (system: let
      pkgs = nixpkgs.legacyPackages.${system};
    in {
      default = pkgs.mkShell {
        packages = [pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt pkgs.incus pkgs.shellcheck pkgs.alejandra pkgs.jq];
      };
    });
  };
}
