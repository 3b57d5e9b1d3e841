# NixOS module for pika-server, the agent API server that provisions Incus guests.
#
# `services.pika-server.incus.guestRole` is typed from the role registry (roles.toml via
# nix/incus/roles.nix): a role that does not exist fails at evaluation, listing the valid IDs.
# The server reads its settings from PIKA_* environment variables; unset options emit no
# variable, so the server's own defaults apply (e.g. the role's default image alias).
{
  config,
  lib,
  ...
}: let
  cfg = config.services.pika-server;
  inherit (import ../incus/registry.nix {repoRoot = ../..;}) roleIds registry;
  # Documentation examples come from the registry too: no role fact is typed here.
  exampleRole = builtins.head roleIds;

  # Variables whose option is null are left out.
  optionalEnv = name: value: lib.optionalAttrs (value != null) {${name} = toString value;};
  # Allow-lists are comma-separated; empty lists emit no variable (only the defaults are allowed).
  listEnv = name: values: lib.optionalAttrs (values != []) {${name} = lib.concatStringsSep "," values;};

  environment =
    {
      PIKA_SERVER_LISTEN = cfg.listen;
      PIKA_SERVER_DB = cfg.database;
    }
    // optionalEnv "PIKA_SERVER_TOKENS_FILE" cfg.tokensFile
    // optionalEnv "PIKA_AGENT_INCUS_ENDPOINT" cfg.incus.endpoint
    // optionalEnv "PIKA_AGENT_INCUS_PROJECT" cfg.incus.project
    // optionalEnv "PIKA_AGENT_INCUS_PROFILE" cfg.incus.profile
    // optionalEnv "PIKA_AGENT_INCUS_STORAGE_POOL" cfg.incus.storagePool
    // optionalEnv "PIKA_AGENT_INCUS_GUEST_ROLE" cfg.incus.guestRole
    // optionalEnv "PIKA_AGENT_INCUS_IMAGE_ALIAS" cfg.incus.imageAlias
    // lib.optionalAttrs cfg.incus.insecureTls {PIKA_AGENT_INCUS_INSECURE_TLS = "true";}
    // optionalEnv "PIKA_AGENT_INCUS_CLIENT_CERT_PATH" cfg.incus.clientCertPath
    // optionalEnv "PIKA_AGENT_INCUS_CLIENT_KEY_PATH" cfg.incus.clientKeyPath
    // optionalEnv "PIKA_AGENT_INCUS_SERVER_CERT_PATH" cfg.incus.serverCertPath
    // listEnv "PIKA_AGENT_INCUS_ALLOWED_ENDPOINTS" cfg.incus.allowed.endpoints
    // listEnv "PIKA_AGENT_INCUS_INSECURE_TLS_ENDPOINTS" cfg.incus.allowed.insecureTlsEndpoints
    // listEnv "PIKA_AGENT_INCUS_ALLOWED_PROJECTS" cfg.incus.allowed.projects
    // listEnv "PIKA_AGENT_INCUS_ALLOWED_PROFILES" cfg.incus.allowed.profiles
    // listEnv "PIKA_AGENT_INCUS_ALLOWED_STORAGE_POOLS" cfg.incus.allowed.storagePools
    // listEnv "PIKA_AGENT_INCUS_ALLOWED_IMAGE_ALIASES" cfg.incus.allowed.imageAliases
    // {
      PIKA_AGENT_GATEWAY_LISTEN_ADDRESS = cfg.gateway.listenAddress;
      PIKA_AGENT_GATEWAY_PORTS = cfg.gateway.ports;
    }
    // lib.optionalAttrs (cfg.poolSize != {}) {
      PIKA_AGENT_POOL_SIZE = lib.concatStringsSep "," (lib.mapAttrsToList (role: size: "${role}=${toString size}") cfg.poolSize);
    }
    # The model keys reach the service as a systemd credential (%d: its credentials directory).
    // lib.optionalAttrs (cfg.modelEnvironmentFile != null) {PIKA_AGENT_MODEL_ENV_FILE = "%d/${modelEnvCredential}";}
    // cfg.extraEnvironment;
  modelEnvCredential = "model-env";

  allowList = what: variable:
    lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [];
      description = ''
        Further ${what} a token holder may name in a request (${variable}, exact names, no
        wildcards). Requests may always use the configured default; anything else is refused
        with 403 before any Incus call.
      '';
    };

  # Port of `listen` ("host:port", "[v6]:port"), for openFirewall.
  listenPort = lib.toInt (lib.last (lib.splitString ":" cfg.listen));
  isHttps = cfg.incus.endpoint != null && lib.hasPrefix "https://" cfg.incus.endpoint;
  stateDirectory = "/var/lib/pika-server";

  nullOrStr = description:
    lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      inherit description;
    };
  str = default: description:
    lib.mkOption {
      type = lib.types.str;
      inherit default description;
    };
