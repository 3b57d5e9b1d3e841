#!/usr/bin/env bash
# What the scripts under scripts/ share: REPO_ROOT, the one error helper, usage from the running
# script's header comment, and a free loopback port. Sourced, not executed. The shell suites get it
# through scripts/lib/suite.sh. A script finds it next to itself, e.g. from scripts/bench/:
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

# What the messages begin with: the name of the script that was run (suite.sh sets its SUITE).
PROG="$(basename "${BASH_SOURCE[-1]}")"
# The checkout this file is in (never an inherited REPO_ROOT: that may name another checkout).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034 # read by the scripts that source this file
readonly REPO_ROOT

err() {
  echo "${PROG}: error: $*" >&2
}

# script_header: the header comment of the script that was run (from line 2 to the first line that
# is not a comment), without the leading "# ".
script_header() {
  sed -n '2,/^[^#]/{/^#/p}' "${BASH_SOURCE[-1]}" | sed 's/^# \{0,1\}//'
}

# usage: the header comment; a script with more to say redefines it around script_header.
usage() {
  script_header
}

# free_port: a loopback TCP port nothing listens on (20000-39999).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null || { echo "${port}"; return 0; }
  done
}
