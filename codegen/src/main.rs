//! `pika-roles`: generate, check and inspect the outputs of roles.toml.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pika_roles_codegen::spec::{REGENERATE_COMMAND, Registry, RoleSpec};
use pika_roles_codegen::{
    FileState, MANIFEST_FILE, Mode, outputs, sync_outputs, to_json, write_text,
};
use pika_runtime::{TextTable, WithCompletions};

/// Exit codes, documented in `--help` and README. 1: the manifest cannot be read or is invalid.
const EXIT_INVALID: u8 = 1;
/// Usage errors (clap uses 2 for its own too), including an unknown role ID.
const EXIT_USAGE: u8 = 2;
/// `check`: some generated file is stale.
const EXIT_STALE: u8 = 3;
/// A generated file cannot be written.
const EXIT_WRITE: u8 = 4;

const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  roles.toml cannot be read or is invalid (each error names roles.toml:LINE:COL)
  2  usage error (bad arguments, unknown role or field, no roles.toml found)
  3  check: a generated file is stale (run `pika-roles generate`)
  4  a file cannot be written";

#[derive(Parser)]
#[command(
    name = "pika-roles",
    version,
    about = "Generate and inspect Pika's Incus guest roles from roles.toml",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    /// Path to roles.toml [default: found by walking up from the current directory]
    #[arg(long, global = true, value_name = "PATH")]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    command: WithCompletions<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate nix/incus/roles.nix, scripts/lib/roles.sh and the Rust role table (only files
    /// whose content changed), then print the role table
    Generate,
    /// Exit 3 naming each generated file that is stale; exit 0 when all are fresh
    Check,
    /// List the roles
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one role
    Show {
        /// Role ID, e.g. as listed by `pika-roles list`
        role: String,
        /// Print JSON
        #[arg(long, conflicts_with = "field")]
        json: bool,
        /// Print only this field (names as in roles.toml); list fields print one item per line
        /// (a mount as name:path:ro|rw[:optional], a user as name:uid:group:gid)
        #[arg(long, value_name = "NAME")]
        field: Option<String>,
    },
}

fn main() -> ExitCode {
    pika_runtime::init("pika-roles", "warn");
    let cli = Cli::parse();
    let command = cli.command.or_print_completions::<Cli>();
    let found = || {
        let cwd = std::env::current_dir().ok()?;
        cwd.ancestors()
            .map(|d| d.join(MANIFEST_FILE))
            .find(|m| m.is_file())
    };
    let Some(manifest) = cli.manifest.clone().or_else(found) else {
        let why =
            "no roles.toml found in the current directory or its parents; pass --manifest PATH";
        return fail(EXIT_USAGE, why);
    };
    let registry = match Registry::load(&manifest) {
        Ok(registry) => registry,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "pika-roles: {} error(s) in {}",
                errors.0.len(),
                manifest.display()
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let root = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match command {
        Command::Generate => sync(&root, &registry, Mode::Write),
        Command::Check => sync(&root, &registry, Mode::Check),
        Command::List { json: true } => {
            print_json(&registry.roles.iter().map(show_json).collect::<Vec<_>>())
        }
        Command::List { json: false } => {
            println!("{}", role_table(&registry.roles));
            ExitCode::SUCCESS
        }
        Command::Show { role, json, field } => show(&registry, &role, json, field.as_deref()),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("pika-roles: error: {message}");
    ExitCode::from(code)
}

/// `generate` (write, then print the role table) and `check` (exit 3 naming each stale file).
fn sync(root: &Path, registry: &Registry, mode: Mode) -> ExitCode {
    // `generate`'s table is laid out while the outputs are rendered: for a large registry it
    // takes about a third as long as they do.
    let (states, table) = std::thread::scope(|s| {
        let table = (mode == Mode::Write).then(|| s.spawn(|| role_table(&registry.roles)));
        let states = sync_outputs(root, &outputs(registry), mode);
        (
            states,
            table.map(|t| t.join().expect("laying out the role table panicked")),
        )
    });
    let states = match states {
        Ok(states) => states,
        Err(e) => return fail(EXIT_WRITE, e),
    };
    for (path, state) in &states {
        let path = root.join(path);
        match (mode, state) {
            (Mode::Check, FileState::Stale) => {
                eprintln!("stale: {} (run `{REGENERATE_COMMAND}`)", path.display());
            }
            (Mode::Check, _) => {}
            (_, FileState::Written) => eprintln!("wrote {}", path.display()),
            _ => eprintln!("unchanged {}", path.display()),
        }
    }
    match table {
        Some(table) => println!("{table}"),
        _ if states.iter().any(|(_, s)| *s == FileState::Stale) => {
            return ExitCode::from(EXIT_STALE);
        }
        _ => eprintln!("all generated files are fresh"),
    }
    ExitCode::SUCCESS
}

fn show(registry: &Registry, id: &str, json: bool, field: Option<&str>) -> ExitCode {
    let Some(role) = registry.get(id.trim()) else {
        let valid = registry.valid_ids();
        return fail(
            EXIT_USAGE,
            format!("unknown role `{id}`; valid roles: {valid}"),
        );
    };
    let fields = show_json(role);
    match field {
        Some(name) => {
            let Some(value) = fields.get(name) else {
                let names: Vec<&str> = fields.keys().map(String::as_str).collect();
                let names = names.join(", ");
                return fail(
                    EXIT_USAGE,
                    format!("unknown field `{name}`; fields: {names}"),
                );
            };
            let mut text = String::new();
            write_text(&mut text, role, name, value, "\n");
            if !text.is_empty() {
                println!("{text}");
            }
        }
        None if json => return print_json(&fields),
        None => {
            for (name, value) in &fields {
                let mut line = format!("{name:<16} ");
                write_text(&mut line, role, name, value, " ");
                println!("{}", line.trim_end());
            }
        }
    }
    ExitCode::SUCCESS
}

/// The spec as `show --json` prints it: instance config keys that carry a reason are written as
/// in roles.toml, `{ value, reason }`.
fn show_json(spec: &RoleSpec) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = to_json(spec);
    for (key, reason) in spec.instance_config.reasons {
        let value = &mut fields["instance-config"][*key];
        *value = serde_json::json!({ "value": value, "reason": reason });
    }
    fields
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> ExitCode {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("roles serialize to JSON")
    );
    ExitCode::SUCCESS
}

fn role_table(roles: &[RoleSpec]) -> String {
    let mut table = TextTable::new([
        "ROLE",
        "DEFAULT ALIAS",
        "PACKAGE",
        "SYSTEM",
        "INSTANCE TYPE",
    ]);
    for r in roles {
        table.row([
            r.id,
            r.default_alias,
            r.package,
            r.system.as_str(),
            r.instance_type.as_str(),
        ]);
    }
    table.to_string()
}