in {
  options.services.pika-server = {
    enable = lib.mkEnableOption "pika-server, the Pika agent API server";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The pika-server package (the flake's nixosModules.pika-server sets it to packages.<system>.pika-server).";
    };

    listen = str "127.0.0.1:8080" "Address and port the server listens on (PIKA_SERVER_LISTEN).";

    database = str "${stateDirectory}/pika-server.db" "SQLite database file (PIKA_SERVER_DB); the default lives in the service's state directory.";

    tokensFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/secrets/pika-server-tokens";
      description = "File with the API tokens (PIKA_SERVER_TOKENS_FILE). A path outside the Nix store: it holds secrets.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the TCP port of `listen` in the firewall (networking.firewall.allowedTCPPorts).";
    };

    gateway = {
      listenAddress = str "127.0.0.1" "Host address each agent's Incus proxy device listens on (PIKA_AGENT_GATEWAY_LISTEN_ADDRESS); the owner reaches the agent's gateway there. Loopback by default: only this host.";
      ports = lib.mkOption {
        type = lib.types.str;
        default = "18800-18999";
        example = "20000-20999";
        description = "Host ports of the agents' proxy devices, FIRST-LAST (PIKA_AGENT_GATEWAY_PORTS): one per agent; when all are taken a create answers 503 and creates nothing.";
      };
    };

    poolSize = lib.mkOption {
      type = lib.types.attrsOf lib.types.ints.unsigned;
      default = {};
      example = {managed-openclaw = 4;};
      description = ''
        Warm pool per guest role (PIKA_AGENT_POOL_SIZE): how many launched, ready, unclaimed guests
        of the role the server keeps in its configured target, so `POST /v1/agents` claims one
        instead of launching. Each member holds a gateway port. Empty or 0: no pool. The server
        refuses a role the registry does not know.
      '';
    };

    modelEnvironmentFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/secrets/pika-model.env";
      description = ''
        The model providers' environment (`KEY=VALUE` lines such as `ANTHROPIC_API_KEY=...`), delivered
        into every agent's gateway configuration. A path outside the Nix store (it holds secrets); it
        may be readable by root only: systemd hands it to the service as a credential (LoadCredential)
        and PIKA_AGENT_MODEL_ENV_FILE points there.
      '';
    };

    extraEnvironment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = {};
      description = "Further environment variables for the service (e.g. RUST_LOG).";
    };

    incus = {
      endpoint = nullOrStr "Incus API endpoint (PIKA_AGENT_INCUS_ENDPOINT), e.g. `https://incus.example:8443`; null uses the local unix socket.";
      project = nullOrStr "Incus project for the guests (PIKA_AGENT_INCUS_PROJECT); null uses the server's default.";
      profile = nullOrStr "Incus profile for the guests (PIKA_AGENT_INCUS_PROFILE); null uses the server's default.";
      storagePool = nullOrStr "Incus storage pool for the guests (PIKA_AGENT_INCUS_STORAGE_POOL); null uses the server's default.";

      guestRole = lib.mkOption {
        type = lib.types.nullOr (lib.types.enum roleIds);
        default = null;
        example = exampleRole;
        description = ''
          Incus guest role the server provisions (PIKA_AGENT_INCUS_GUEST_ROLE): one of the role IDs
          in roles.toml (${lib.concatStringsSep ", " roleIds}). Null leaves the choice to the server.
        '';
      };

      imageAlias = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = registry.${exampleRole}.defaultAlias;
        description = ''
          Incus image alias for new guests (PIKA_AGENT_INCUS_IMAGE_ALIAS). Null (the usual setting)
          uses the guest role's default alias from roles.toml.
        '';
      };

      insecureTls = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Skip verification of the Incus server certificate (PIKA_AGENT_INCUS_INSECURE_TLS=true). Development only.";
      };

      clientCertPath = nullOrStr "TLS client certificate for the Incus endpoint (PIKA_AGENT_INCUS_CLIENT_CERT_PATH).";
      clientKeyPath = nullOrStr "TLS client key for the Incus endpoint (PIKA_AGENT_INCUS_CLIENT_KEY_PATH); keep it outside the Nix store.";
      serverCertPath = nullOrStr "Pinned Incus server certificate (PIKA_AGENT_INCUS_SERVER_CERT_PATH).";

      # Token holders are tenants: by default they may use only the settings above.
      allowed = {
        endpoints = allowList "Incus endpoints (https://HOST[:PORT])" "PIKA_AGENT_INCUS_ALLOWED_ENDPOINTS";
        insecureTlsEndpoints = allowList "endpoints used with insecure_tls (each must also be allowed)" "PIKA_AGENT_INCUS_INSECURE_TLS_ENDPOINTS";
        projects = allowList "Incus projects" "PIKA_AGENT_INCUS_ALLOWED_PROJECTS";
        profiles = allowList "Incus profiles" "PIKA_AGENT_INCUS_ALLOWED_PROFILES";
        storagePools = allowList "storage pools" "PIKA_AGENT_INCUS_ALLOWED_STORAGE_POOLS";
        imageAliases = allowList "image aliases" "PIKA_AGENT_INCUS_ALLOWED_IMAGE_ALIASES";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        # The unit runs with ProtectSystem=strict and WorkingDirectory=/ : a relative path would
        # land in the read-only root.
        assertion = lib.hasPrefix "/" cfg.database;
        message = "services.pika-server.database must be an absolute path (got `${cfg.database}`): under ProtectSystem=strict a relative path resolves into the read-only /; the default lives in ${stateDirectory}.";
      }
      {
        assertion = cfg.tokensFile == null || lib.hasPrefix "/" cfg.tokensFile;
        message = "services.pika-server.tokensFile must be an absolute path (got `${toString cfg.tokensFile}`).";
      }
      {
        # Incus authenticates HTTPS clients by their certificate; without one every request fails.
        assertion = !isHttps || (cfg.incus.clientCertPath != null && cfg.incus.clientKeyPath != null);
        message = "services.pika-server.incus.endpoint is HTTPS (${toString cfg.incus.endpoint}): set services.pika-server.incus.clientCertPath and clientKeyPath (the client certificate Incus trusts).";
      }
      {
        assertion = cfg.modelEnvironmentFile == null || lib.hasPrefix "/" cfg.modelEnvironmentFile;
        message = "services.pika-server.modelEnvironmentFile must be an absolute path (got `${toString cfg.modelEnvironmentFile}`).";
      }
      {
        assertion = builtins.match "[0-9]+(-[0-9]+)?" cfg.gateway.ports != null;
        message = "services.pika-server.gateway.ports must be FIRST-LAST (got `${cfg.gateway.ports}`).";
      }
      {
        assertion = builtins.match "(.*:)?[0-9]+" cfg.listen != null;
        message = "services.pika-server.listen must be HOST:PORT (got `${cfg.listen}`).";
      }
    ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [listenPort];

    users.groups.pika-server = {};
    users.users.pika-server = {
      isSystemUser = true;
      group = "pika-server";
      # The local Incus socket is open to the incus-admin group.
      extraGroups = lib.optional (cfg.incus.endpoint == null) "incus-admin";
    };

    systemd.services.pika-server = {
      description = "Pika agent API server";
      wantedBy = ["multi-user.target"];
      wants = ["network-online.target"];
      after = ["network-online.target"] ++ lib.optional (cfg.incus.endpoint == null) "incus.service";
      inherit environment;
      serviceConfig =
        import ../lib/systemd-hardening.nix
        // {
          ExecStart = "${lib.getExe cfg.package} serve";
          User = "pika-server";
          Group = "pika-server";
          StateDirectory = "pika-server";
          Restart = "on-failure";
          RestartSec = 5;
          LoadCredential = lib.optional (cfg.modelEnvironmentFile != null) "${modelEnvCredential}:${cfg.modelEnvironmentFile}";
          # A database outside the state directory must stay writable under ProtectSystem=strict.
          ReadWritePaths = lib.optional (!lib.hasPrefix "${stateDirectory}/" cfg.database) (builtins.dirOf cfg.database);
        };
    };
  };
}
