//! `pika`: the operator CLI of the Pika agent API.
//!
//! ```text
//! pika agent provision [--name N] [--image-alias A] [--project P] [--profile P]
//!                      [--storage-pool S] [--endpoint URL] [--guest-role R]
//! pika agent list | show ID | reprovision ID [same flags] | delete ID [--force]
//! ```
//! `--server`/`PIKA_SERVER_URL`, `--token`/`PIKA_SERVER_TOKEN`, `--timeout`/`PIKA_TIMEOUT` and
//! `--json` work on every command. IDs are percent-encoded into the URL path.
//! Exit codes: 0 ok, 1 the server refused or failed (or did not answer in time), 2 usage error.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pika_managed_agent_contract::client::{AgentClient, ClientError, Deleted, parse_base};
use pika_managed_agent_contract::{
    AgentProvisionRequest, AgentRecord, AgentReprovisionRequest, AgentWithToken, ApiError,
    IncusGuestRole, IncusProvisionParams,
};
use pika_runtime::{TextTable, WithCompletions};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// Long enough for a provision under load (the server queues Incus work), short enough that a
/// stalled server does not hang a script.
const DEFAULT_TIMEOUT: &str = "300s";

/// Provision and manage Pika agents through the agent API.
#[derive(Parser)]
#[command(name = "pika", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: WithCompletions<Command>,
}

