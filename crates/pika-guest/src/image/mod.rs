//! `image import|status|rollback|prune|publish`: the Incus side of role images.
//!
//! Human output goes to stderr (notes) and stdout (tables); `--json` prints one JSON document on
//! stdout instead. Exit codes: 0 ok (status: every line `current`), 1 failure (status: drift),
//! 2 usage error.

mod artifact;
mod import;
mod integrity;
mod metadata_tar;
mod provenance;
mod publish;
mod remote;
mod retention;
mod rollback;
mod status;
mod target;
mod versions;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pika_incus_guest_role::IncusGuestRole;
use serde::Serialize;

use artifact::Artifact;
use provenance::{Provenance, Verdict};
use target::{ImageTargetArgs, Target};

/// Images an alias keeps reachable (the one it serves included) unless `--keep` says otherwise.
const DEFAULT_KEEP: &str = "3";

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Verify a built artifact, import it without alias, move the alias in one request, keep the
    /// previous images as versions (`ALIAS/v<time>-<id>`) up to --keep, prune the rest.
    Import(ImportArgs),
    /// Show what each alias serves, its provenance and a verdict: current, stale,
    /// unknown-provenance or missing. Exit 0 only when every line is current.
    Status(StatusArgs),
    /// Move the alias back to an earlier kept image in one request (or, with --published,
    /// withdraw the newest version from a simplestreams tree).
    Rollback(RollbackArgs),
    /// Drop versions beyond --keep and delete images that no alias and no instance uses.
    Prune(PruneArgs),
    /// Add the artifact as a new version to a simplestreams image server tree.
    Publish(PublishArgs),
    /// Stream the git working tree (tracked and untracked, not ignored) to a temp directory on
    /// the target (this machine, or each --remote-host), `nix build` the role's package there and
    /// import the result; the temp directory is removed on every path.
    BuildImport(BuildImportArgs),
}

/// `--remote-host HOST`, repeatable: run the command on each host over ssh (see the module docs
/// of `remote`), each host on its own; several hosts end with a closing table.
#[derive(Args)]
pub struct RemoteHosts {
    /// SSH target, `[user@]host`; repeat it for several hosts.
    #[arg(long = "remote-host", value_name = "HOST", value_parser = remote::parse_host, allow_hyphen_values = true)]
    remote_host: Vec<String>,
}

