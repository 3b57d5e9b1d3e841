# A small module system with the meaning of nixpkgs' `lib.evalModules`, for what the repository
# flake evaluates on the stub lib (see ../flake.nix for why a stub): the test module of
# `testers.runNixOSTest` (../pkgs.nix), and `mkDefault` in flake.nix's nixosModules (whose module
# the real lib evaluates: the representation is nixpkgs' own). The NixOS modules themselves are
# evaluated on the real lib (tests/nix/*-eval.nix), never here. It supports `imports`,
# `options`/`config` (or shorthand config), `mkOption` with `type` and `default`, `mkOverride` /
# `mkDefault` / `mkForce` on a definition, and the types below. Like nixpkgs it fails on a
# definition of an option that is not declared, on a value that does not match the option's type,
# and on conflicting definitions; an option without a type, or `mkIf`, fails here outright.
{lib}: let
  inherit (builtins) all attrNames concatMap concatStringsSep filter foldl' head isAttrs isFunction isPath isString length listToAttrs map toJSON;

  showPath = path: concatStringsSep "." path;

  mkOptionType = attrs:
    {
      _type = "option-type";
      merge = loc: values:
        if all (v: v == head values) values
        then head values
        else throw "The option `${showPath loc}' has conflicting definition values: ${toJSON values}";
    }
    // attrs;

  types = {
    str = mkOptionType {
      name = "str";
      description = "string";
      check = isString;
    };
    either = a: b:
      mkOptionType {
        name = "either";
        description = "${a.description} or ${b.description}";
        check = v: a.check v || b.check v;
        merge = loc: values:
          if all a.check values
          then a.merge loc values
          else if all b.check values
          then b.merge loc values
          else throw "The option `${showPath loc}' has definitions of both types of `${a.description} or ${b.description}'";
      };
    # Functions cannot be compared: one definition only.
    functionTo = t:
      mkOptionType {
        name = "functionTo";
        description = "function that evaluates to a(n) ${t.description}";
        check = isFunction;
        merge = loc: values:
          if length values == 1
          then head values
          else throw "The option `${showPath loc}' is defined more than once (function values do not merge here)";
      };
    # A module kept for a later evaluation (its definitions become `imports`).
    deferredModule = mkOptionType {
      name = "deferredModule";
      description = "module";
      check = v: isAttrs v || isFunction v || isPath v;
      merge = loc: values: {imports = values;};
    };
    attrsOf = t:
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${t.description}";
        check = v: isAttrs v && all (name: t.check v.${name}) (attrNames v);
        merge = mergeAttrValues t;
      };
  };

  # Merges attribute-set values by key with the element type's merge.
  mergeAttrValues = t: loc: values: let
    names = lib.unique (concatMap attrNames values);
  in
    listToAttrs (map (name: {
        inherit name;
        value = t.merge (loc ++ [name]) (concatMap (v: lib.optional (v ? ${name}) v.${name}) values);
      })
      names);

  mkOption = attrs: {_type = "option";} // attrs;

  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;

  isOption = v: isAttrs v && v._type or null == "option";

  # Definitions of one module's config, pushed down to option leaves.
  collectDefs = options: file: path: priority: v:
    if isAttrs v && v._type or null == "override"
    then collectDefs options file path v.priority v.content
    else let
      decl = lib.attrByPath path null options;
    in
      if isOption decl
      then [
        {
          inherit path priority file;
          value = v;
        }
      ]
      else if decl != null && isAttrs v
      then concatMap (name: collectDefs options file (path ++ [name]) priority v.${name}) (attrNames v)
      else throw "The option `${showPath path}' does not exist (defined in ${file}).";

  evalModules = {
    modules,
    specialArgs ? {},
  }: let
    load = file: m: let
      imported =
        if isPath m || isString m
        then import m
        else m;
      name =
        if isPath m || isString m
        then toString m
        else file;
      body =
        if isFunction imported
        then imported (specialArgs // {inherit config options lib;})
        else imported;
      structured = body ? options || body ? config || body ? imports;
    in
      [
        {
          file = name;
          options = body.options or {};
          config =
            if structured
            then body.config or {}
            else builtins.removeAttrs body ["_file" "key"];
        }
      ]
      ++ concatMap (load name) (body.imports or []);
    loaded = concatMap (load "<unknown-file>") modules;

    # Recursive union of the option declarations; an option declared twice is an error.
    mergeDecls = path: a: b:
      a
      // builtins.mapAttrs (name: bv:
        if a ? ${name}
        then
          if isOption bv || isOption a.${name}
          then throw "The option `${showPath (path ++ [name])}' is declared twice"
          else mergeDecls (path ++ [name]) a.${name} bv
        else bv)
      b;
    decls = foldl' (acc: m: mergeDecls [] acc m.options) {} loaded;

    defs = concatMap (m: collectDefs decls m.file [] 100 m.config) loaded;

    optionValue = path: decl: let
      mine = filter (d: d.path == path) defs;
      best =
        foldl' (p: d:
          if d.priority < p
          then d.priority
          else p)
        9999
        mine;
      chosen = filter (d: d.priority == best) mine;
      values = map (d: d.value) chosen;
      inherit (decl) type;
      value =
        if values != []
        then type.merge path values
        else if decl ? default
        then decl.default
        else throw "The option `${showPath path}' is used but not defined.";
    in
      if type.check value
      then value
      else throw "A definition for option `${showPath path}' is not of type `${type.description}'. Definition values: ${toJSON value}";

    build = path: node:
      if isOption node
      then optionValue path node
      else builtins.mapAttrs (name: sub: build (path ++ [name]) sub) node;

    config = build [] decls;
    options = decls;
  in {
    inherit config options;
  };
in {
  inherit evalModules mkOption types mkDefault mkForce mkOverride;
}
