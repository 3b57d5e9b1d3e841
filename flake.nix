{
  description = "Pika Incus guest roles: role images, the pika-server NixOS module and the Pika tools";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  # Everything role-specific comes from roles.toml through the generated nix/incus/roles.nix:
  # this file names no role. A new role in roles.toml gets its packages here with no edit.
  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    systems = ["x86_64-linux" "aarch64-linux"];
    forAllSystems = lib.genAttrs systems;

    # The registry, checked against roles.toml (drift guard): stale -> evaluation error.
    # Payloads (special-args) resolve through nix/incus/payloads.nix.
    registryFor = {
      pkgs,
      payloads ? {},
    }: let
      payload = import ./nix/incus/payloads.nix {inherit pkgs payloads;};
      names = lib.unique (builtins.concatMap (role: role.specialArgNames) (builtins.attrValues metadataRegistry));
    in
      (import ./nix/incus/registry.nix {
        repoRoot = ./.;
        specialArgs = lib.genAttrs names payload;
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
        inherit (role) system description variant diskSize modules specialArgs instanceType;
        name = role.imageName;
        packageName = role.packageAttr;
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
      roles = builtins.filter (role: role.system == pkgs.stdenv.hostPlatform.system) (builtins.attrValues (registryFor {inherit pkgs payloads;}));
    in
      builtins.listToAttrs (builtins.concatMap (role: let
        image = mkIncusGuestRoleImagePkg pkgs role;
      in
        map (name: lib.nameValuePair name image) ([role.packageAttr] ++ role.legacyPackageAttrs))
      roles);

    # Workspace binaries (cargo builds them; no nixpkgs fetch needed for cargo itself).
    cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
    mkWorkspaceBinary = pkgs: cargoPackage: binary:
      pkgs.rustPlatform.buildRustPackage {
        pname = binary;
        inherit (cargoToml.workspace.package) version;
        src = self;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = ["-p" cargoPackage "--bin" binary];
        doCheck = false;
        meta.mainProgram = binary;
      };
    workspaceBinaries = pkgs:
      lib.optionalAttrs (builtins.pathExists ./Cargo.lock) {
        pika-server = mkWorkspaceBinary pkgs "pika-server" "pika-server";
        pika-cli = mkWorkspaceBinary pkgs "pika-cli" "pika";
        pikaci = mkWorkspaceBinary pkgs "pikaci" "pikaci";
        pika-roles = mkWorkspaceBinary pkgs "pika-roles-codegen" "pika-roles";
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
      mkIncusGuestRolePackages {inherit pkgs;} // workspaceBinaries pkgs);

    nixosModules = {
      pika-server = {pkgs, ...}: {
        imports = [./nix/modules/pika-server.nix];
        services.pika-server.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.pika-server;
      };
      default = self.nixosModules.pika-server;
    };

    checks = forAllSystems (system: let
      pkgs = nixpkgs.legacyPackages.${system};
      registryCheck = import ./nix/incus/registry.nix {repoRoot = ./.;};
    in {
      # Evaluating this fails with the stale message when roles.nix does not match roles.toml.
      roles-registry-fresh = pkgs.runCommand "roles-registry-fresh" {
        roles = builtins.seq registryCheck.registry (builtins.attrNames registryCheck.registry);
      } ''echo "roles.nix matches roles.toml: $roles" > "$out"'';
      # codegen/templates/*.nix are askama templates, not Nix.
      nix-formatting = pkgs.runCommand "nix-formatting" {nativeBuildInputs = [pkgs.alejandra];} ''
        alejandra --check --exclude ${self}/codegen/templates ${self} && touch "$out"
      '';
    });

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
