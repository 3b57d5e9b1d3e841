# The NixOS modules of one role's guest, composed the same way everywhere: the image builder
# (./guest-image-package.nix) and the real-nixpkgs evaluation tests (tests/nix/guest-eval.nix).
#
#   NixOS's own Incus guest module for the role's instance type (incus-virtual-machine.nix or
#   lxc-container.nix, from `modulesPath`), the shared ./base.nix, the role's facts as
#   `pika.guestRole`, then the role's own modules (roles.toml `modules`, nix/incus/roles/<id>.nix).
#
#   import ./guest-modules.nix role   # role: an entry of the registry (nix/incus/roles.nix)
role: let
  incusGuestModules = {
    virtual-machine = "/virtualisation/incus-virtual-machine.nix";
    container = "/virtualisation/lxc-container.nix";
  };
  incusGuestModule =
    incusGuestModules.${role.instanceType}
    or (throw "role ${role.id}: instance type `${role.instanceType}` is not one of ${builtins.concatStringsSep ", " (builtins.attrNames incusGuestModules)}");
in
  [
    # `modulesPath + ...`, not "${modulesPath}...": a path stays a path (no copy to the store).
    ({modulesPath, ...}: {imports = [(modulesPath + incusGuestModule)];})
    ./base.nix
    {
      pika.guestRole = {
        inherit (role) id readiness mounts;
        user = role.user or null;
        servicePort = role.servicePort or null;
      };
    }
  ]
  ++ role.modules
