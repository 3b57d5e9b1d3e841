//! `pika-roles`: generate, check and inspect the outputs of roles.toml.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pika_roles_codegen::{
    FIELD_NAMES, FileState, Migration, Mode, Output, Registry, Role, SCHEMA_VERSION,
    checked_in_outputs, find_manifest, repo_root_of, sync_outputs,
};
use pika_runtime::{TextTable, WithCompletions};

/// Exit codes, documented in `--help` and README. 1: the manifest cannot be read or is invalid.
const EXIT_INVALID: u8 = 1;
/// Usage errors (clap uses 2 for its own too), including an unknown role ID.
const EXIT_USAGE: u8 = 2;
/// `check`: some generated file is stale.
const EXIT_STALE: u8 = 3;
/// A generated file (or the migrated manifest) cannot be written.
const EXIT_WRITE: u8 = 4;

const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  roles.toml cannot be read or is invalid (each error names roles.toml:LINE:COL)
  2  usage error (bad arguments, unknown role, no roles.toml found)
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
    /// Regenerate nix/incus/roles.nix and scripts/lib/roles.sh (only files whose content changed),
    /// then print the role table
    Generate,
    /// Exit 3 naming each generated file that is stale; exit 0 when all are fresh
    Check,
    /// Rewrite a schema-1 roles.toml as schema 2 in place: add each missing runtime-contract key
    /// with an explicit value (what launchers did before schema 2) for you to review
    Migrate,
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
        #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(FIELD_NAMES))]
        field: Option<String>,
    },
}

fn main() -> ExitCode {
    pika_runtime::init("pika-roles", "warn");
    let cli = Cli::parse();
    let command = cli.command.or_print_completions::<Cli>();
    let manifest = match cli.manifest.clone().or_else(default_manifest) {
        Some(path) => path,
        None => {
            eprintln!(
                "pika-roles: error: no roles.toml found in the current directory or its parents; pass --manifest PATH"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Command::Migrate = command {
        return migrate(&manifest);
    }
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
    match command {
        Command::Generate => generate(&manifest, &registry),
        Command::Check => check(&manifest, &registry),
        Command::List { json } => {
            if json {
                print_json(&registry.roles);
            } else {
                print_table(&registry.roles);
            }
            ExitCode::SUCCESS
        }
        Command::Show { role, json, field } => show(&registry, &role, json, field.as_deref()),
        Command::Migrate => unreachable!("handled before loading the registry"),
    }
}

fn migrate(manifest: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(manifest) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}:1:1: cannot read manifest: {e}", manifest.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let (text, added) = match pika_roles_codegen::migrate(&text, manifest, &repo_root_of(manifest))
    {
        Ok(Migration::AlreadyCurrent) => {
            eprintln!(
                "{} is already schema {SCHEMA_VERSION}; nothing to migrate",
                manifest.display()
            );
            return ExitCode::SUCCESS;
        }
        Ok(Migration::Migrated { text, added }) => (text, added),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("pika-roles: migrate changed nothing");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let root = manifest.parent().unwrap_or(Path::new("."));
    let output = Output {
        path: manifest.file_name().unwrap_or_default().into(),
        contents: text,
    };
    if let Err(e) = sync_outputs(root, &[output], Mode::Write) {
        eprintln!(
            "pika-roles: error: cannot write {}: {}",
            manifest.display(),
            e.source
        );
        return ExitCode::from(EXIT_WRITE);
    }
    for (role, keys) in added {
        eprintln!("role {role}: added {}", keys.join(", "));
    }
    eprintln!(
        "migrated {} to schema {SCHEMA_VERSION}; review the added values, then run `pika-roles generate`",
        manifest.display()
    );
    ExitCode::SUCCESS
}

fn default_manifest() -> Option<PathBuf> {
    find_manifest(&std::env::current_dir().ok()?)
}

fn generate(manifest: &Path, registry: &Registry) -> ExitCode {
    let root = repo_root_of(manifest);
    match sync_outputs(&root, &checked_in_outputs(registry), Mode::Write) {
        Ok(statuses) => {
            for status in statuses {
                let verb = match status.state {
                    FileState::Written => "wrote",
                    _ => "unchanged",
                };
                eprintln!("{verb} {}", root.join(&status.path).display());
            }
            print_table(&registry.roles);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pika-roles: error: {e}");
            ExitCode::from(EXIT_WRITE)
        }
    }
}

fn check(manifest: &Path, registry: &Registry) -> ExitCode {
    let root = repo_root_of(manifest);
    let statuses = sync_outputs(&root, &checked_in_outputs(registry), Mode::Check)
        .expect("check mode never writes");
    let stale: Vec<_> = statuses
        .iter()
        .filter(|s| s.state == FileState::Stale)
        .collect();
    for status in &stale {
        eprintln!(
            "stale: {} (run `{}`)",
            root.join(&status.path).display(),
            pika_roles_codegen::REGENERATE_COMMAND
        );
    }
    if stale.is_empty() {
        eprintln!("all generated files are fresh");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_STALE)
    }
}

fn show(registry: &Registry, id: &str, json: bool, field: Option<&str>) -> ExitCode {
    let Some(role) = registry.get(id.trim()) else {
        eprintln!(
            "pika-roles: error: unknown role `{id}`; valid roles: {}",
            registry.valid_ids()
        );
        return ExitCode::from(EXIT_USAGE);
    };
    if let Some(field) = field {
        // The parser only admits FIELD_NAMES, which Role::field knows.
        for value in role.field(field).unwrap_or_default() {
            println!("{value}");
        }
    } else if json {
        print_json(role);
    } else {
        for name in FIELD_NAMES {
            let values = role.field(name).unwrap_or_default();
            let line = format!("{name:<16} {}", values.join(" "));
            println!("{}", line.trim_end());
        }
    }
    ExitCode::SUCCESS
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("roles serialize to JSON")
    );
}

fn print_table(roles: &[Role]) {
    let mut table = TextTable::new([
        "ROLE",
        "DEFAULT ALIAS",
        "PACKAGE",
        "SYSTEM",
        "INSTANCE TYPE",
    ]);
    for r in roles {
        table.row([
            &r.id,
            &r.default_alias,
            &r.package,
            &r.system,
            &r.instance_type,
        ]);
    }
    println!("{table}");
}
