# Stub declarations of the NixOS options that the guest and server modules (ours and NixOS's Incus
# guest modules from ../shared/nixpkgs-subset) set or read, for the evaluation tests only: full
# NixOS cannot be fetched here. Each has the type and default of the real option (file named per
# group, in NixOS/nixpkgs nixos/modules/); merge conflicts and type errors surface exactly as on
# NixOS. Submodules declare the fields our modules use. Nothing here is a Pika option.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  bool = default:
    mkOption {
      type = types.bool;
      inherit default;
    };
  enable = bool false;
  listOfStr = mkOption {
    type = types.listOf types.str;
    default = [];
  };
  lines = mkOption {
    type = types.lines;
    default = "";
  };
  # systemd unit sections (system/boot/systemd-lib.nix `unitOption`): values merge like NixOS's.
  unitSection = mkOption {
    type = types.attrsOf types.anything;
    default = {};
  };
  unitModule = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      serviceConfig = unitSection;
      unitConfig = unitSection;
      pathConfig = unitSection;
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [types.str types.path types.package]));
        default = {};
      };
      path = mkOption {
        type = types.listOf (types.oneOf [types.package types.str]);
        default = [];
      };
      wantedBy = listOfStr;
      wants = listOfStr;
      after = listOfStr;
      description = mkOption {
        type = types.str;
        default = "";
      };
    };
  };
