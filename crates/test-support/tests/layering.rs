//! The workspace's layering, as ARCHITECTURE.md states it, checked over the code itself:
//!
//! - crates: no dependency circle between workspace crates (normal, build and dev dependencies
//!   alike, read with `cargo metadata`; a crate naming itself to switch on a feature of its own
//!   for its tests is no circle), and test-support, which every crate may dev-depend on, depends
//!   on no workspace crate above pika-incus (none that depends on pika-incus or on test-support);
//! - modules: no import circle between the modules of any crate, read from the `use crate::...`
//!   statements and the `crate::...` paths written out in the code of every `.rs` file under each
//!   crate's `src/`.
//!
//! A failure names the circle and, for each arrow of it, the file and the names it imports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const TEST_SUPPORT: &str = "pika-test-support";
const INCUS_CLIENT: &str = "pika-incus";

struct Package {
    name: String,
    /// The directory of its Cargo.toml.
    dir: PathBuf,
    /// Workspace crates it depends on, of any kind, itself left out.
    deps: BTreeSet<String>,
    /// Workspace crates it depends on as a normal or build dependency.
    normal_deps: BTreeSet<String>,
}

fn workspace() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_owned();
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
            let mut deps = BTreeSet::new();
            let mut normal_deps = BTreeSet::new();
            for dep in p["dependencies"].as_array().expect("dependencies") {
                let dep_name = dep["name"].as_str().expect("dependency name");
                if !names.contains(dep_name) || dep_name == name {
                    continue;
                }
                deps.insert(dep_name.to_owned());
                if dep["kind"].as_str() != Some("dev") {
                    normal_deps.insert(dep_name.to_owned());
                }
            }
            Package {
                name,
                dir: manifest.parent().expect("manifest dir").to_owned(),
                deps,
                normal_deps,
            }
        })
        .collect()
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, node: &'a str) {
        let i = s.index.len();
        s.index.insert(node, i);
        s.low.insert(node, i);
        s.stack.push(node);
        s.on_stack.insert(node);
        for next in s.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = BTreeSet::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.insert(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

fn transitive(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(node) = todo.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn no_crate_depends_in_a_circle_and_test_support_depends_on_nothing_above_pika_incus() {
    let packages = workspace();
    assert!(
        packages.iter().any(|p| p.name == TEST_SUPPORT) && packages.len() > 5,
        "cargo metadata did not list the workspace"
    );
    let all: BTreeMap<String, BTreeSet<String>> = packages
        .iter()
        .map(|p| (p.name.clone(), p.deps.clone()))
        .collect();
    let normal: BTreeMap<String, BTreeSet<String>> = packages
        .iter()
        .map(|p| (p.name.clone(), p.normal_deps.clone()))
        .collect();

    let mut report = String::new();
    for circle in circles(&all) {
        let arrows: Vec<String> = circle
            .iter()
            .flat_map(|from| {
                all[from]
                    .iter()
                    .filter(|to| circle.contains(*to))
                    .map(move |to| format!("{from} -> {to}"))
            })
            .collect();
        let _ = writeln!(
            report,
            "crate circle {circle:?}: {} (Cargo.toml [dependencies], [build-dependencies] or \
             [dev-dependencies])",
            arrows.join(", ")
        );
    }
    // test-support: nothing that stands on pika-incus, nothing that dev-depends on it.
    for dep in transitive(&normal, TEST_SUPPORT) {
        let above = dep == INCUS_CLIENT
            || transitive(&normal, &dep).contains(INCUS_CLIENT)
            || all[&dep].contains(TEST_SUPPORT);
        if above {
            let _ = writeln!(
                report,
                "{TEST_SUPPORT} depends on {dep}, which is or stands on {INCUS_CLIENT}, or dev-depends on \
                 {TEST_SUPPORT}: a fixture of {dep} belongs with {dep} (as jerichoci's \
                 feature `fixtures`)"
            );
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// `use crate::...;` statements of a file, each expanded into its paths (segments after `crate`).
fn crate_imports(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use crate::") {
        let before = &rest[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let prefix = before[line_start..].trim();
        let statement_end = rest[at..].find(';').map_or(rest.len(), |i| at + i);
        let statement = &rest[at + "use crate::".len()..statement_end];
        // Only real statements: nothing but `pub`/`pub(crate)` before them on their line.
        if prefix.is_empty() || prefix.starts_with("pub") {
            expand(&[], statement, &mut paths);
        }
        rest = &rest[statement_end.min(rest.len())..];
        if rest.starts_with(';') {
            rest = &rest[1..];
        }
    }
    paths
}

/// Paths written out in code (`crate::members::health_detail(..)`), comments left out.
fn inline_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let code = line.find("//").map_or(line, |i| &line[..i]);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "crate::".len()..];
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                let path: Vec<String> = after[..end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if !path.is_empty() {
                    paths.push(path);
                }
            }
            rest = &after[end..];
        }
    }
    paths
}

/// Expands `a::{b, c::{d, e as f}, self}` under `base` into whole paths.
fn expand(base: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            let path = tree.split(" as ").next().unwrap_or(tree);
            let mut whole = base.to_vec();
            whole.extend(
                path.split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                    .map(str::to_owned),
            );
            out.push(whole);
        }
        Some(open) => {
            let mut whole = base.to_vec();
            whole.extend(
                tree[..open]
                    .split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&whole, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if !inner[start..].trim().is_empty() {
                expand(&whole, &inner[start..], out);
            }
        }
    }
}

