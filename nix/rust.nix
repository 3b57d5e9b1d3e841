# The workspace's Rust packages and checks, built with crane (github:ipetkov/crane):
# one dependency build (`buildDepsOnly`) shared by every binary and every check, and a source
# filter that keeps only what cargo and build.rs read, so editing README.md or a shell script
# rebuilds nothing.
#
#   import ./nix/rust.nix { craneLib = crane.mkLib pkgs; inherit pkgs; repoRoot = ./.; }
#   -> { packages = { pika-server = ...; ... }; checks = { cargo-clippy = ...; ... }; }
{
  craneLib,
  pkgs,
  # The repository root (a path).
  repoRoot,
}: let
  inherit (builtins) any attrValues concatMap elem;
  lib = pkgs.lib;
  root = toString repoRoot;
  cargoToml = builtins.fromTOML (builtins.readFile (repoRoot + "/Cargo.toml"));
  roles = (builtins.fromTOML (builtins.readFile (repoRoot + "/roles.toml"))).roles or {};

  # Besides Cargo sources (*.rs, *.toml, Cargo.lock): what build.rs and the codegen read. The
  # codegen validates that every role module named in roles.toml exists, so those files come along;
  # the generated files are compared by `pika-roles check`.
  extraFiles =
    [
      "codegen/askama.toml"
      # codegen/tests/outputs.rs checks that the generated files are marked linguist-generated.
      ".gitattributes"
      "nix/incus/roles.nix"
      "scripts/lib/roles.sh"
    ]
    ++ concatMap (role: role.modules or []) (attrValues roles);
  # tests/fixtures: the extra role that codegen/tests/outputs.rs adds to roles.toml, and its module.
  extraDirs = ["codegen/templates" "codegen/tests" "tests/fixtures"];
  relative = path: lib.removePrefix "${root}/" (toString path);
  keep = path: type: let
    rel = relative path;
  in
    craneLib.filterCargoSources path type
    || elem rel extraFiles
    || any (dir: rel == dir || lib.hasPrefix "${dir}/" rel) extraDirs;
  src = builtins.path {
    path = repoRoot;
    name = "pika-source";
    filter = keep;
  };

  common = {
    inherit src;
    pname = "pika-workspace";
    inherit (cargoToml.workspace.package) version;
    strictDeps = true;
    cargoExtraArgs = "--locked";
  };
  cargoArtifacts = craneLib.buildDepsOnly common;

  # Binary -> its crate and its package's meta.description. Every binary of the workspace is a
  # package of the same name.
  binaries = {
    pika-server = {
      crate = "pika-server";
      description = "Pika agent API server: provisions OpenClaw agents as Incus guests";
    };
    pika = {
      crate = "pika-cli";
      description = "Pika operator CLI for the agent API";
    };
    pikaci = {
      crate = "pikaci";
      description = "Pika CI front end: runs CI jobs in Incus guests";
    };
    pika-roles = {
      crate = "pika-roles-codegen";
      description = "Generates and checks the Pika Incus guest role registry from roles.toml";
    };
    pika-guest = {
      crate = "pika-guest";
      description = "Pika operator tool for Incus guests and role images";
    };
  };
  mkBinary = binary: {
    crate,
    description,
  }:
    craneLib.buildPackage (common
      // {
        inherit cargoArtifacts;
        pname = binary;
        cargoExtraArgs = "--locked -p ${crate} --bin ${binary}";
        # The tests run once for the workspace, in checks.cargo-test.
        doCheck = false;
        nativeBuildInputs = [pkgs.installShellFiles];
        # Every binary prints its completions (`BIN completions SHELL`, crate pika-runtime); a
        # cross build cannot run the binary, so it goes without.
        postInstall = lib.optionalString (pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform) ''
          installShellCompletion --cmd ${binary} \
            --bash <("$out/bin/${binary}" completions bash) \
            --fish <("$out/bin/${binary}" completions fish) \
            --zsh <("$out/bin/${binary}" completions zsh)
        '';
        meta = {
          inherit description license;
          platforms = lib.platforms.linux;
          mainProgram = binary;
        };
      });
  # Cargo.toml's SPDX license as a lib.licenses entry.
  licenseBySpdx = {MIT = lib.licenses.mit;};
  license =
    licenseBySpdx.${cargoToml.workspace.package.license}
    or (throw "nix/rust.nix: add Cargo.toml's license ${cargoToml.workspace.package.license} to licenseBySpdx");
  packages = builtins.mapAttrs mkBinary binaries;
in {
  inherit packages src cargoArtifacts;
  # The flake's package names: the crate names it always had (pika-cli builds `pika`).
  flakePackages = {
    inherit (packages) pika-server pikaci pika-roles pika-guest;
    pika-cli = packages.pika;
  };

  checks = {
    cargo-clippy = craneLib.cargoClippy (common
      // {
        inherit cargoArtifacts;
        cargoClippyExtraArgs = "--all-targets -- -D warnings";
      });
    # Ignored tests need a real incusd; they run in scripts/test.sh.
    cargo-test = craneLib.cargoTest (common
      // {
        inherit cargoArtifacts;
        # crates/pika-runtime's convention tests parse every binary's completions with these
        # shells and give the binaries a terminal with util-linux's `script`; jerichoci's snapshot
        # tests build snapshots of scratch git repositories (snapshots are `git ls-files`).
        # scripts/tests/15-rust-sandbox.sh runs the tests with exactly this much: git only if listed.
        nativeBuildInputs = [pkgs.zsh pkgs.fish pkgs.util-linux pkgs.git];
      });
    cargo-fmt = craneLib.cargoFmt {inherit (common) src pname version;};
    roles-generated-fresh = pkgs.runCommand "roles-generated-fresh" {} ''
      cd ${src}
      ${lib.getExe packages.pika-roles} check
      touch "$out"
    '';
  };
}
