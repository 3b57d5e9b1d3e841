# A small module system with the meaning of nixpkgs' `lib.evalModules`, for the module-eval tests
# (see ../flake.nix for why a stub: nixpkgs' lib cannot be fetched here). It supports what our
# modules use: `imports`, `options`/`config` (or shorthand config), `mkOption` with `type`,
# `default` and `description`, `mkIf` / `mkMerge` / `mkDefault` / `mkForce` anywhere in a
# definition, and the types below. Like nixpkgs it fails on a definition of an option that is
# not declared, on a value that does not match the option's type, and on conflicting definitions.
{lib}: let
  inherit (builtins) all any attrNames concatMap concatStringsSep elem filter foldl' head isAttrs isBool isFunction isInt isList isPath isString length listToAttrs map toJSON;

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

  # A type with no parts: a name, a description and a check (merging as every type does).
  leaf = name: description: check: mkOptionType {inherit name description check;};

  types = rec {
    str = leaf "str" "string" isString;
    nonEmptyStr = leaf "nonEmptyStr" "non-empty string" (v: isString v && builtins.match "[ \t\n]*" v == null);
    bool = leaf "bool" "boolean" isBool;
    int = leaf "int" "signed integer" isInt;
    port = leaf "port" "16 bit unsigned integer" (v: isInt v && v >= 0 && v <= 65535);
    path = leaf "path" "path" (v: isPath v || (isString v && builtins.substring 0 1 v == "/") || (isAttrs v && v ? outPath));
    package = leaf "package" "package" (v: (isAttrs v && v ? outPath) || isPath v);
    anything = mkOptionType {
      name = "anything";
      description = "anything";
      check = _: true;
      merge = loc: values:
        if all isAttrs values
        then mergeAttrValues anything loc values
        else if all isList values
        then concatMap (v: v) values
        else (mkOptionType {}).merge loc values;
    };
    enum = values:
      mkOptionType {
        name = "enum";
        description = "one of ${concatStringsSep ", " (map toJSON values)}";
        check = v: elem v values;
      };
    nullOr = t:
      mkOptionType {
        name = "nullOr";
        description = "null or ${t.description}";
        check = v: v == null || t.check v;
        merge = loc: values: let
          nonNull = filter (v: v != null) values;
        in
          if nonNull == []
          then null
          else if length nonNull == length values
          then t.merge loc values
          else throw "The option `${showPath loc}' is defined both null and not null";
      };
    listOf = t:
      mkOptionType {
        name = "listOf";
        description = "list of ${t.description}";
        check = v: isList v && all t.check v;
        merge = loc: values: concatMap (v: v) values;
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
  mkEnableOption = name:
    mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable ${name}.";
    };
  mkPackageOption = pkgs: name: _extra:
    mkOption {
      type = types.package;
      default = pkgs.${name};
      description = "The ${name} package to use.";
    };

  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;

  isOption = v: isAttrs v && v._type or null == "option";

  # Resolves mkIf / mkMerge / mkOverride inside a value of an option (e.g. in attrsOf values).
  absent = {_type = "absent";};
  resolve = v:
    if !(isAttrs v)
    then v
    else if v._type or null == "if"
    then
      if v.condition
      then resolve v.content
      else absent
    else if v._type or null == "override"
    then resolve v.content
    else if v._type or null == "merge"
    then let
      parts = filter (p: p != absent) (map resolve v.contents);
    in
      if parts == []
      then absent
      else types.anything.merge [] parts
    else if v ? outPath
    then v
    else lib.filterAttrs (_: x: x != absent) (builtins.mapAttrs (_: resolve) v);

  # Definitions of one module's config, pushed down to option leaves; conditions stay unevaluated
  # until the option's value is needed (as in nixpkgs, so `mkIf cfg.enable` does not recurse).
  collectDefs = options: file: path: conds: priority: v:
    if isAttrs v && v._type or null == "if"
    then collectDefs options file path (conds ++ [v.condition]) priority v.content
    else if isAttrs v && v._type or null == "merge"
    then concatMap (collectDefs options file path conds priority) v.contents
    else if isAttrs v && v._type or null == "override"
    then collectDefs options file path conds v.priority v.content
    else let
      decl = lib.attrByPath path null options;
    in
      if isOption decl
      then [
        {
          inherit path conds priority file;
          value = v;
        }
      ]
      else if decl != null && isAttrs v
      then concatMap (name: collectDefs options file (path ++ [name]) conds priority v.${name}) (attrNames v)
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

    defs = concatMap (m: collectDefs decls m.file [] [] 100 m.config) loaded;

    optionValue = path: decl: let
      mine = filter (d: d.path == path && all (c: c) d.conds) defs;
      best =
        foldl' (p: d:
          if d.priority < p
          then d.priority
          else p)
        9999
        mine;
      chosen = filter (d: d.priority == best) mine;
      values = filter (v: v != absent) (map (d: resolve d.value) chosen);
      type = decl.type or types.anything;
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
  inherit evalModules mkOption mkEnableOption mkPackageOption types mkIf mkMerge mkDefault mkForce mkOverride;
}
