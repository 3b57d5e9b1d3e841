//! `pikaci`: runs the CI targets of `pikaci.toml` through jerichoci.
//!
//! ```text
//! pikaci list                   targets of pikaci.toml
//! pikaci run [TARGET...]        run targets (all by default), live progress per phase
//! pikaci show RUN|latest        a run record (--json: the record itself)
//! pikaci cleanup                delete guests whose delete is still pending (runs that exited first)
//! ```
//!
//! A run deletes each job's guest after writing the job's record, off the job's critical path,
//! and exits once its result is known. Deletes not finished by then go to a detached
//! `pikaci cleanup --after-run RUN` (it waits for the run's process to end, then deletes); a
//! delete that fails or never ran (the process was killed) stays in the ledger of pending
//! deletes and the next `pikaci run` retries it (see `jerichoci::cleanup`).
//!
//! Exit codes: 0 all jobs passed; 1 a job failed; 3 a job timed out; 4 a job could not run (Incus
//! error); 130 interrupted (Ctrl-C); 2 usage, config or environment errors.

mod config;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use jerichoci::naming::new_run_id;
use jerichoci::{
    Executor, JobRecord, JobStatus, PhaseStatus, Progress, RunRecord, RunStore, remote,
};
use pika_runtime::{TextTable, WithCompletions, paint, printable};

use crate::config::{CONFIG_FILE, Config};

/// Where run records go unless `PIKACI_STATE_DIR` says otherwise (relative to the workspace).
const DEFAULT_STATE_DIR: &str = ".pikaci/runs";
const STATE_DIR_ENV: &str = "PIKACI_STATE_DIR";

const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

/// Pika CI: runs the targets of pikaci.toml on the host or in ephemeral `pikaci-runner` Incus guests.
#[derive(Debug, Parser)]
#[command(name = "pikaci", version, after_help = env_help())]
struct Cli {
    /// The config file [default: pikaci.toml at the git repository root]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Machine-readable output on stdout (progress stays on stderr)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: WithCompletions<Command>,
}

fn env_help() -> String {
    use jerichoci::remote::{
        DEFAULT_PROFILE, DEFAULT_PROJECT, GUEST_ROLE_ENV, IMAGE_ALIAS_ENV, INCUS_SOCKET_ENV,
        PROFILE_ENV, PROJECT_ENV,
    };
    let role = config::TARGET_GUEST_ROLE;
    format!(
        "Environment:
  {STATE_DIR_ENV:<42}run records [default: {DEFAULT_STATE_DIR} in the workspace]
  {GUEST_ROLE_ENV:<42}guest role of Incus jobs [default: {role}; valid: {valid}]
  {IMAGE_ALIAS_ENV:<42}image alias [default: the role's, {alias}]
  {PROJECT_ENV:<42}Incus project [default: {DEFAULT_PROJECT}]
  {PROFILE_ENV:<42}Incus profile [default: {DEFAULT_PROFILE}]
  {INCUS_SOCKET_ENV:<42}Incus unix socket [default: {socket}]

Exit codes: 0 passed, 1 a job failed, 3 a job timed out, 4 a job could not run,
            130 interrupted, 2 usage/config/environment error.",
        valid = pika_incus_guest_role::IncusGuestRole::valid_ids(),
        alias = role.default_image_alias(),
        socket = pika_incus::api::DEFAULT_UNIX_SOCKET,
    )
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the targets of the config
    List,
    /// Run targets (all of them when none is named); exit code follows the worst job
    Run {
        /// Target names from the config
        targets: Vec<String>,
    },
    /// Show a run record
    Show {
        /// Run ID (see the state dir), or `latest`
        run: String,
    },
    /// Delete the guests of finished runs whose delete is still pending (pikaci run does this
    /// itself, in the background); exit 1 if a delete failed (it stays pending)
    Cleanup {
        /// First wait for run RUN's process to end (pikaci run passes its own run as it exits)
        #[arg(long, value_name = "RUN")]
        after_run: Option<String>,
    },
}

fn main() -> ExitCode {
    pika_runtime::init("pikaci", "warn");
    let cli = Cli::parse();
    let command = cli.command.or_print_completions::<Cli>();
    match real_main(cli.config, cli.json, command) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(message)) => {
            eprintln!("pikaci: error: {}", printable(&message));
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Other(message)) => {
            eprintln!("pikaci: error: {}", printable(&message));
            ExitCode::from(1)
        }
    }
}

/// An error that ends pikaci: usage/config/environment (exit 2) or anything else (exit 1).
enum Failure {
    Usage(String),
    Other(String),
}

