#!/usr/bin/env bash
# Suite 15-rust-sandbox: the Rust checks as crane runs them in the Nix sandbox (checks.cargo-test,
# cargo-clippy, cargo-fmt of nix/rust.nix), here: on the source exactly as nix/rust.nix filters it
# (its keep rule around crane's filterCargoSources, evaluated with the real nixpkgs lib through
# tests/nix/rust-sandbox.nix), copied to a directory with no .git in it or above it, with git off
# PATH unless the check lists pkgs.git in its nativeBuildInputs, and with crane's HOME.
#
# Suite 10-rust runs the same commands in the full checkout, which has .git, git and every file, so
# it cannot see a test that needs one of them; this suite can.
#
# The copy and its target dir persist between runs (PIKA_SANDBOX_DIR, default: next to
# CARGO_TARGET_DIR, else ~/.cache/pika-rust-sandbox), so a run rebuilds only what changed. They
# are apart from the checkout's target dir on purpose: cargo hashes workspace crates by their path
# relative to the workspace root, so the copy's binaries would overwrite the checkout's (and bake
# in the copy's CARGO_MANIFEST_DIR).
# Needs nix-instantiate and the nixpkgs subset (../shared/nixpkgs-subset or PIKA_NIXPKGS_SUBSET);
# without the subset the suite is skipped (exit 77).
set -euo pipefail

readonly SUITE="15-rust-sandbox"
# shellcheck source=scripts/lib/nix-suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/nix-suite.sh"
# crane's builds run with this HOME (nixpkgs' stdenv); nothing may be read from it.
readonly SANDBOX_HOME="/homeless-shelter"

WORK=""

# sandbox_dir: where the filtered copy (src/) and its cargo target dir (target/) persist.
sandbox_dir() {
  if [[ -n "${PIKA_SANDBOX_DIR:-}" ]]; then
    echo "${PIKA_SANDBOX_DIR}"
  elif [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" == /* ]]; then
    echo "${CARGO_TARGET_DIR}-sandbox"
  else
    echo "${HOME}/.cache/pika-rust-sandbox"
  fi
}

# path_without DIR TOOL...: fills DIR with links to every program on PATH except TOOL and TOOL-*
# (the first of each name, as PATH lookup finds it).
path_without() {
  local dir="$1" entry file name tool skip
  shift
  mkdir -p "${dir}"
  local entries=()
  IFS=: read -ra entries <<<"${PATH}"
  for entry in "${entries[@]}"; do
    [[ -d "${entry}" ]] || continue
    for file in "${entry}"/*; do
      name="${file##*/}"
      skip=0
      for tool in "$@"; do
        [[ "${name}" == "${tool}" || "${name}" == "${tool}"-* ]] && skip=1
      done
      ((skip)) || [[ -e "${dir}/${name}" || ! -x "${file}" ]] || ln -s "${file}" "${dir}/${name}"
    done
  done
}

# has_git_above DIR: whether DIR or a parent holds .git (git would find a repository there).
has_git_above() {
  local dir="$1"
  while [[ "${dir}" != "/" ]]; do
    [[ -e "${dir}/.git" ]] && return 0
    dir="$(dirname "${dir}")"
  done
  return 1
}

# in_sandbox SRC TARGET BIN COMMAND...: runs COMMAND in SRC as crane's check would.
in_sandbox() {
  local src="$1" target="$2" bin="$3"
  shift 3
  (cd "${src}" && env -u GIT_DIR -u GIT_WORK_TREE \
    PATH="${bin}" HOME="${SANDBOX_HOME}" \
    CARGO_HOME="${CARGO_HOME:-${HOME}/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-${HOME}/.rustup}" \
    CARGO_TARGET_DIR="${target}" CARGO_NET_OFFLINE=true "$@")
}

cleanup() {
  [[ -n "${WORK}" ]] && rm -rf "${WORK}"
  return 0
}

main() {
  local subset sandbox json store src target bin missing=() tools
  subset="$(find_subset)"
  if [[ -z "${subset}" ]]; then
    log "SKIPPED: no nixpkgs subset (set PIKA_NIXPKGS_SUBSET or put it at ../shared/nixpkgs-subset)"
    exit 77
  fi
  WORK="$(mktemp -d "${PIKA_TEST_WORK:-/tmp}/rust-sandbox.XXXXXX")"
  trap cleanup EXIT
  export NIX_CONFIG=$'build-users-group =\nsubstituters =\nsandbox = false'

  # What a commit holds (the flake's `self`), then nix/rust.nix's cut of it.
  mkdir -p "${WORK}/repo"
  (cd "${REPO_ROOT}" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "${WORK}/repo")
  json="$(nix-instantiate --eval --strict --json --read-write-mode "${REPO_ROOT}/tests/nix/rust-sandbox.nix" \
    --arg nixpkgsLib "${subset}/lib" --arg repoRoot "${WORK}/repo" 2>"${WORK}/nix.stderr")" \
    || { err "nix/rust.nix's source does not evaluate: $(cat "${WORK}/nix.stderr")"; exit 1; }
  store="$(jq -r .src <<<"${json}")"
  tools="$(jq -r '.nativeBuildInputs | join(" ")' <<<"${json}")"
  log "nix/rust.nix keeps $(find "${store}" -type f | wc -l) files (${store}); check tools: ${tools}"

  sandbox="$(sandbox_dir)"
  src="${sandbox}/src"
  target="${sandbox}/target"
  mkdir -p "${src}" "${target}"
  # By content: unchanged files keep their mtime, so cargo rebuilds only what changed.
  rsync -rlc --delete --chmod=u+w "${store}/" "${src}/"
  if has_git_above "${src}"; then
    fail "${src} or a parent holds .git (crane's source has none): set PIKA_SANDBOX_DIR elsewhere"
    exit 1
  fi
  pass "the filtered source is at ${src}, no .git in it or above it"

  bin="${WORK}/bin"
  if jq -e '.nativeBuildInputs | index("git")' <<<"${json}" >/dev/null; then
    path_without "${bin}"
  else
    path_without "${bin}" git
  fi
  if [[ " ${tools} " != *" git "* ]]; then
    if PATH="${bin}" command -v git >/dev/null; then
      fail "git is still on the sandbox PATH"
    else
      pass "git is not on PATH (checks.cargo-test has no pkgs.git)"
    fi
  fi

  local start="${SECONDS}"
  in_sandbox "${src}" "${target}" "${bin}" cargo fmt --all --check || missing+=("cargo fmt --check")
  in_sandbox "${src}" "${target}" "${bin}" cargo clippy --workspace --all-targets --locked --offline --quiet -- -D warnings \
    || missing+=("cargo clippy -D warnings")
  in_sandbox "${src}" "${target}" "${bin}" cargo test --workspace --locked --offline --no-fail-fast --quiet \
    || missing+=("cargo test")
  log "fmt, clippy and test in the sandbox copy: $((SECONDS - start)) s"
  if ((${#missing[@]} == 0)); then
    pass "cargo fmt --check, clippy -D warnings and cargo test --locked --offline pass on nix/rust.nix's source (no .git; tools: the host's minus what the check lacks)"
  else
    fail "in crane's sandbox these would fail: ${missing[*]} (source ${src}; see the output above)"
  fi
  suite_report
}

main "$@"
