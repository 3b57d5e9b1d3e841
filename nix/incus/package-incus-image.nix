# Packages an already-built disk (virtual-machine) or rootfs (container) into the Incus image
# layout: one directory with metadata.tar.xz, disk.qcow2 or rootfs.squashfs (a link into the disk
# or rootfs derivation), and README.txt.
#
# Kept apart from the NixOS evaluation (guest-image-package.nix) so that it builds anywhere a
# `runCommand` does; scripts/tests/40-nix.sh builds it with nix-build from a fake qcow2 and a
# busybox rootfs and imports the result into a real incusd.
#
#   packageIncusImage = import ./package-incus-image.nix { inherit pkgs; };
#   packageIncusImage { name = "..."; system = "x86_64-linux"; ...; image = diskDrv; }
{pkgs}: {
  # Store name of the result.
  name,
  # Nix system of the guest (x86_64-linux or aarch64-linux); gives metadata.yaml `architecture`.
  system,
  # metadata.yaml properties.
  description,
  variant,
  os ? "nixos",
  release,
  # "virtual-machine" (image holds a *.qcow2) or "container" (image is a squashfs).
  instanceType ? "virtual-machine",
  # The built disk or rootfs: a file, or a directory holding exactly one *.qcow2
  # (virtual-machine) or one *.squashfs / *.img (container), as nixpkgs' builders produce.
  image,
  # Text for README.txt.
  buildInstructions ? "",
  importInstructions ? "",
  # Fixed metadata.yaml creation_date and tar mtime, so the output is reproducible.
  creationDate ? 1,
  # Further metadata.yaml properties (string values), e.g. provenance or `requirements.secureboot`.
  properties ? {},
  # Name of a property whose value is the output path of this image (null: none).
  outPathProperty ? null,
  # Extra attributes of the result (e.g. the NixOS system it was built from).
  passthru ? {},
  # meta of the result, over description = `description` and platforms = [ `system` ].
  meta ? {},
}: let
  architectures = {
    x86_64-linux = "x86_64";
    aarch64-linux = "aarch64";
  };
  architecture =
    architectures.${system}
    or (throw "packageIncusImage: unsupported system `${system}`; supported: ${builtins.concatStringsSep ", " (builtins.attrNames architectures)}");
  layouts = {
    virtual-machine = {
      file = "disk.qcow2";
      patterns = "*.qcow2";
      about = "the EFI disk (qcow2)";
    };
    container = {
      file = "rootfs.squashfs";
      patterns = "*.squashfs *.img";
      about = "the root filesystem (squashfs)";
    };
  };
  layout =
    layouts.${instanceType}
    or (throw "packageIncusImage: unsupported instanceType `${instanceType}`; supported: ${builtins.concatStringsSep ", " (builtins.attrNames layouts)}");
  # `incus-simplestreams add` needs os, release, variant and architecture among the properties.
  standardProperties = {
    inherit description os release variant architecture;
  };
  clashes = builtins.filter (name: standardProperties ? ${name} || name == outPathProperty) (builtins.attrNames properties);
  allProperties =
    if clashes != []
    then throw "packageIncusImage: `properties` may not set ${builtins.concatStringsSep ", " clashes} (given by their own arguments)"
    else
      standardProperties
      // properties
      # The placeholder becomes $out when the derivation builds.
      // (
        if outPathProperty == null
        then {}
        else {${outPathProperty} = builtins.placeholder "out";}
      );
  # JSON strings are valid YAML double-quoted scalars: no quoting bugs for odd keys or values.
  # attrNames is sorted, so the file is byte-stable.
  metadataYaml = ''
    architecture: ${builtins.toJSON architecture}
    creation_date: ${toString creationDate}
    properties:
    ${builtins.concatStringsSep "\n" (map (name: "  ${builtins.toJSON name}: ${builtins.toJSON allProperties.${name}}") (builtins.attrNames allProperties))}
    templates: {}
  '';
  readme = ''
    ${description}
    Incus ${instanceType} image for ${system} (architecture ${architecture}), variant ${variant}.

    Files:
      metadata.tar.xz   Incus image metadata (metadata.yaml)
      ${layout.file}  ${layout.about}

    Build:
    ${buildInstructions}

    Import:
    ${importInstructions}
  '';
in
  pkgs.runCommand name {
    nativeBuildInputs = [pkgs.gnutar pkgs.xz];
    inherit metadataYaml readme image;
    imageFile = layout.file;
    imagePatterns = layout.patterns;
    mtime = toString creationDate;
    passthru = passthru // {inherit architecture instanceType metadataYaml;};
    meta =
      {
        inherit description;
        platforms = [system];
      }
      // meta;
  } ''
    set -eu
    fail() { echo "packageIncusImage: error: $*" >&2; exit 1; }

    # Find the disk/rootfs: the input itself when it is a file, else exactly one matching file.
    found=""
    if [ -f "$image" ]; then
      found="$image"
    elif [ -d "$image" ]; then
      for pattern in $imagePatterns; do
        for candidate in "$image"/$pattern; do
          [ -f "$candidate" ] || continue
          [ -z "$found" ] || fail "more than one $imagePatterns in $image: $found $candidate"
          found="$candidate"
        done
      done
    else
      fail "the image input $image does not exist"
    fi
    [ -n "$found" ] || fail "no $imagePatterns in $image: the ${instanceType} disk/rootfs output is missing"

    mkdir -p "$out" meta
    printf '%s' "$metadataYaml" > meta/metadata.yaml
    chmod 0644 meta/metadata.yaml
    tar --format=gnu --sort=name --mtime="@$mtime" --owner=0 --group=0 --numeric-owner \
      -C meta -cf metadata.tar metadata.yaml
    xz -T1 -9 -c metadata.tar > "$out/metadata.tar.xz"
    # A link, not a copy: the disk is GBs, and this derivation is rebuilt for every commit (its
    # provenance properties change) while the disk derivation is not.
    ln -s "$found" "$out/$imageFile"
    printf '%s' "$readme" > "$out/README.txt"
  ''