in {
  options = {
    # misc/assertions.nix
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [];
    };
    warnings = listOfStr;
    # misc/meta.nix (never forced here: lib.teams is not in the lib subset)
    meta = mkOption {
      type = types.attrsOf types.raw;
      default = {};
    };

    # system/activation/top-level.nix, system/build.nix
    system.build = mkOption {
      type = types.submoduleWith {modules = [{freeformType = types.lazyAttrsOf (types.uniq types.unspecified);}];};
      default = {};
    };
    system.stateVersion = mkOption {type = types.str;};
    system.activationScripts = mkOption {
      type = types.attrsOf (types.either types.str (types.attrsOf types.anything));
      default = {};
    };
    # misc/label.nix, misc/version.nix
    system.nixos.tags = listOfStr;
    system.nixos.label = mkOption {
      type = types.strMatching "[a-zA-Z0-9:_\\.-]*";
      default = "26.05";
    };

    # misc/documentation.nix
    documentation = {
      enable = bool true;
      doc.enable = bool true;
      info.enable = bool true;
      man.enable = bool true;
      nixos.enable = bool true;
    };

    # config/system-path.nix, config/stub-ld.nix
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [];
    };
    environment.defaultPackages = mkOption {
      type = types.listOf types.package;
      default = [pkgs.perl pkgs.rsync pkgs.strace];
    };
    environment.stub-ld.enable = bool true;
    # programs/command-not-found/command-not-found.nix, programs/fish.nix
    programs.command-not-found.enable = bool true;
    programs.fish.generateCompletions = bool true;
    # services/logging/logrotate.nix, services/hardware/udisks2.nix, config/xdg/*.nix
    services.logrotate.enable = bool true;
    services.udisks2.enable = enable;
    xdg = {
      autostart.enable = bool true;
      icons.enable = bool true;
      mime.enable = bool true;
      sounds.enable = bool true;
    };

    # services/networking/ssh/sshd.nix
    services.openssh = {
      enable = enable;
      startWhenNeeded = enable;
      settings = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options = {
            PasswordAuthentication = bool true;
            PermitRootLogin = mkOption {
              type = types.enum ["yes" "without-password" "prohibit-password" "forced-commands-only" "no"];
              default = "prohibit-password";
            };
          };
        };
        default = {};
      };
    };
    # services/ttys/getty.nix, hardware/udev.nix, system/boot/journald.nix
    services.getty.helpLine = lines;
    services.udev.extraRules = lines;
    services.journald.storage = mkOption {
      type = types.enum ["persistent" "volatile" "auto" "none"];
      default = "persistent";
    };

    # config/users-groups.nix
    users.users = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          isSystemUser = enable;
          isNormalUser = enable;
          group = mkOption {
            type = types.str;
            default = "";
          };
          extraGroups = listOfStr;
          home = mkOption {
            type = types.passwdEntry types.path;
            default = "/var/empty";
          };
          createHome = enable;
          shell = mkOption {
            type = types.nullOr (types.either types.shellPackage (types.passwdEntry types.path));
            default = pkgs.shadow;
          };
          initialHashedPassword = mkOption {
            type = types.nullOr (types.passwdEntry types.str);
            default = null;
          };
          hashedPassword = mkOption {
            type = types.nullOr (types.passwdEntry types.str);
            default = null;
          };
          uid = mkOption {
            type = types.nullOr types.int;
            default = null;
          };
        };
      });
      default = {};
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule {
        options.members = listOfStr;
        options.gid = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
      });
      default = {};
    };
    users.mutableUsers = bool true;

    # system/boot/systemd.nix, system/boot/systemd/tmpfiles.nix, system/boot/networkd.nix
    systemd.services = mkOption {
      type = types.attrsOf unitModule;
      default = {};
    };
    systemd.paths = mkOption {
      type = types.attrsOf unitModule;
      default = {};
    };
    systemd.packages = mkOption {
      type = types.listOf types.package;
      default = [];
    };
    systemd.additionalUpstreamSystemUnits = listOfStr;
    systemd.tmpfiles.rules = listOfStr;
    systemd.network.enable = enable;
    systemd.network.networks = mkOption {
      type = types.attrsOf (types.submodule {
        freeformType = types.attrsOf types.anything;
        options = {
          matchConfig = unitSection;
          networkConfig = unitSection;
          linkConfig = unitSection;
        };
      });
      default = {};
    };

    # tasks/network-interfaces.nix
    networking = {
      useNetworkd = enable;
      useDHCP = bool true;
      hostName = mkOption {
        type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
        default = "nixos";
      };
      # services/networking/firewall.nix, services/networking/nftables.nix
      firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [];
      };
      nftables.enable = enable;
    };

    # services/system/nix-daemon.nix (config/nix.nix): settings is a freeform Nix configuration.
    nix.settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf (types.nullOr (types.oneOf [types.bool types.int types.float types.str types.path types.package (types.listOf (types.oneOf [types.bool types.int types.str types.path]))]));
        options = {
          max-jobs = mkOption {
            type = types.either types.int (types.enum ["auto"]);
            default = "auto";
          };
          sandbox = mkOption {
            type = types.either types.bool (types.enum ["relaxed"]);
            default = true;
          };
          trusted-users = mkOption {
            type = types.listOf types.str;
            default = ["root"];
          };
        };
      };
      default = {};
    };
    nix.package = mkOption {
      type = types.package;
      default = pkgs.nix;
    };

    # system/boot/kernel.nix, system/boot/stage-1.nix, system/boot/loader/*, tasks/filesystems.nix
    boot = {
      isContainer = enable;
      postBootCommands = lines;
      kernelParams = listOfStr;
      growPartition = enable;
      initrd.availableKernelModules = listOfStr;
      initrd.kernelModules = listOfStr;
      initrd.systemd.enable = bool true;
      loader.systemd-boot.enable = enable;
      loader.grub.device = mkOption {
        type = types.str;
        default = "";
      };
      tmp.cleanOnBoot = enable;
    };
    fileSystems = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          device = mkOption {
            type = types.nullOr types.nonEmptyStr;
            default = null;
          };
          fsType = mkOption {
            type = types.nonEmptyStr;
            default = "auto";
          };
          autoResize = enable;
        };
      });
      default = {};
    };

    # virtualisation/incus-agent.nix
    virtualisation.incus.agent.enable = enable;
  };

  # config/users-groups.nix warns when a user has more than one password option set (of those
  # declared here); with mutable users the initial ones count too.
  config.warnings = let
    cfg = config.users;
    passwordOptions = ["hashedPassword"] ++ lib.optionals cfg.mutableUsers ["initialHashedPassword"];
  in
    lib.concatMap (user:
      lib.optional (1 < builtins.length (builtins.filter (o: user.${o} != null) passwordOptions))
      "The user '${user.name}' has multiple of the options `initialHashedPassword`, `hashedPassword`, `initialPassword`, `password` & `hashedPasswordFile` set to a non-null value.")
    (lib.mapAttrsToList (name: user: user // {inherit name;}) cfg.users);
}
