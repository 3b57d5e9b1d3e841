//! Benchmark (not a test): parse, validate, digest and render all three outputs for N synthetic
//! roles, twice: roles with only the required keys, and roles using the whole schema-2 runtime
//! contract (two mounts, two instance-config entries, a cluster group).
//! `cargo run --release -p pika-roles-codegen --example bench_codegen -- [N]` (default 1000).
//! `... -- --write N DIR` writes DIR/roles.toml with N roles instead (every third one with the
//! whole contract) and the module it names, for the whole-process case, scripts/bench/codegen.sh.
//! Prints the median of 50 runs and its ratio to the 20 ms target, as wall-clock time and as time
//! on a CPU (this thread's CPU clock), which stays meaningful on a loaded shared machine.

use std::path::Path;
use std::time::{Duration, Instant};

use pika_roles_codegen::spec::{Registry, SCHEMA_VERSION};
use pika_roles_codegen::{outputs, render_nix_and_shell, render_rust};

const TARGET: Duration = Duration::from_millis(20);
const RUNS: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, n, dir] = args.as_slice()
        && flag == "--write"
    {
        let (n, dir) = (n.parse().expect("N is a number"), Path::new(dir));
        std::fs::create_dir_all(dir.join("nix")).unwrap();
        std::fs::write(dir.join("nix/role.nix"), "{...}: {}\n").unwrap();
        let mixed: String = (0..n)
            .map(|i| synthetic_roles(i..i + 1, i % 3 == 0))
            .collect();
        let text = format!("schema = {SCHEMA_VERSION}\n{mixed}");
        std::fs::write(dir.join("roles.toml"), text).unwrap();
        return;
    }
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N is a number"))
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("nix")).unwrap();
    std::fs::write(dir.path().join("nix/role.nix"), "{...}: {}\n").unwrap();
    for (shape, full) in [
        ("required keys only", false),
        ("full runtime contract", true),
    ] {
        let manifest = dir.path().join("roles.toml");
        std::fs::write(&manifest, synthetic_manifest(n, full)).unwrap();
        measure(&manifest, n, shape);
    }
    println!(
        "  (load average during the run: {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
}

fn measure(manifest: &Path, n: usize, shape: &str) {
    let mut times = Vec::with_capacity(RUNS);
    let mut cpu_times = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let cpu_start = on_cpu();
        let start = Instant::now();
        let registry = Registry::load(manifest).expect("synthetic manifest is valid");
        let outputs = outputs(&registry);
        times.push(start.elapsed());
        cpu_times.push(on_cpu().saturating_sub(cpu_start));
        bytes = outputs.iter().map(|o| o.contents.len()).sum();
    }
    times.sort();
    cpu_times.sort();
    let median = times[RUNS / 2];
    let cpu_median = cpu_times[RUNS / 2];

    // Where the time goes (on-CPU time, one run each).
    let text = std::fs::read_to_string(manifest).expect("manifest");
    let t = on_cpu();
    let _ = toml::from_str::<toml::Table>(&text);
    let bare_parse = on_cpu().saturating_sub(t);
    let t = on_cpu();
    let registry = Registry::load(manifest).expect("valid");
    let load = on_cpu().saturating_sub(t);
    let t = on_cpu();
    let _ = render_nix_and_shell(&registry);
    let nix_sh = on_cpu().saturating_sub(t);
    let t = on_cpu();
    let _ = render_rust(&registry);
    let rust = on_cpu().saturating_sub(t);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |d: Duration| d.as_secs_f64() / TARGET.as_secs_f64();
    println!(
        "codegen of {n} roles, {shape} ({} KiB in, {} KiB out): median {:.2} ms wall (ratio {:.3}), {:.2} ms on CPU (ratio {:.3}) over {RUNS} runs; target 20 ms",
        text.len() / 1024,
        bytes / 1024,
        ms(median),
        ratio(median),
        ms(cpu_median),
        ratio(cpu_median),
    );
    println!(
        "  on CPU: load (parse+validate+digest) {:.2} ms (for comparison, a bare parse by the toml crate, which only diagnostics use: {:.2} ms); render nix+shell {:.2} ms, rust {:.2} ms",
        ms(load),
        ms(bare_parse),
        ms(nix_sh),
        ms(rust)
    );
}

/// Time this thread has spent on a CPU (`CLOCK_THREAD_CPUTIME_ID`).
fn on_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn synthetic_manifest(n: usize, full: bool) -> String {
    format!("schema = {SCHEMA_VERSION}\n{}", synthetic_roles(0..n, full))
}

fn synthetic_roles(ids: std::ops::Range<usize>, full: bool) -> String {
    let mut text = String::new();
    for i in ids {
        text.push_str(&format!(
            r#"
[roles.role-{i}]
description = "Synthetic role {i}"
default-alias = "synthetic/role-{i}"
package = "role-{i}-incus-image"
legacy-packages = ["role-{i}-legacy-image"]
image-name = "role-{i}-incus"
variant = "role-{i}-variant"
system = "x86_64-linux"
instance-type = "container"
disk-size-mib = {disk}
modules = ["nix/role.nix"]
special-args = ["arg{a}"]
runtime-mode = "one-shot"
readiness = "/run/role-{i}/ready"
cpu = {cpu}
memory-mib = {disk}
secure-boot = false
"#,
            disk = 1024 + i,
            a = i % 7,
            cpu = 1 + i % 4
        ));
        if full {
            text.push_str(&format!(
                r#"cluster-group = "group-{a}"

[[roles.role-{i}.mounts]]
name = "snapshot"
path = "/workspace/snapshot"
read-only = true

[[roles.role-{i}.mounts]]
name = "cache"
path = "/var/cache/role-{i}"
read-only = false

[roles.role-{i}.instance-config]
"boot.autostart" = "false"
"security.nesting" = {{ value = "true", reason = "role {i} nests containers" }}
"#,
                a = i % 7
            ));
        }
    }
    text
}
