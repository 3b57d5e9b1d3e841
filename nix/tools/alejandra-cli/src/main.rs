//! `alejandra [--check] [--quiet] [--exclude PATH]... PATH...`
//!
//! Formats Nix files in place, or with `--check` reports the files that are not formatted.
//! Directories are walked for `*.nix` files (skipping `.git`, `target` and `result*`).
//! Exit codes follow upstream alejandra: 0 ok, 1 error (I/O, parse error, usage),
//! 2 with `--check` when at least one file would change.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alejandra::format::{Status, in_memory};

const USAGE: &str = "usage: alejandra [--check|-c] [--quiet|-q] [--exclude|-e PATH]... PATH...\n\
  Formats Nix files in place; with --check only reports files that are not formatted\n\
  (exit 2). A PATH of `-` reads stdin and writes the formatted text to stdout.";

struct Options {
    check: bool,
    quiet: bool,
    excludes: Vec<PathBuf>,
    paths: Vec<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options { check: false, quiet: false, excludes: Vec::new(), paths: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--check" => options.check = true,
            "-q" | "--quiet" => options.quiet = true,
            "-e" | "--exclude" => {
                let value = args.next().ok_or("--exclude needs a PATH")?;
                options.excludes.push(PathBuf::from(value));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("alejandra {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-" => options.paths.push(PathBuf::from("-")),
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            other => options.paths.push(PathBuf::from(other)),
        }
    }
    if options.paths.is_empty() {
        return Err("no PATH given".to_string());
    }
    Ok(options)
}

fn skipped_dir(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == ".git" || name == "target" || name.starts_with("result")
}

/// Collects `*.nix` files under `path`; an explicitly named file is taken whatever its name.
fn collect(path: &Path, explicit: bool, excludes: &[PathBuf], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if excludes.iter().any(|e| path.starts_with(e)) {
        return Ok(());
    }
    if path.is_dir() {
        if skipped_dir(path) {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            collect(&entry, false, excludes, out)?;
        }
    } else if explicit || path.extension().is_some_and(|ext| ext == "nix") {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn run(options: &Options) -> Result<bool, String> {
    if options.paths.len() == 1 && options.paths[0] == Path::new("-") {
        let mut before = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut before).map_err(|e| format!("stdin: {e}"))?;
        let (status, after) = in_memory("<stdin>".to_string(), before);
        if let Status::Error(error) = status {
            return Err(format!("<stdin>: {error}"));
        }
        print!("{after}");
        return Ok(false);
    }
    let mut files = Vec::new();
    for path in &options.paths {
        if !path.exists() {
            return Err(format!("{}: no such file or directory", path.display()));
        }
        collect(path, true, &options.excludes, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut changed_any = false;
    for file in &files {
        let before = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (status, after) = in_memory(file.display().to_string(), before);
        match status {
            Status::Error(error) => return Err(format!("{}: {error}", file.display())),
            Status::Changed(false) => {}
            Status::Changed(true) => {
                changed_any = true;
                if options.check {
                    if !options.quiet {
                        eprintln!("alejandra: not formatted: {}", file.display());
                    }
                } else {
                    std::fs::write(file, after).map_err(|e| format!("{}: {e}", file.display()))?;
                    if !options.quiet {
                        eprintln!("alejandra: formatted {}", file.display());
                    }
                }
            }
        }
    }
    if !options.quiet {
        eprintln!("alejandra: {} file(s) checked", files.len());
    }
    Ok(changed_any)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("alejandra: error: {message}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    match run(&options) {
        Ok(true) if options.check => ExitCode::from(2),
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("alejandra: error: {message}");
            ExitCode::from(1)
        }
    }
}
