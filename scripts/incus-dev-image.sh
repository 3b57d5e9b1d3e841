#!/usr/bin/env bash
# Legacy entry point kept for existing callers: scripts/incus-role-image.sh --role managed-openclaw "$@".
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/incus-role-image.sh" --role managed-openclaw "$@"
