#!/usr/bin/env bash
# Every shell script of the repository is shellcheck clean.
set -euo pipefail

mapfile -t scripts < <(git ls-files -co --exclude-standard -- '*.sh' .ci/run)
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
