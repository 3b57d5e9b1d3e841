#!/usr/bin/env bash
# The generated files on main are fresh, and the generated registry parses as Nix.
set -euo pipefail

cargo run --quiet -p pika-roles-codegen -- check
nix-instantiate --parse nix/incus/roles.nix >/dev/null
bash -n scripts/lib/roles.sh