/// The alias a command works on, where (the Incus target, or each --remote-host) and --json.
#[derive(Args)]
pub struct AliasOn {
    /// Image alias (default: the role's default alias).
    #[arg(long, value_name = "A", value_parser = parse_alias)]
    alias: Option<String>,
    #[command(flatten)]
    target: ImageTargetArgs,
    #[command(flatten)]
    remote: RemoteHosts,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BuildImportArgs {
    /// The role, alias, retention and target: the flags of `prune`.
    #[command(flatten)]
    image: PruneArgs,
    #[command(flatten)]
    remote: RemoteHosts,
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(long, value_name = "ROLE")]
    role: IncusGuestRole,
    /// Image directory: metadata.tar.xz plus disk.qcow2 or rootfs.squashfs.
    #[arg(long, value_name = "DIR", default_value = "result")]
    artifact: PathBuf,
    /// Images the alias keeps reachable, the served one included.
    #[arg(long, value_name = "N", default_value = DEFAULT_KEEP, value_parser = clap::value_parser!(u16).range(1..))]
    keep: u16,
    #[command(flatten)]
    on: AliasOn,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(
        long,
        value_name = "ROLE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    role: Option<IncusGuestRole>,
    /// Every role of the registry, each under its default alias.
    #[arg(long, conflicts_with_all = ["alias", "artifact"])]
    all: bool,
    /// Expect this artifact's provenance (its metadata.tar.xz is enough). Default: this
    /// checkout's rev and the role's digest.
    #[arg(long, value_name = "DIR", conflicts_with = "expect_rev")]
    artifact: Option<PathBuf>,
    /// The checkout whose git revision is expected when no --artifact is given.
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,
    /// Expect this source rev instead of the checkout's (where no checkout is, e.g. over ssh).
    #[arg(long, value_name = "REV")]
    expect_rev: Option<String>,
    #[command(flatten)]
    on: AliasOn,
}

#[derive(Args)]
pub struct RollbackArgs {
    #[arg(long, value_name = "ROLE")]
    role: IncusGuestRole,
    /// The kept image to go back to: a prefix (4+ characters) of its fingerprint or its
    /// pika.source-rev. Default: the version before the one the alias serves.
    #[arg(long, value_name = "REV|FINGERPRINT", conflicts_with = "published")]
    to: Option<String>,
    /// A simplestreams tree made by `image publish`: withdraw its newest version of the alias.
    #[arg(long, value_name = "DIR")]
    published: Option<PathBuf>,
    #[command(flatten)]
    on: AliasOn,
}

#[derive(Args)]
pub struct PruneArgs {
    #[arg(long, value_name = "ROLE")]
    role: IncusGuestRole,
    #[arg(long, value_name = "A", value_parser = parse_alias)]
    alias: Option<String>,
    #[arg(long, value_name = "N", default_value = DEFAULT_KEEP, value_parser = clap::value_parser!(u16).range(1..))]
    keep: u16,
    #[command(flatten)]
    target: ImageTargetArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PublishArgs {
    #[arg(long, value_name = "ROLE")]
    role: IncusGuestRole,
    /// The simplestreams tree (created when missing); serve it over HTTPS as it is.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    #[arg(long, value_name = "DIR", default_value = "result")]
    artifact: PathBuf,
    #[arg(long, value_name = "A", value_parser = parse_alias)]
    alias: Option<String>,
    #[arg(long)]
    json: bool,
}

/// The registry's alias rule (the codegen's own check), as a clap value parser.
fn parse_alias(value: &str) -> Result<String, String> {
    pika_role_spec::check_alias(value)
        .map(|()| value.to_string())
        .map_err(|reason| format!("invalid alias '{value}': {reason}"))
}

fn alias_of(role: IncusGuestRole, alias: &Option<String>) -> String {
    alias
        .clone()
        .unwrap_or_else(|| role.default_image_alias().to_string())
}

pub fn run(command: ImageCommand) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    match command {
        ImageCommand::Import(args) => runtime.block_on(run_import(args)),
        ImageCommand::Status(args) => runtime.block_on(run_status(args)),
        ImageCommand::Rollback(args) => runtime.block_on(run_rollback(args)),
        ImageCommand::Prune(args) => runtime.block_on(run_prune(args)),
        ImageCommand::Publish(args) => run_publish(args),
        ImageCommand::BuildImport(args) => run_build_import(args),
    }
}

fn note(message: &str) {
    eprintln!("pika-guest: {message}");
}

fn print_json(value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// The report of an import or rollback: JSON, or one line `HOST ALIAS FP12 PROVENANCE` (the
/// SERVES column of the closing table of several hosts).
fn print_summary(
    json: bool,
    report: &impl Serialize,
    serves: &import::AliasMove,
) -> Result<ExitCode, String> {
    if json {
        print_json(report)?;
    } else {
        println!(
            "{} {} {} {}",
            serves.host,
            serves.alias,
            short(&serves.fingerprint),
            serves.provenance.short()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(12)]
}

/// Connects and checks the project exists, so a typo is named as such.
async fn connect(args: &ImageTargetArgs) -> Result<Target, String> {
    let target = args.connect()?;
    let client = target.project.client();
    match client.get_project(target.project.name()).await {
        Ok(_) => Ok(target),
        Err(e) if e.is_not_found() => Err(format!(
            "Incus project {} (--project) is not available on {}",
            target.project.name(),
            target.host
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn run_import(args: ImportArgs) -> Result<ExitCode, String> {
    let alias = alias_of(args.role, &args.on.alias);
    if !args.on.remote.remote_host.is_empty() {
        let ship = artifact::payload_files(&args.artifact).ok_or_else(|| {
            format!(
                "artifact {} is not an image directory (build it: scripts/incus-role-image.sh --role {} build)",
                args.artifact.display(),
                args.role
            )
        })?;
        let mut job_args = remote_args(args.role, &args.on.alias, &args.on.target);
        job_args.extend(["--keep".into(), args.keep.to_string()]);
        job_args.extend(args.on.json.then(|| "--json".to_string()));
        let job = remote::Job {
            sub: "import",
            args: job_args,
            ship,
            artifact: remote::ArtifactAt::Shipped,
            build: None,
        };
        return remote::run(&job, &args.on.remote.remote_host);
    }
    let artifact = Artifact::open(&args.artifact, args.role).map_err(|e| {
        format!(
            "refusing artifact {}: {e}; nothing imported, alias {alias} unchanged",
            args.artifact.display()
        )
    })?;
    if let Some(message) = &artifact.note {
        note(message);
    }
    let target = connect(&args.on.target).await?;
    let report = import::import(
        &target.project,
        &target.host,
        &alias,
        &artifact,
        retention::Keep {
            images: usize::from(args.keep),
            role: args.role.as_str(),
        },
    )
    .await?;
    let serves = &report.serves;
    if report.already_present {
        note(&format!(
            "image {} is already in project {}; not importing it again",
            serves.fingerprint, serves.project
        ));
    }
    if report.moved {
        note(&format!(
            "alias {} -> {} (project {} on {}; was {})",
            serves.alias,
            serves.fingerprint,
            serves.project,
            serves.host,
            serves.previous.as_deref().unwrap_or("absent")
        ));
    } else {
        note(&format!(
            "alias {} already points at {}; nothing to do",
            serves.alias, serves.fingerprint
        ));
    }
    note_pruned(&report.pruned);
    print_summary(args.on.json, &report, serves)
}

fn note_pruned(pruned: &retention::Pruned) {
    for version in &pruned.versions {
        note(&format!("dropped version {version} (beyond --keep)"));
    }
    for image in &pruned.images {
        note(&format!(
            "deleted image {image} (no alias, no instance uses it)"
        ));
    }
    for image in &pruned.in_use {
        note(&format!("kept image {image}: an instance uses it"));
    }
}

async fn run_status(args: StatusArgs) -> Result<ExitCode, String> {
    if !args.on.remote.remote_host.is_empty() {
        return status_remote(&args);
    }
    let roles: Vec<IncusGuestRole> = match args.role {
        Some(role) => vec![role],
        None => IncusGuestRole::ALL.to_vec(),
    };
    let target = connect(&args.on.target).await?;
    let mut lines = Vec::new();
    for role in roles {
        let expected = match (&args.artifact, &args.expect_rev) {
            (Some(dir), _) => artifact::expected_from_metadata(dir, role)?,
            (None, Some(rev)) => provenance::expected_for_rev(role, rev)?,
            (None, None) => provenance::expected_from_checkout(role, &args.repo)?,
        };
        let alias = alias_of(role, &args.on.alias);
        lines.push(
            status::status(
                &target.project,
                &target.host,
                role.as_str(),
                &alias,
                expected,
            )
            .await?,
        );
    }
    if args.on.json {
        print_json(&lines)?;
    } else {
        print_status_table(&lines);
    }
    let all_current = lines.iter().all(|line| line.verdict == Verdict::Current);
    Ok(if all_current {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_status_table(lines: &[status::StatusLine]) {
    let mut table = pika_runtime::TextTable::new([
        "ROLE",
        "HOST",
        "PROJECT",
        "ALIAS",
        "IMAGE",
        "PROVENANCE",
        "EXPECTED",
        "VERDICT",
    ]);
    for l in lines {
        table.row([
            l.role.clone(),
            l.host.clone(),
            l.project.clone(),
            l.alias.clone(),
            l.fingerprint
                .as_deref()
                .map_or("-".into(), |f| short(f).to_string()),
            l.provenance.as_ref().map_or("-".into(), Provenance::short),
            l.expected.short(),
            l.verdict.as_str().to_string(),
        ]);
    }
    println!("{table}");
}

async fn run_rollback(args: RollbackArgs) -> Result<ExitCode, String> {
    let alias = alias_of(args.role, &args.on.alias);
    if let Some(tree) = &args.published {
        let report = publish::withdraw_newest(tree, &alias)?;
        note(&format!(
            "withdrew version {} ({}) of {alias} from {}; it now serves {} ({})",
            report.withdrawn,
            short(&report.withdrawn_fingerprint),
            tree.display(),
            report.serving,
            short(&report.serving_fingerprint)
        ));
        if args.on.json {
            print_json(&report)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.on.remote.remote_host.is_empty() {
        let mut job_args = remote_args(args.role, &args.on.alias, &args.on.target);
        if let Some(to) = &args.to {
            job_args.extend(["--to".into(), to.clone()]);
        }
        job_args.extend(args.on.json.then(|| "--json".to_string()));
        let job = remote::Job {
            sub: "rollback",
            args: job_args,
            ship: Vec::new(),
            artifact: remote::ArtifactAt::None,
            build: None,
        };
        return remote::run(&job, &args.on.remote.remote_host);
    }
    let target = connect(&args.on.target).await?;
    let report =
        rollback::rollback(&target.project, &target.host, &alias, args.to.as_deref()).await?;
    note(&format!(
        "alias {} -> {} ({}, {}) in project {} on {}; was {}",
        report.alias,
        report.fingerprint,
        report.version,
        report.provenance.short(),
        report.project,
        report.host,
        report.previous.as_deref().unwrap_or("absent")
    ));
    print_summary(args.on.json, &report, &report)
}

async fn run_prune(args: PruneArgs) -> Result<ExitCode, String> {
    let alias = alias_of(args.role, &args.alias);
    let target = connect(&args.target).await?;
    let pruned = retention::apply(
        &target.project,
        &alias,
        retention::Keep {
            images: usize::from(args.keep),
            role: args.role.as_str(),
        },
    )
    .await?;
    note_pruned(&pruned);
    if pruned.versions.is_empty() && pruned.images.is_empty() {
        note(&format!(
            "nothing to prune for alias {alias} (keep {})",
            args.keep
        ));
    }
    if args.json {
        print_json(&pruned)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_publish(args: PublishArgs) -> Result<ExitCode, String> {
    let alias = alias_of(args.role, &args.alias);
    // incus-simplestreams runs inside the tree: relative paths would name files there.
    let absolute = |path: &PathBuf| {
        std::path::absolute(path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))
    };
    let (artifact_dir, tree) = (absolute(&args.artifact)?, absolute(&args.to)?);
    let artifact = Artifact::open(&artifact_dir, args.role).map_err(|e| {
        format!(
            "refusing artifact {}: {e}; nothing published",
            args.artifact.display()
        )
    })?;
    let report = publish::publish(&artifact, &tree, &alias)?;
    note(&format!(
        "published {alias} version {} ({}, {}) to {}",
        report.version,
        short(&report.fingerprint),
        report.provenance.short(),
        report.tree.display()
    ));
    if args.json {
        print_json(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The arguments every remote command gets: the role, the project and the alias if one was given.
fn remote_args(
    role: IncusGuestRole,
    alias: &Option<String>,
    target: &ImageTargetArgs,
) -> Vec<String> {
    let mut args = vec![
        "--role".to_string(),
        role.as_str().to_string(),
        "--project".into(),
        target.incus.project.clone(),
    ];
    if let Some(alias) = alias {
        args.extend(["--alias".into(), alias.clone()]);
    }
    args
}

fn status_remote(args: &StatusArgs) -> Result<ExitCode, String> {
    let mut job_args = match args.role {
        Some(role) => remote_args(role, &args.on.alias, &args.on.target),
        None => vec![
            "--all".into(),
            "--project".into(),
            args.on.target.incus.project.clone(),
        ],
    };
    let (ship, artifact) = match &args.artifact {
        Some(dir) => {
            let metadata = dir.join(artifact::METADATA_FILE);
            if !metadata.is_file() {
                return Err(format!(
                    "artifact {} has no {}",
                    dir.display(),
                    artifact::METADATA_FILE
                ));
            }
            (vec![metadata], remote::ArtifactAt::Shipped)
        }
        None => {
            let rev = match &args.expect_rev {
                Some(rev) => rev.clone(),
                None => {
                    let role = args.role.unwrap_or(IncusGuestRole::ALL[0]);
                    provenance::expected_from_checkout(role, &args.repo)?
                        .source_rev
                        .unwrap_or_default()
                }
            };
            job_args.extend(["--expect-rev".into(), rev]);
            (Vec::new(), remote::ArtifactAt::None)
        }
    };
    job_args.extend(args.on.json.then(|| "--json".to_string()));
    let job = remote::Job {
        sub: "status",
        args: job_args,
        ship,
        artifact,
        build: None,
    };
    remote::run(&job, &args.on.remote.remote_host)
}

fn run_build_import(build: BuildImportArgs) -> Result<ExitCode, String> {
    let args = &build.image;
    let top = remote::git_top()?;
    let flake_ref = format!(
        ".#packages.{}.{}",
        args.role.system(),
        args.role.flake_package_attr()
    );
    let mut job_args = remote_args(args.role, &args.alias, &args.target);
    job_args.extend(["--keep".into(), args.keep.to_string()]);
    job_args.extend(args.json.then(|| "--json".to_string()));
    if build.remote.remote_host.is_empty() {
        // This machine: the Incus of the target flags.
        let incus = &args.target.incus;
        job_args.extend([
            "--socket".into(),
            incus.socket.to_string_lossy().into_owned(),
        ]);
        for (flag, value) in [
            ("--endpoint", incus.endpoint.as_ref().map(|e| e.into())),
            ("--client-cert", incus.client_cert.clone()),
            ("--client-key", incus.client_key.clone()),
            ("--server-cert", incus.server_cert.clone()),
        ] {
            if let Some(value) = value {
                job_args.extend([flag.to_string(), value.to_string_lossy().into_owned()]);
            }
        }
    }
    let job = remote::Job {
        sub: "import",
        args: job_args,
        ship: Vec::new(),
        artifact: remote::ArtifactAt::Built,
        build: Some((top, flake_ref)),
    };
    remote::run(&job, &build.remote.remote_host)
}
