#!/usr/bin/env bash
# Every shell script of the repository is shellcheck clean.
set -euo pipefail

# codegen/templates/ holds askama templates, not shell; their output (scripts/lib/roles.sh and the
# golden copy) is checked instead.
mapfile -t scripts < <(git ls-files -co --exclude-standard -- '*.sh' .ci/run ':!codegen/templates/*')
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
