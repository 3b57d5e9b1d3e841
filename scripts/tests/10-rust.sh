#!/usr/bin/env bash
# Rust: formatting, clippy, and every test of the workspace, including the ones that need the real
# incusd and nix (marked #[ignore] so a plain `cargo test` without them says so). The tests named
# `real_openclaw*` need the OpenClaw stand-in image (npm, ~1 GB): suite 60-openclaw, which has it, runs them.
set -euo pipefail

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet -- --include-ignored --skip real_openclaw
