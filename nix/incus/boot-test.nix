# The boot test of one role's image, on a machine with KVM (`nix flake check` builds it as part of
# checks.<system>.role-images-boot): a NixOS test VM runs Incus (as nixpkgs'
# nixos/tests/incus/container.nix and virtual-machine.nix do), imports the image this flake builds
# for the role, launches it with the role's launch config (the same keys as the Rust
# IncusGuestRole::launch_config: limits, Secure Boot off where the role says so, instance config)
# and waits for the role's readiness, probed inside the guest through `incus exec`.
#
#   import ./boot-test.nix { inherit pkgs; lib = nixpkgs.lib; } { role = registryEntry; image = rolePackage; }
{
  pkgs,
  lib,
}: {
  # The role's registry entry (nix/incus/roles.nix).
  role,
  # The role's image package (metadata.tar.xz + disk.qcow2 | rootfs.squashfs).
  image,
}: let
  isVm = role.instanceType == "virtual-machine";
  file =
    if isVm
    then "disk.qcow2"
    else "rootfs.squashfs";
  launchConfig = import ./launch-config.nix role;
  configFlags = lib.concatStringsSep " " (lib.mapAttrsToList (key: value: "--config ${lib.escapeShellArg "${key}=${value}"}") launchConfig);
  # Run in the guest with its own bash (NixOS puts it in /run/current-system/sw/bin).
  inGuest = script: "incus exec guest -- /run/current-system/sw/bin/bash -c ${lib.escapeShellArg script}";
  http = builtins.match "http://127\\.0\\.0\\.1:([0-9]+)(/.*)" role.readiness;
  probe =
    if role.readiness == "booted"
    then "test \"$(incus list guest --format csv --columns s)\" = RUNNING"
    else if role.readiness == "incus-agent"
    then "incus exec guest -- /run/current-system/sw/bin/true"
    else if role.readiness == "ssh"
    then inGuest "exec 3<>/dev/tcp/127.0.0.1/22 && head -c 4 <&3 | grep -q SSH-"
    else if http != null
    then
      inGuest ''
        exec 3<>/dev/tcp/127.0.0.1/${builtins.elemAt http 0}
        printf 'GET ${builtins.elemAt http 1} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        head -n 1 <&3 | grep -q ' 2[0-9][0-9] '
      ''
    else if lib.hasPrefix "/" role.readiness
    then "incus exec guest -- /run/current-system/sw/bin/test -e ${lib.escapeShellArg role.readiness}"
    else throw "nix/incus/boot-test.nix: role ${role.id}: no probe for readiness `${role.readiness}`";
in
  pkgs.testers.runNixOSTest {
    name = "role-image-boot-${role.id}";
    nodes.host = {
      virtualisation = {
        cores = 2;
        # The guest's own memory and disk, plus room for the host.
        memorySize = role.memoryMib + 1024;
        diskSize = role.diskSize + 4096;
        incus.enable = true;
      };
      # incus.nix asserts nftables.
      networking.nftables.enable = true;
    };
    testScript = ''
      def ready(_) -> bool:
          status, _ = host.execute(${builtins.toJSON probe})
          return status == 0

      host.wait_for_unit("incus.service")
      host.succeed("incus admin init --minimal")

      with subtest("the role image imports"):
          host.succeed("incus image import ${image}/metadata.tar.xz ${image}/${file} --alias ${lib.escapeShellArg role.defaultAlias}")

      with subtest("the guest launches with the role's launch config"):
          host.succeed("incus init ${lib.escapeShellArg role.defaultAlias} guest ${lib.optionalString isVm "--vm"} ${configFlags}")
          host.succeed("incus start guest")

      with subtest("the guest becomes ready (${role.readiness})"):
          with host.nested("waiting for readiness ${role.readiness}"):
              retry(ready)
    '';
  }
