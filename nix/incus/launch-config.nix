# A role's Incus launch config in Nix: the same keys and values as the Rust
# `IncusGuestRole::launch_config` (crates/pika-incus-guest-role/src/contract.rs): limits.cpu,
# limits.memory in MiB, security.secureboot=false for a VM role that is not Secure Boot capable,
# then the role's instance config (which wins).
#
#   import ./launch-config.nix role   # role: an entry of the registry (nix/incus/roles.nix)
role:
{
  "limits.cpu" = toString role.cpu;
  "limits.memory" = "${toString role.memoryMib}MiB";
}
// (
  if role.instanceType == "virtual-machine" && !role.secureBoot
  then {"security.secureboot" = "false";}
  else {}
)
// role.instanceConfig