/// Every `.rs` file under `src` with its module path (`a::b`; the crate root is the empty path).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut todo = vec![src.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let mut segments: Vec<String> = rel
                    .with_extension("")
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    segments.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    segments.pop();
                }
                found.insert(segments.join("::"), path);
            }
        }
    }
    found
}

/// The module an imported path lands in: the longest module prefix of the path; a name of the
/// crate root is followed through the root's own `use` of it (`pub use store::RunStore`).
fn target_module(
    path: &[String],
    modules: &BTreeMap<String, PathBuf>,
    root_uses: &[Vec<String>],
) -> Option<String> {
    for len in (1..=path.len()).rev() {
        let candidate = path[..len].join("::");
        if modules.contains_key(&candidate) {
            return Some(candidate);
        }
    }
    let name = path.first()?;
    root_uses
        .iter()
        .find(|used| used.last() == Some(name) && used.len() > 1)
        .and_then(|used| target_module(&used[..used.len() - 1], modules, &[]))
}

#[test]
fn no_module_imports_in_a_circle() {
    let mut report = String::new();
    let mut crates_read = 0;
    for package in workspace() {
        let src = package.dir.join("src");
        let modules = modules(&src);
        if modules.is_empty() {
            continue;
        }
        crates_read += 1;
        let root_uses: Vec<Vec<String>> = ["lib.rs", "main.rs"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(src.join(f)).ok())
            .flat_map(|text| {
                let mut paths = Vec::new();
                for line in text.lines() {
                    let line = line.trim();
                    let statement = line
                        .strip_prefix("pub use ")
                        .or_else(|| line.strip_prefix("pub(crate) use "));
                    if let Some(statement) = statement {
                        expand(&[], statement.trim_end_matches(';'), &mut paths);
                    }
                }
                paths
            })
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut why: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file).expect("reading a source file");
            graph.entry(module.clone()).or_default();
            for path in crate_imports(&text).into_iter().chain(inline_paths(&text)) {
                let Some(target) = target_module(&path, &modules, &root_uses) else {
                    continue;
                };
                // The root declares every module; an import of a root item is not an arrow up.
                if target == *module || target.is_empty() || module.is_empty() {
                    continue;
                }
                graph
                    .entry(module.clone())
                    .or_default()
                    .insert(target.clone());
                why.entry((module.clone(), target))
                    .or_default()
                    .insert(path.join("::"));
            }
        }
        for circle in circles(&graph) {
            let _ = writeln!(report, "{}: module circle {circle:?}:", package.name);
            for from in &circle {
                for to in graph[from].iter().filter(|to| circle.contains(*to)) {
                    let names = &why[&(from.clone(), to.clone())];
                    let _ = writeln!(
                        report,
                        "  {} -> {to}: use crate::{}",
                        modules[from]
                            .strip_prefix(&package.dir)
                            .unwrap_or(&modules[from])
                            .display(),
                        names.iter().cloned().collect::<Vec<_>>().join(", crate::")
                    );
                }
            }
        }
    }
    assert!(
        crates_read > 5,
        "read the sources of only {crates_read} crates"
    );
    assert!(report.is_empty(), "{report}");
}

#[test]
fn use_statements_expand_into_paths() {
    let text = "use crate::a::{b, c::{d, e as f}, self};\npub(crate) use crate::g::H;\n\
                // use crate::not::this;\nlet x = \"use crate::nor::this\";\n";
    let paths: Vec<String> = crate_imports(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["a::b", "a::c::d", "a::c::e", "a", "g::H"]);
    let inline: Vec<String> =
        inline_paths("x = crate::m::f(1); // crate::not\n$crate::no; y::crate::no")
            .iter()
            .map(|p| p.join("::"))
            .collect();
    assert_eq!(inline, ["m::f"]);
}