fn real_main(config: Option<PathBuf>, json: bool, command: Command) -> Result<u8, Failure> {
    let config_path = match config {
        Some(path) => path,
        None => default_config_path()?,
    };
    // Absolute, so records name paths that work from anywhere.
    let config_path = std::path::absolute(&config_path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", config_path.display())))?;
    match command {
        Command::List => {
            let config = config::load(&config_path).map_err(|e| Failure::Usage(e.to_string()))?;
            list(&config, json);
            Ok(0)
        }
        Command::Run { targets } => {
            let config = config::load(&config_path).map_err(|e| Failure::Usage(e.to_string()))?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
            runtime.block_on(run(&config, &targets, json))
        }
        Command::Cleanup { after_run } => {
            let store = RunStore::new(state_dir(&workspace_of(&config_path)));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
            runtime.block_on(cleanup(&store, after_run.as_deref(), json))
        }
        Command::Show { run } => {
            let store = RunStore::new(state_dir(&workspace_of(&config_path)));
            let record = store
                .read(&run)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            if json {
                print_json(&record);
            } else {
                show(&record);
            }
            Ok(0)
        }
    }
}

/// `pikaci.toml` at the root of the git repository around the current directory.
fn default_config_path() -> Result<PathBuf, Failure> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .map_err(|e| {
            Failure::Usage(format!(
                "cannot run git to find the repository root ({e}); pass --config PATH"
            ))
        })?;
    if !out.status.success() {
        return Err(Failure::Usage(format!(
            "not inside a git repository, so no {CONFIG_FILE} to find; pass --config PATH"
        )));
    }
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(Path::new(&root).join(CONFIG_FILE))
}

fn workspace_of(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `PIKACI_STATE_DIR` (relative to the current directory) or `.pikaci/runs` in the workspace.
fn state_dir(workspace: &Path) -> PathBuf {
    state_dir_from(workspace, |name| std::env::var(name).ok())
}

fn state_dir_from(workspace: &Path, lookup: impl Fn(&str) -> Option<String>) -> PathBuf {
    match lookup(STATE_DIR_ENV)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
        None => workspace.join(DEFAULT_STATE_DIR),
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("records always serialize")
    );
}

