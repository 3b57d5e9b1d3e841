//! `launch`, `list`, `delete`: guests of any role, with the role's runtime contract.
//!
//! Nothing here knows a role: the image alias, limits, instance config, mounts and readiness all
//! come from `IncusGuestRole` (roles.toml) through pika-guest-launch, as in the other launchers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use pika_guest_launch::{
    DEFAULT_READY_TIMEOUT, GuestFile, MountSources, apply_contract, launch, readiness,
};
use pika_incus::{Instance, InstanceCreate, ProjectClient};
use pika_incus_guest_role::{GUEST_ROLE_CONFIG_KEY, IncusGuestRole, Readiness};
use serde::Serialize;

use crate::target::TargetArgs;

/// Where `--ssh-key` goes in the guest (sshd's default `AuthorizedKeysFile` for root).
const AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";

#[derive(Subcommand)]
pub enum GuestCommand {
    /// Create a guest from a role's image with the role's contract and wait for its readiness.
    Launch(Box<LaunchArgs>),
    /// List the guests of every role (or of one role).
    List(ListArgs),
    /// Delete a guest (only instances labelled with a guest role).
    Delete(DeleteArgs),
}

#[derive(Args)]
pub struct LaunchArgs {
    /// The guest's role (from roles.toml).
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: IncusGuestRole,
    /// Instance name.
    name: String,
    /// Public key written to /root/.ssh/authorized_keys in the guest before the readiness wait.
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// Profile(s) to create the instance with (repeatable; default: the project's `default`).
    #[arg(long, value_name = "PROFILE")]
    profile: Vec<String>,
    /// Host directory for one of the role's mounts (repeatable); every mount of the role needs one.
    #[arg(long, value_name = "NAME=DIR", value_parser = parse_mount)]
    mount: Vec<(String, PathBuf)>,
    /// How long the guest may take to become ready, in seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..),
          default_value_t = DEFAULT_READY_TIMEOUT.as_secs())]
    timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only guests of this role.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: Option<IncusGuestRole>,
    /// Print the guests as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Instance name.
    name: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

/// A role ID; the error lists every role of the registry.
fn parse_role(value: &str) -> Result<IncusGuestRole, String> {
    value.parse().map_err(|_| {
        format!(
            "unknown role {value:?}; valid roles: {}",
            IncusGuestRole::valid_ids()
        )
    })
}

fn parse_mount(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(dir)))
        }
        _ => Err(format!("{value:?} is not NAME=DIR")),
    }
}

