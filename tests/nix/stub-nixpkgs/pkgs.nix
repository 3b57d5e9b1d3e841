# Stub `pkgs` (see ./flake.nix for why a stub): derivations are built by /bin/sh with the host's
# tools on PATH, so `nix-build` works offline. Only the attributes the repository uses exist.
{
  lib,
  system,
}: let
  # Host tool locations: the test machines are Debian; alejandra is `cargo install`ed to root's
  # cargo bin by scripts/tests/40-nix.sh.
  hostPath = "/root/.cargo/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

  runCommand = name: env: script: let
    passthru = env.passthru or {};
    drv = derivation (
      builtins.removeAttrs env ["passthru" "meta" "nativeBuildInputs" "buildInputs"]
      // {
        inherit name system;
        builder = "/bin/sh";
        args = ["-c" script];
        PATH = hostPath;
      }
    );
  in
    drv // passthru // {meta = env.meta or {};};

  # A package that stands for a host tool (for devShells and nativeBuildInputs).
  hostTool = name: bin:
    runCommand name {meta.mainProgram = bin;} ''
      set -eu
      mkdir -p "$out/bin"
      tool="$(command -v ${bin})" || { echo "stub pkgs: host tool ${bin} not found" >&2; exit 1; }
      ln -s "$tool" "$out/bin/${bin}"
    '';

  # Stands for a package the stub cannot build; building it fails with a message.
  unbuildable = name:
    runCommand name {} ''
      echo "stub nixpkgs cannot build ${name} (nixpkgs is not available on this machine)" >&2
      exit 1
    '';
  placeholder = name: unbuildable name // {pname = name;};
in {
  inherit system lib runCommand;
  path = ./.;
  stdenv.buildPlatform = {
    inherit system;
    canExecute = platform: platform.system == system;
  };
  stdenv.hostPlatform = {
    inherit system;
    isx86 = system == "x86_64-linux";
    efiArch =
      if system == "x86_64-linux"
      then "x64"
      else "aa64";
  };

  # pkgs/build-support/trivial-builders/default.nix: a directory of links named by each drv's name.
  linkFarmFromDrvs = name: drvs:
    runCommand name {paths = map (drv: "${drv.name}=${drv}") drvs;} ''
      mkdir -p "$out"
      for entry in $paths; do ln -s "''${entry#*=}" "$out/''${entry%%=*}"; done
    '';

  # pkgs/build-support/testers/default.nix `testers.runNixOSTest` (nixos/lib/testing/): the test
  # module evaluated with the options our tests set, typed as nixos/lib/testing/ types them
  # (name.nix `name`: str; nodes.nix `nodes`: an attribute set of NixOS modules, default {};
  # testScript.nix `testScript`: either str (functionTo str)); the result is named as run.nix
  # names it (vm-test-run-<name>). Building it needs NixOS and KVM: it fails here.
  testers.runNixOSTest = testModule: let
    testOptions = {
      options = {
        name = lib.mkOption {type = lib.types.str;};
        nodes = lib.mkOption {
          type = lib.types.attrsOf lib.types.deferredModule;
          default = {};
        };
        testScript = lib.mkOption {type = lib.types.either lib.types.str (lib.types.functionTo lib.types.str);};
      };
    };
    inherit (lib.evalModules {modules = [testOptions testModule];}) config;
    testScript =
      if builtins.isFunction config.testScript
      then config.testScript {inherit (config) nodes;}
      else config.testScript;
  in
    unbuildable "vm-test-run-${config.name}"
    // {
      inherit (config) nodes;
      inherit testScript;
    };

  writeText = name: text:
    runCommand name {inherit text;} ''printf '%s' "$text" > "$out"'';

  mkShell = args:
    runCommand "stub-shell" {packages = args.packages or [];} ''echo "stub shell: $packages" > "$out"'';

  alejandra = hostTool "alejandra" "alejandra";
  shellcheck = hostTool "shellcheck" "shellcheck";
  incus = hostTool "incus" "incus";
  cargo = hostTool "cargo" "cargo";
  rustc = hostTool "rustc" "rustc";
  clippy = hostTool "clippy" "cargo-clippy";
  rustfmt = hostTool "rustfmt" "rustfmt";
  gnutar = hostTool "gnutar" "tar";
  xz = hostTool "xz" "xz";
  qemu-utils = hostTool "qemu-utils" "qemu-img";
  squashfsTools = hostTool "squashfs-tools" "mksquashfs";
  jq = hostTool "jq" "jq";
  # What the Rust test check needs beside cargo (never built here: the stub crane does not build).
  zsh = placeholder "zsh";
  fish = placeholder "fish";
  util-linux = placeholder "util-linux";

  # Packages the guest modules list (placeholders: evaluated by tests/nix/guest-eval.nix,
  # never built).
  bash = placeholder "bash" // {shellPath = "/bin/bash";};
  coreutils = placeholder "coreutils";
  curl = placeholder "curl";
  findutils = placeholder "findutils";
  git = placeholder "git";
  gnugrep = placeholder "gnugrep";
  gnumake = placeholder "gnumake";
  gnused = placeholder "gnused";
  gzip = placeholder "gzip";
  nix = placeholder "nix";
  openssh = placeholder "openssh";
  rsync = placeholder "rsync";
  zstd = placeholder "zstd";
  gcc = placeholder "gcc";
  clang = placeholder "clang";
  pkg-config = placeholder "pkg-config";

  # nixpkgs packages an operator sandbox role lists (pkgs/by-name: pi-coding-agent's program is `pi`).
  pi-coding-agent = placeholder "pi-coding-agent" // {meta.mainProgram = "pi";};
  opencode = placeholder "opencode";
  tmux = placeholder "tmux";
  ripgrep = placeholder "ripgrep";
  just = placeholder "just";

  # Packages NixOS's own modules reference (defaults and the Incus guest modules); never built.
  perl = placeholder "perl";
  strace = placeholder "strace";
  shadow = placeholder "shadow" // {shellPath = "/bin/nologin";};
  distrobuilder = placeholder "distrobuilder" // {generator = placeholder "distrobuilder-generator";};

  # nixpkgs ships no role payload (openclaw-gateway, pikachat): the flake takes them from its
  # nix-openclaw and pika inputs, stubbed by tests/nix/stub-inputs/. Nothing of the kind is here.

  # Build helper the Rust packages use (a setup hook in nixpkgs; never built here).
  installShellFiles = placeholder "installShellFiles";
}
