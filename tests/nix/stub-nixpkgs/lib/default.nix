# Stub of nixpkgs' `lib` (see ../flake.nix for why a stub): the handful of functions the
# repository uses, with nixpkgs' names and meaning, plus `nixosSystem` (a placeholder that
# checks the guest modules' arguments) and a small `evalModules` (./modules.nix).
{}: let
  inherit (builtins) attrNames concatMap elem filter foldl' listToAttrs;
  lib = rec {
    inherit (builtins) attrValues concatStringsSep elem head isAttrs isList isString mapAttrs toJSON;

    # lib/licenses.nix (the one license the repository names) and lib/systems/doubles.nix's
    # `linux`, with the real values (as `import nixpkgs-subset/lib` gives them).
    licenses.mit = {
      deprecated = false;
      free = true;
      fullName = "MIT License";
      licenseType = "simple";
      redistributable = true;
      shortName = "mit";
      spdxId = "MIT";
      url = "https://spdx.org/licenses/MIT.html";
    };
    platforms.linux = [
      "aarch64-linux"
      "arc-linux"
      "armv5tel-linux"
      "armv6l-linux"
      "armv7a-linux"
      "armv7l-linux"
      "i686-linux"
      "loongarch64-linux"
      "m68k-linux"
      "sh4-linux"
      "microblaze-linux"
      "microblazeel-linux"
      "mips-linux"
      "mips64-linux"
      "mips64el-linux"
      "mipsel-linux"
      "powerpc-linux"
      "powerpc64-linux"
      "powerpc64le-linux"
      "riscv32-linux"
      "riscv64-linux"
      "s390-linux"
      "s390x-linux"
      "x86_64-linux"
    ];

    genAttrs = names: f: listToAttrs (map (name: nameValuePair name (f name)) names);
    nameValuePair = name: value: {inherit name value;};
    filterAttrs = pred: set:
      listToAttrs (concatMap (name: let
        v = set.${name};
      in
        if pred name v
        then [(nameValuePair name v)]
        else []) (attrNames set));
    mapAttrs' = f: set: listToAttrs (map (name: f name set.${name}) (attrNames set));
    mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
    concatMapAttrs = f: set: foldl' (acc: name: acc // f name set.${name}) {} (attrNames set);
    optional = cond: x:
      if cond
      then [x]
      else [];
    optionals = cond: xs:
      if cond
      then xs
      else [];
    optionalAttrs = cond: set:
      if cond
      then set
      else {};
    optionalString = cond: s:
      if cond
      then s
      else "";
    unique = foldl' (acc: x:
      if elem x acc
      then acc
      else acc ++ [x]) [];
    escapeShellArg = arg: "'${builtins.replaceStrings ["'"] ["'\\''"] (toString arg)}'";
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
    getExe = pkg: "${pkg}/bin/${pkg.meta.mainProgram or pkg.pname or pkg.name}";
    getExe' = pkg: exe: "${pkg}/bin/${exe}";
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    fileContents = file: builtins.readFile file;
    inherit (builtins) any all;
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    hasSuffix = suffix: s: let
      ls = builtins.stringLength s;
      lx = builtins.stringLength suffix;
    in
      lx <= ls && builtins.substring (ls - lx) lx s == suffix;
    removePrefix = prefix: s:
      if hasPrefix prefix s
      then builtins.substring (builtins.stringLength prefix) (builtins.stringLength s) s
      else s;
    attrByPath = path: default: set:
      if path == []
      then set
      else if isAttrs set && set ? ${head path}
      then attrByPath (builtins.tail path) default set.${head path}
      else default;

    inherit (import ./modules.nix {inherit lib;}) evalModules mkOption types mkDefault mkForce mkOverride;

    # nixosSystem placeholder: no NixOS here. It imports every module and checks that each one is
    # a module (function or attribute set) whose named arguments are all provided (standard module
    # arguments + specialArgs), then returns a `config` with the attributes the image builder
    # reads. The toplevel derivation records the module files and payloads, so a change in either
    # changes the image's derivation.
    nixosSystem = {
      system,
      modules,
      specialArgs ? {},
      ...
    }: let
      standardArgs = ["config" "lib" "pkgs" "options" "modulesPath" "utils" "specialArgs" "name"];
      provided = standardArgs ++ attrNames specialArgs;
      load = m:
        if builtins.isPath m || isString m
        then import m
        else m;
      checkModule = m: let
        mod = load m;
        formals = builtins.functionArgs mod;
        missing = filter (arg: !(elem arg provided) && !formals.${arg}) (attrNames formals);
      in
        if builtins.isFunction mod
        then
          if missing == []
          then true
          else throw "stub nixosSystem: module ${toString m} needs argument(s) ${toJSON missing} that are not provided (specialArgs: ${toJSON (attrNames specialArgs)})"
        else if isAttrs mod
        then true
        else throw "stub nixosSystem: ${toString m} is not a NixOS module";
      checked = foldl' (ok: m: builtins.seq (checkModule m) ok) true modules;
      pkgs = import ../pkgs.nix {inherit lib system;};
      toplevel = builtins.seq checked (pkgs.runCommand "nixos-system-stub-${system}" {
          moduleFiles = map (m:
            if builtins.isPath m
            then toString m
            else "<inline module>")
          modules;
          specialArgNames = attrNames specialArgs;
          payloads = map toString (builtins.filter (v: isAttrs v && v ? outPath) (builtins.attrValues specialArgs));
        } ''
          echo "stub NixOS system; modules: $moduleFiles; payloads: $payloads" > "$out"
        '');
    in {
      inherit pkgs;
      config = {
        system.nixos.release = "stub";
        system.build = {
          inherit toplevel;
          # Stand-in for lxc-container.nix's squashfs: a tiny rootfs made with the host's mksquashfs.
          squashfs = pkgs.runCommand "nixos-lxc-image-stub" {inherit toplevel;} ''
            set -eu
            mkdir -p root/etc "$out"
            echo "stub" > root/etc/pika-stub
            mksquashfs root "$out/nixos-lxc-image-${system}.img" -quiet -all-root -noappend \
              -mkfs-time 1 -all-time 1 >/dev/null
          '';
        };
      };
    };
  };
in
  lib