pub fn run(command: GuestCommand) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        match command {
            GuestCommand::Launch(args) => launch_guest(*args).await,
            GuestCommand::List(args) => list_guests(args).await,
            GuestCommand::Delete(args) => delete_guest(args).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What `launch --json` prints.
#[derive(Serialize)]
struct Launched {
    name: String,
    project: String,
    role: IncusGuestRole,
    readiness: String,
    /// `ssh root@ADDR` for `ssh` readiness.
    ssh: Option<String>,
    /// How to get a shell without SSH.
    exec: String,
}

async fn launch_guest(args: LaunchArgs) -> Result<(), String> {
    let role = args.role;
    let project = args.target.connect()?;
    let alias = role.default_image_alias();
    let image_type = project
        .get_image_alias(alias)
        .await
        .map_err(|e| {
            format!(
                "role {role}'s image alias `{alias}` is not usable in project {}: {e}\n\
                 import the role's image first: scripts/incus-role-image.sh --role {role} import",
                project.name()
            )
        })?
        .instance_type();
    let mut create = InstanceCreate::from_alias(&args.name, alias)
        .instance_type(image_type)
        .description(format!("pika-guest {role}"))
        .config(GUEST_ROLE_CONFIG_KEY, role.as_str());
    if !args.profile.is_empty() {
        create = create.profiles(&args.profile);
    }
    let sources: MountSources = args
        .mount
        .into_iter()
        .map(|(name, dir)| (name, Some(dir)))
        .collect();
    let create = apply_contract(create, role, &sources).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    if let Some(key) = &args.ssh_key {
        let contents =
            std::fs::read(key).map_err(|e| format!("--ssh-key {}: {e}", key.display()))?;
        if !contents.starts_with(b"ssh-") && !contents.starts_with(b"ecdsa-") {
            return Err(format!(
                "--ssh-key {}: not an OpenSSH public key (give the .pub file)",
                key.display()
            ));
        }
        files.push(GuestFile {
            path: AUTHORIZED_KEYS.to_owned(),
            contents,
            mode: 0o600,
            dir_mode: 0o700,
            uid: 0,
            gid: 0,
        });
    }
    if !args.json {
        eprintln!(
            "pika-guest: launching {} (role {role}, {image_type}) in project {}; waiting for readiness {} (up to {}s)",
            args.name,
            project.name(),
            readiness::describe(role.readiness()),
            args.timeout
        );
    }
    let timeout = Duration::from_secs(args.timeout);
    let ready = launch(&project, &create, role, &files, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let launched = Launched {
        name: args.name.clone(),
        project: project.name().to_owned(),
        role,
        readiness: readiness::describe(role.readiness()),
        ssh: ready.ssh_address.map(|a| format!("ssh root@{}", a.ip())),
        exec: format!(
            "incus exec --project {} {} -- sh",
            project.name(),
            args.name
        ),
    };
    if args.json {
        print_json(&launched);
    } else {
        println!("{} is ready ({})", launched.name, launched.readiness);
        if let Some(ssh) = &launched.ssh {
            println!("  reach it: {ssh}");
        }
        if role.readiness() == Readiness::Ssh && args.ssh_key.is_none() {
            println!("  note: no --ssh-key was given; the image's own keys decide who may log in");
        }
        println!("  shell:    {}", launched.exec);
    }
    Ok(())
}

/// One row of `list`.
#[derive(Serialize)]
struct Guest {
    name: String,
    role: IncusGuestRole,
    status: String,
    #[serde(rename = "type")]
    instance_type: String,
    addresses: Vec<String>,
}

async fn list_guests(args: ListArgs) -> Result<(), String> {
    let project = args.target.connect()?;
    let mut guests = Vec::new();
    for instance in project.list_instances().await.map_err(|e| e.to_string())? {
        let Some(role) = guest_role(&instance) else {
            continue;
        };
        if args.role.is_some_and(|wanted| wanted != role) {
            continue;
        }
        guests.push(Guest {
            addresses: addresses(&project, &instance).await,
            name: instance.name,
            role,
            status: instance.status,
            instance_type: instance.instance_type.to_string(),
        });
    }
    if args.json {
        print_json(&guests);
        return Ok(());
    }
    if guests.is_empty() {
        println!("no guests in project {}", project.name());
        return Ok(());
    }
    println!("{:<24} {:<20} {:<10} ADDRESSES", "NAME", "ROLE", "STATUS");
    for g in &guests {
        println!(
            "{:<24} {:<20} {:<10} {}",
            g.name,
            g.role.as_str(),
            g.status,
            g.addresses.join(" ")
        );
    }
    Ok(())
}

/// The guest role an instance is labelled with (instances of other tools have none).
fn guest_role(instance: &Instance) -> Option<IncusGuestRole> {
    instance
        .config
        .get(GUEST_ROLE_CONFIG_KEY)
        .and_then(|role| role.parse().ok())
}

async fn addresses(project: &ProjectClient, instance: &Instance) -> Vec<String> {
    if !instance.is_running() {
        return Vec::new();
    }
    match project.instance_state(&instance.name).await {
        Ok(state) => readiness::global_addresses(&state)
            .iter()
            .map(ToString::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn delete_guest(args: DeleteArgs) -> Result<(), String> {
    let project = args.target.connect()?;
    let instance = project.get_instance(&args.name).await.map_err(|e| {
        if e.is_not_found() {
            format!("no guest {} in project {}", args.name, project.name())
        } else {
            e.to_string()
        }
    })?;
    let Some(role) = guest_role(&instance) else {
        return Err(format!(
            "instance {}/{} is not a Pika guest (no {GUEST_ROLE_CONFIG_KEY} label); not deleting it",
            project.name(),
            args.name
        ));
    };
    project
        .remove_instance(&args.name)
        .await
        .map_err(|e| e.to_string())?;
    if args.json {
        print_json(&serde_json::json!({
            "name": args.name, "project": project.name(), "role": role, "deleted": true
        }));
    } else {
        println!("deleted {} (role {role})", args.name);
    }
    Ok(())
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("plain data always serializes")
    );
}