/// The flags every command takes.
#[derive(Args)]
struct Global {
    /// Agent API base URL.
    #[arg(long, global = true, env = "PIKA_SERVER_URL", default_value = DEFAULT_SERVER)]
    server: String,
    /// Bearer token (from `pika-server token add OWNER`).
    #[arg(long, global = true, env = "PIKA_SERVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Give up on a request after this long (e.g. 30s, 5m; 0 waits forever).
    #[arg(long, global = true, env = "PIKA_TIMEOUT", default_value = DEFAULT_TIMEOUT, value_parser = parse_duration)]
    timeout: std::time::Duration,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Managed agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Provision a new agent (missing Incus settings come from the server's environment); prints
    /// its gateway URL and, once, its gateway token.
    Provision {
        /// Human-readable name of the agent.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        incus: IncusFlags,
    },
    /// List your agents.
    List,
    /// Show one agent.
    Show { id: String },
    /// Recreate an agent's instance (with a new gateway port and token, the token shown once);
    /// given flags replace the stored settings.
    Reprovision {
        id: String,
        #[command(flatten)]
        incus: IncusFlags,
    },
    /// Give an agent a new gateway token (shown once); the old one stops working.
    RotateToken { id: String },
    /// Delete an agent and its instance.
    Delete {
        id: String,
        /// If the instance cannot be removed (its Incus endpoint is unreachable or no longer
        /// configured), keep the agent as `abandoned` naming the leftover instance; forcing the
        /// delete of an `abandoned` agent forgets it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Default)]
struct IncusFlags {
    /// Image alias the instance is created from (default: the role's default alias).
    #[arg(long)]
    image_alias: Option<String>,
    /// Incus project.
    #[arg(long)]
    project: Option<String>,
    /// Incus profile.
    #[arg(long)]
    profile: Option<String>,
    /// Storage pool of the root disk.
    #[arg(long)]
    storage_pool: Option<String>,
    /// Incus HTTPS endpoint (default: the server's).
    #[arg(long)]
    endpoint: Option<String>,
    /// Skip verification of the Incus server certificate.
    #[arg(long)]
    insecure_tls: bool,
    /// Guest role; sent only when given (the server decides otherwise).
    #[arg(long, value_parser = parse_role)]
    guest_role: Option<IncusGuestRole>,
}

fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration: use e.g. 30s, 5m, 1h"))?;
    let seconds = match unit {
        "" | "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("{value:?} is not a duration: use e.g. 30s, 5m, 1h"))?;
    Ok(std::time::Duration::from_secs(seconds))
}

fn parse_role(value: &str) -> Result<IncusGuestRole, String> {
    value
        .parse::<IncusGuestRole>()
        .map_err(|err| err.to_string())
}

impl IncusFlags {
    fn into_params(self) -> IncusProvisionParams {
        IncusProvisionParams {
            guest_role: self.guest_role,
            endpoint: self.endpoint,
            project: self.project,
            profile: self.profile,
            storage_pool: self.storage_pool,
            image_alias: self.image_alias,
            insecure_tls: self.insecure_tls.then_some(true),
        }
    }
}

/// A failed command: what to print and how to exit.
struct Failure {
    message: String,
    /// The server's error body, printed with `--json`.
    body: Option<ApiError>,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            body: None,
            code: 2,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        let message = match &err {
            ClientError::Timeout { .. } => format!("{err} (raise --timeout)"),
            _ => err.to_string(),
        };
        Failure {
            message,
            body: err.api_error().cloned(),
            code: 1,
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("value serializes")
    );
}

fn role_cell(record: &AgentRecord) -> String {
    record
        .incus
        .guest_role
        .map(|r| r.as_str().to_owned())
        .unwrap_or_else(|| "-".into())
}

fn print_table(records: &[AgentRecord]) {
    let mut table = TextTable::new([
        "ID", "NAME", "STATE", "INSTANCE", "LOCATION", "ROLE", "ALIAS", "PROJECT", "GATEWAY",
        "CREATED",
    ]);
    for r in records {
        table.row([
            r.id.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.state.to_string(),
            r.instance_name.clone(),
            r.location.clone().unwrap_or_else(|| "-".into()),
            role_cell(r),
            r.incus.image_alias.clone().unwrap_or_else(|| "-".into()),
            r.incus.project.clone().unwrap_or_else(|| "-".into()),
            r.gateway_url.clone().unwrap_or_else(|| "-".into()),
            r.created_at.clone(),
        ]);
    }
    println!("{table}");
}

fn print_record(record: &AgentRecord) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let fields = [
        ("id", record.id.clone()),
        ("owner", record.owner.clone()),
        ("name", opt(&record.name)),
        ("state", record.state.to_string()),
        ("instance", record.instance_name.clone()),
        ("location", opt(&record.location)),
        ("gateway url", opt(&record.gateway_url)),
        ("guest role", role_cell(record)),
        ("image alias", opt(&record.incus.image_alias)),
        (
            "endpoint",
            record
                .incus
                .endpoint
                .clone()
                .unwrap_or_else(|| "local socket".into()),
        ),
        ("project", opt(&record.incus.project)),
        ("profile", opt(&record.incus.profile)),
        ("storage pool", opt(&record.incus.storage_pool)),
        ("created", record.created_at.clone()),
        ("updated", record.updated_at.clone()),
    ];
    for (key, value) in fields {
        println!("{:<13} {value}", format!("{key}:"));
    }
    if let Some(error) = &record.error {
        println!("{:<13} {error}", "error:");
    }
}

/// An agent with the gateway token this response carries (once): the token on its own line, and
/// how to get a new one.
fn print_with_token(created: &AgentWithToken, json: bool) {
    if json {
        print_json(created);
        return;
    }
    print_record(&created.agent);
    if let Some(token) = &created.gateway_token {
        println!("{:<13} {token}", "gateway token:");
        eprintln!(
            "pika: the gateway token is shown only now; `pika agent rotate-token {}` makes a new one",
            created.agent.id
        );
    }
}

async fn run(cli: Global, command: Command) -> Result<(), Failure> {
    let token = cli
        .token
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Failure::usage("--token or PIKA_SERVER_TOKEN is required"))?;
    parse_base(&cli.server)
        .map_err(|err| Failure::usage(format!("--server / PIKA_SERVER_URL: {err}")))?;
    let api = AgentClient::with_timeout(
        &cli.server,
        token,
        (!cli.timeout.is_zero()).then_some(cli.timeout),
    )?;
    let Command::Agent { command } = command;
    match command {
        AgentCommand::Provision { name, incus } => {
            let request = AgentProvisionRequest {
                name,
                incus: incus.into_params(),
            };
            let created = api.provision(&request).await?;
            print_with_token(&created, cli.json);
        }
        AgentCommand::List => {
            let list = api.list().await?;
            if cli.json {
                print_json(&list);
            } else {
                print_table(&list.agents);
            }
        }
        AgentCommand::Show { id } => {
            let record = api.get(&id).await?;
            if cli.json {
                print_json(&record);
            } else {
                print_record(&record);
            }
        }
        AgentCommand::Reprovision { id, incus } => {
            let request = AgentReprovisionRequest {
                incus: incus.into_params(),
            };
            let created = api.reprovision(&id, &request).await?;
            print_with_token(&created, cli.json);
        }
        AgentCommand::RotateToken { id } => {
            let rotated = api.rotate_gateway_token(&id).await?;
            print_with_token(&rotated, cli.json);
        }
        AgentCommand::Delete { id, force } => match api.delete(&id, force).await? {
            Deleted::Gone if cli.json => print_json(&serde_json::json!({ "deleted": id })),
            Deleted::Gone => println!("deleted agent {id}"),
            Deleted::Abandoned(record) if cli.json => print_json(&record),
            Deleted::Abandoned(record) => {
                eprintln!(
                    "pika: warning: agent {id} is abandoned: its instance may remain (see error)"
                );
                print_record(&record);
            }
        },
    }
    Ok(())
}

fn main() -> ExitCode {
    pika_runtime::init("pika", "warn");
    let cli = Cli::parse();
    let command = cli.command.or_print_completions::<Cli>();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pika: error: starting the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.global, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                let body = failure.body.unwrap_or(ApiError {
                    error: failure.message.clone(),
                    code: if failure.code == 2 { "usage" } else { "client" }.into(),
                    field: None,
                    request_id: String::new(),
                    agent: None,
                });
                print_json(&body);
            }
            eprintln!("pika: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn guest_role_is_sent_only_when_given() {
        let cli = Cli::try_parse_from(["pika", "agent", "provision", "--token", "t"]).unwrap();
        let WithCompletions::Command(Command::Agent {
            command: AgentCommand::Provision { incus, .. },
        }) = cli.command
        else {
            panic!("parsed the wrong command");
        };
        let value = serde_json::to_value(incus.into_params()).unwrap();
        assert_eq!(value, serde_json::json!({}));

        let role = IncusGuestRole::ManagedOpenclaw;
        let cli = Cli::try_parse_from([
            "pika",
            "agent",
            "reprovision",
            "abc",
            "--guest-role",
            role.as_str(),
            "--image-alias",
            "my/alias",
        ])
        .unwrap();
        let WithCompletions::Command(Command::Agent {
            command: AgentCommand::Reprovision { id, incus },
        }) = cli.command
        else {
            panic!("parsed the wrong command");
        };
        assert_eq!(id, "abc");
        let params = incus.into_params();
        assert_eq!(params.guest_role, Some(role));
        assert_eq!(params.image_alias.as_deref(), Some("my/alias"));
    }

    #[test]
    fn unknown_guest_role_is_a_usage_error_listing_roles() {
        let err = Cli::try_parse_from(["pika", "agent", "provision", "--guest-role", "nope"])
            .err()
            .expect("must fail");
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        for role in IncusGuestRole::ALL {
            assert!(text.contains(role.as_str()), "{text}");
        }
    }

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(parse_duration("0"), Ok(std::time::Duration::ZERO));
        for bad in ["", "s", "5x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
