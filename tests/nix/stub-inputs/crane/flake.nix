# Stub of github:ipetkov/crane for the offline tests (no network, no nixpkgs stdenv here):
#   --override-input crane path:tests/nix/stub-inputs/crane
# `mkLib pkgs` gives the functions this repository calls, with crane's names and arguments. Their
# derivations evaluate (so `nix flake check --no-build` sees every package and check) but refuse to
# build: cargo runs in suite 10-rust instead. Each records what it was given (passthru.craneArgs),
# so the tests can check that every binary shares one dependency build and what the source keeps.
# filterCargoSources is crane's own rule (lib/filterCargoSources.nix), not an approximation.
{
  description = "Stub crane (tests only)";
  outputs = {self}: {
    mkLib = pkgs: let
      unbuildable = kind: args: let
        name = "${args.pname or "crate"}-${kind}";
      in
        # Like crane's derivations, this one depends on its source and dependency artifact.
        pkgs.runCommand name ({
            passthru.craneArgs = args;
            meta = args.meta or {};
          }
          // builtins.intersectAttrs {
            src = null;
            cargoArtifacts = null;
          }
          args) ''
          echo "stub crane cannot run cargo (${kind} of ${name}); suite 10-rust does" >&2
          exit 1
        '';
      needsSrc = kind: args:
        if args ? src
        then unbuildable kind args
        else throw "crane ${kind}: `src` is required";
      # Like crane: without cargoArtifacts, a package builds its own dependencies first.
      withDeps = kind: args:
        needsSrc kind ({cargoArtifacts = needsSrc "deps" args;} // args);
    in {
      filterCargoSources = origPath: type: let
        path = toString origPath;
        base = baseNameOf path;
        parentDir = baseNameOf (dirOf path);
        matchesSuffix = builtins.any (suffix: pkgs.lib.hasSuffix suffix base) [".rs" ".toml"];
      in
        type == "directory" || matchesSuffix || base == "Cargo.lock" || (parentDir == ".cargo" && base == "config");
      buildDepsOnly = needsSrc "deps";
      buildPackage = withDeps "package";
      cargoClippy = withDeps "clippy";
      cargoTest = withDeps "test";
      cargoFmt = needsSrc "fmt";
    };
  };
}