fn list(config: &Config, json: bool) {
    if json {
        print_json(&config.targets);
        return;
    }
    let mut table = TextTable::new(["TARGET", "RUNTIME", "TIMEOUT", "COMMAND", "DESCRIPTION"]);
    for target in &config.targets {
        let runtime = match target.runtime {
            config::TargetRuntime::Incus => format!("incus:{}", config::TARGET_GUEST_ROLE),
            config::TargetRuntime::Host => "host".to_owned(),
        };
        let timeout = match target.timeout_secs {
            Some(secs) => format!("{secs}s"),
            None => format!("{}s (default)", target.effective_timeout_secs()),
        };
        table.row([
            target.name.clone(),
            runtime,
            timeout,
            target.command.clone(),
            target.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

async fn run(config: &Config, names: &[String], json: bool) -> Result<u8, Failure> {
    let targets = config.select(names).map_err(Failure::Usage)?;
    if targets.is_empty() {
        return Err(Failure::Usage(format!(
            "{} declares no targets",
            config.path.display()
        )));
    }
    let jobs: Vec<_> = targets.iter().map(|t| t.job()).collect();
    let workspace = config.workspace.clone();
    let store = RunStore::new(state_dir(&workspace));
    let incus = remote::incus_client_from(remote::process_env)
        .map_err(|e| Failure::Usage(e.to_string()))?;

    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let color = pika_runtime::color(&std::io::stderr());
    let incus_for_sweep = incus.clone();
    let executor = Executor::new(store, &workspace)
        .with_incus(incus)
        .with_background_cleanup(true)
        .with_cancel(cancel_rx)
        .with_progress(Arc::new(move |event| progress(event, color)));

    let run_id = new_run_id();
    let swept_earlier = {
        let (ledger, incus) = (executor.cleanup_ledger(), incus_for_sweep.clone());
        tokio::spawn(async move { jerichoci::sweep(&ledger, &incus, None).await })
    };
    // A bad environment stops here, before any instance exists.
    for job in &jobs {
        executor
            .place(&run_id, job)
            .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("pikaci: interrupted, cleaning up (Ctrl-C again to quit at once)");
            let _ = cancel_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        }
    });
    eprintln!(
        "pikaci: run {run_id} ({} job(s)), records in {}",
        jobs.len(),
        executor.store().run_dir(&run_id).display()
    );
    let record = executor
        .run(&run_id, &jobs)
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    if json {
        print_json(&record);
    }
    summary(&record);
    // The result is known: what is left of the deletes goes to a detached `pikaci cleanup`.
    let sweep_unfinished = report_sweep(swept_earlier, &run_id).await;
    let unfinished = executor.abandon_cleanups() | sweep_unfinished;
    if unfinished && let Err(e) = detach_cleanup(&config.path, &run_id) {
        eprintln!("pikaci: warning: {e}; the next run deletes this run's guests");
    }
    Ok(exit_code(&record))
}

/// Reports the sweep of earlier runs' pending deletes if it finished; else aborts it (the
/// detached cleanup does it) and returns `true`.
async fn report_sweep(
    sweep: tokio::task::JoinHandle<std::io::Result<Vec<jerichoci::SweepOutcome>>>,
    run_id: &str,
) -> bool {
    use jerichoci::SweepOutcome;
    if !sweep.is_finished() {
        sweep.abort();
        return true;
    }
    let Ok(result) = sweep.await else {
        return true;
    };
    match result {
        Err(e) => eprintln!("pikaci: warning: reading the pending deletes: {e}"),
        Ok(outcomes) => {
            for outcome in outcomes {
                match outcome {
                    SweepOutcome::Deleted {
                        instance,
                        run_id: of,
                    } if of != run_id => {
                        eprintln!("pikaci: deleted {instance}, left by run {of}");
                    }
                    SweepOutcome::Failed {
                        instance,
                        run_id: of,
                        error,
                    } => eprintln!(
                        "pikaci: warning: deleting {instance} (left by run {of}) failed again: {error}; still pending"
                    ),
                    _ => {}
                }
            }
        }
    }
    false
}

/// Starts `pikaci cleanup --after-run RUN` in a process group of its own, with no terminal, so
/// it outlives this process (and a Ctrl-C of its terminal).
fn detach_cleanup(config: &Path, run_id: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find pikaci itself: {e}"))?;
    std::process::Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(["cleanup", "--after-run", run_id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the detached cleanup: {e}"))
}

async fn cleanup(store: &RunStore, after_run: Option<&str>, json: bool) -> Result<u8, Failure> {
    use jerichoci::SweepOutcome;
    let incus = remote::incus_client_from(remote::process_env)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let ledger = jerichoci::CleanupLedger::new(store);
    let outcomes = jerichoci::sweep(&ledger, &incus, after_run)
        .await
        .map_err(|e| Failure::Other(format!("{}: {e}", ledger.dir().display())))?;
    let failed = outcomes
        .iter()
        .any(|o| matches!(o, SweepOutcome::Failed { .. }));
    if json {
        print_json(&outcomes);
    } else {
        let mut table = TextTable::new(["INSTANCE", "RUN", "OUTCOME"]);
        for outcome in &outcomes {
            let (instance, run, what) = match outcome {
                SweepOutcome::Deleted { instance, run_id } => {
                    (instance, run_id.clone(), "deleted".to_owned())
                }
                SweepOutcome::Failed {
                    instance,
                    run_id,
                    error,
                } => (
                    instance,
                    run_id.clone(),
                    format!("failed (still pending): {error}"),
                ),
                SweepOutcome::Live { instance, run_id } => (
                    instance,
                    run_id.clone(),
                    "its run is still going".to_owned(),
                ),
                SweepOutcome::OtherEndpoint { instance, endpoint } => (
                    instance,
                    "-".to_owned(),
                    format!("on {endpoint}, not this endpoint"),
                ),
            };
            table.row([instance.clone(), run, what]);
        }
        if outcomes.is_empty() {
            eprintln!("pikaci: no pending deletes in {}", ledger.dir().display());
        } else {
            println!("{table}");
        }
    }
    Ok(u8::from(failed))
}

fn exit_code(record: &RunRecord) -> u8 {
    if record.status == jerichoci::RunStatus::Interrupted {
        return EXIT_INTERRUPTED;
    }
    match record.worst_job_status() {
        JobStatus::Passed => 0,
        JobStatus::Failed => 1,
        JobStatus::TimedOut => 3,
        JobStatus::Error => 4,
        JobStatus::Interrupted => EXIT_INTERRUPTED,
    }
}

fn progress(event: Progress<'_>, color: bool) {
    let mut err = std::io::stderr().lock();
    let _ = match event {
        Progress::JobStarted { job, log_path } => {
            writeln!(
                err,
                "[{}] start ({}): {}  log: {}",
                printable(&job.id),
                job.runtime.kind(),
                printable(job.effective_command()),
                printable(&log_path.display().to_string())
            )
        }
        Progress::Placed { job, context } => writeln!(
            err,
            "[{}] incus {} project={} profile={} image={} role={}",
            printable(&job.id),
            printable(&context.instance_name),
            printable(&context.project),
            printable(&context.profile),
            printable(&context.image_alias),
            context.guest_role
        ),
        Progress::PhaseFinished { job, phase } => {
            let status = match phase.status {
                PhaseStatus::Ok => paint("ok", "32", color),
                PhaseStatus::Failed => paint("failed", "31", color),
                PhaseStatus::TimedOut => paint("timed out", "31", color),
                PhaseStatus::Interrupted => paint("interrupted", "33", color),
                PhaseStatus::Deferred => paint("deferred", "32", color),
            };
            let exit = phase
                .exit_code
                .map(|c| format!(" exit {c}"))
                .unwrap_or_default();
            let error = phase
                .error
                .as_ref()
                .map(|e| format!(": {}", printable(e)))
                .unwrap_or_default();
            writeln!(
                err,
                "[{}] {:<8} {status}{exit} {}{error}",
                printable(&job.id),
                phase.phase.as_str(),
                secs(phase.duration_ms)
            )
        }
        Progress::JobFinished { job, record } => {
            writeln!(
                err,
                "[{}] {} in {}",
                printable(&job.id),
                job_status(record, color),
                secs(record.duration_ms)
            )
        }
    };
}

fn job_status(record: &JobRecord, color: bool) -> String {
    let code = match record.status {
        JobStatus::Passed => "32",
        JobStatus::Interrupted => "33",
        _ => "31",
    };
    let exit = record
        .exit_code
        .filter(|c| *c != 0)
        .map(|c| format!(" (exit {c})"))
        .unwrap_or_default();
    format!("{}{exit}", paint(record.status.as_str(), code, color))
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

fn summary(record: &RunRecord) {
    let mut table = TextTable::new(["JOB", "STATUS", "TIME", "ERROR"]);
    for job in &record.jobs {
        table.row([
            job.job_id.clone(),
            job_status(job, false),
            secs(job.duration_ms),
            job.error.clone().unwrap_or_default(),
        ]);
    }
    eprintln!("pikaci: run {} {:?}\n{table}", record.run_id, record.status);
}

fn show(record: &RunRecord) {
    println!("run {}  {:?}", record.run_id, record.status);
    println!(
        "started {}  finished {}",
        record.started_at,
        record.finished_at.as_deref().unwrap_or("-")
    );
    for job in &record.jobs {
        println!();
        println!(
            "{}  {}  ({}, {})",
            printable(&job.job_id),
            job_status(job, false),
            job.runtime,
            secs(job.duration_ms)
        );
        println!("  command: {}", printable(&job.command));
        if let Some(remote) = &job.remote_linux_vm {
            if let Some(image) = &remote.incus_image {
                println!(
                    "  image:   {}/{}  fingerprint {}  role {}",
                    printable(&image.project),
                    printable(&image.alias),
                    image.fingerprint.as_deref().unwrap_or("-"),
                    image.guest_role.map_or("-", |r| r.as_str())
                );
            }
            if let Some(name) = &remote.instance_name {
                println!("  instance: {}", printable(name));
            }
        }
        for phase in &job.phases {
            let exit = phase
                .exit_code
                .map(|c| format!(" exit {c}"))
                .unwrap_or_default();
            println!(
                "  {:<8} {:?}{exit} {}{}",
                phase.phase.as_str(),
                phase.status,
                secs(phase.duration_ms),
                phase
                    .error
                    .as_ref()
                    .map(|e| format!(": {}", printable(e)))
                    .unwrap_or_default()
            );
        }
        if let Some(error) = &job.error {
            println!("  error:   {}", printable(error));
        }
        println!("  log:     {}", printable(&job.log_path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_defaults_into_the_workspace_and_env_overrides() {
        let ws = Path::new("/repo");
        assert_eq!(
            state_dir_from(ws, |_| None),
            PathBuf::from("/repo/.pikaci/runs")
        );
        assert_eq!(
            state_dir_from(ws, |_| Some("  ".into())),
            PathBuf::from("/repo/.pikaci/runs")
        );
        assert_eq!(
            state_dir_from(ws, |n| (n == STATE_DIR_ENV).then(|| "/s".into())),
            PathBuf::from("/s")
        );
    }

    #[test]
    fn exit_code_follows_the_worst_job() {
        let mut record = RunRecord::new("r", "t");
        record.status = jerichoci::RunStatus::Failed;
        assert_eq!(exit_code(&record), 0);
        for (status, code) in [
            (JobStatus::Failed, 1),
            (JobStatus::TimedOut, 3),
            (JobStatus::Error, 4),
        ] {
            record.jobs.push(JobRecord {
                status,
                ..JobRecord::starting("j", "c", "host", "")
            });
            assert_eq!(exit_code(&record), code);
        }
        record.status = jerichoci::RunStatus::Interrupted;
        assert_eq!(exit_code(&record), EXIT_INTERRUPTED);
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
