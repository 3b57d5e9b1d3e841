# The systemd sandbox every long-running Pika service gets: the guest daemons of the role images
# (nix/incus/roles/*.nix) and pika-server on the host (nix/modules/pika-server.nix). One definition,
# so a tightening reaches both; a unit adds only what it needs on top (User, StateDirectory, ...).
#
# Left out on purpose: MemoryDenyWriteExecute (the OpenClaw gateway is Node.js, whose JIT needs W+X
# pages) and SystemCallFilter (a filter tuned for one daemon breaks the other's runtime).
{
  NoNewPrivileges = true;
  # The whole file system is read-only except the unit's StateDirectory / RuntimeDirectory /
  # ReadWritePaths; a relative state path would therefore resolve into a read-only /.
  ProtectSystem = "strict";
  ProtectHome = true;
  PrivateTmp = true;
  PrivateDevices = true;
  ProtectKernelTunables = true;
  ProtectKernelModules = true;
  ProtectKernelLogs = true;
  ProtectControlGroups = true;
  ProtectClock = true;
  ProtectHostname = true;
  RestrictNamespaces = true;
  RestrictRealtime = true;
  RestrictSUIDSGID = true;
  LockPersonality = true;
  # Unix sockets (the local Incus API) and IP; nothing else.
  RestrictAddressFamilies = ["AF_UNIX" "AF_INET" "AF_INET6"];
  CapabilityBoundingSet = [""];
  UMask = "0077";
}
