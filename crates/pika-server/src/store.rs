//! The agent rows, in one SQLite file (WAL mode).
//!
//! A row is written (state `provisioning`) before Incus is called, so a crash leaves a row that
//! startup reconciliation can finish or fail; state changes are single guarded `UPDATE`s so two
//! requests cannot both claim one agent.

use std::path::Path;
use std::sync::Mutex;

use pika_managed_agent_contract::{AgentRecord, AgentState, IncusProvisionParams};
use rusqlite::{Connection, OptionalExtension, params};

use crate::incus_keys;

mod pool;
pub use pool::{PoolClaim, PoolMember, PoolMemberState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: row {id} is unreadable: {message}")]
    Corrupt {
        path: String,
        id: String,
        message: String,
    },
    #[error(
        "database {path}: schema version {found} is newer than this pika-server knows ({known}); run the newer server"
    )]
    TooNew {
        path: String,
        found: usize,
        known: usize,
    },
    /// The insert collided with an existing row (the same idempotency key of the same owner).
    #[error("database {path}: duplicate row")]
    Duplicate { path: String },
    /// Every port of the operator's gateway range is held by an agent or in use by another
    /// program on the host.
    #[error(
        "every gateway port of {first}-{last} is taken ({agents} by agents, {in_use} in use by other programs on the host); delete agents, free ports or widen the range ({var})"
    )]
    PortsExhausted {
        first: u16,
        last: u16,
        agents: usize,
        in_use: usize,
        var: &'static str,
    },
}

/// Where a new instance's gateway proxy device listens: the address and the operator's port
/// range; the store picks the lowest free port in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRequest {
    pub address: std::net::IpAddr,
    pub first: u16,
    pub last: u16,
}

/// Which ports of the range must not be picked although no agent holds them: another program
/// on the host listens there (or a proxy device did not get it). Asked only for ports no agent
/// holds, lowest first, until one is free.
pub type PortAvoid<'a> = &'a dyn Fn(u16) -> bool;

/// What `insert_provisioning` writes for an agent with a gateway: where its proxy listens and the
/// SHA-256 (hex) of its gateway token.
#[derive(Clone, Copy)]
pub struct GatewayAllocation<'a> {
    pub ports: &'a PortRequest,
    pub token_sha256: &'a str,
    pub avoid: PortAvoid<'a>,
}

pub struct Store {
    path: String,
    server_id: String,
    conn: Mutex<Connection>,
}

/// The schema, one migration per version (`PRAGMA user_version` counts the applied ones).
/// Never edit a released migration: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the first release's schema, verbatim. It says IF NOT EXISTS, so a database made before
    // versioning (user_version 0, these tables present) passes through unchanged.
    "
CREATE TABLE IF NOT EXISTS agents (
    id            TEXT PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    name          TEXT,
    instance_name TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL,
    incus         TEXT NOT NULL,
    error         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_owner ON agents(owner, created_at);
",
    // 2: the server's identity (stamped on its instances) and idempotency keys of POST requests.
    "
CREATE TABLE server_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO server_meta (key, value) VALUES ('server_id', lower(hex(randomblob(16))));
ALTER TABLE agents ADD COLUMN idempotency_key TEXT;
ALTER TABLE agents ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX agents_idempotency ON agents(owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
",
    // 3: the Incus cluster member an agent's instance runs on (NULL off a cluster).
    "
ALTER TABLE agents ADD COLUMN location TEXT;
",
    // 4: the ledger of instances this database asked Incus to create (written before the create),
    // so reconcile deletes only instances it can prove it made: a restored copy of the database
    // does not know the names the original created after the copy. Seeded with the names the
    // rows point at.
    "
CREATE TABLE created_instances (
    instance_name TEXT PRIMARY KEY NOT NULL,
    agent_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
INSERT OR IGNORE INTO created_instances (instance_name, agent_id, created_at)
    SELECT instance_name, id, created_at FROM agents;
",
    // 5: gateway reach. One row per instance that holds a host port (its Incus proxy device); the
    // port is the primary key, so no two instances ever share one. A reprovision holds two (old
    // and new instance) until the old one goes. The agent's gateway token is kept only as its
    // SHA-256.
    "
ALTER TABLE agents ADD COLUMN gateway_token_sha256 TEXT;
CREATE TABLE gateway_ports (
    port          INTEGER PRIMARY KEY NOT NULL CHECK (port BETWEEN 1 AND 65535),
    address       TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    instance_name TEXT NOT NULL UNIQUE
);
CREATE INDEX gateway_ports_agent ON gateway_ports(agent_id);
",
    // 6: the warm pool (see `crate::pool`): unclaimed guests this server launched, with the image
    // they run and the hash of the model environment their gateway started with. A claim deletes
    // the member and inserts the agent in one transaction.
    "
CREATE TABLE pool_members (
    instance_name TEXT PRIMARY KEY NOT NULL,
    role          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('launching', 'ready')),
    image         TEXT,
    env_sha256    TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
",
];

/// The schema version this server writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

const COLUMNS: &str = "a.id, a.owner, a.name, a.instance_name, a.state, a.incus, a.error, \
     a.created_at, a.updated_at, a.location, g.address, g.port";

/// The agents with the gateway port of their current instance.
const FROM: &str = "agents a LEFT JOIN gateway_ports g ON g.instance_name = a.instance_name";

/// Columns of an insert into `agents` (no join).
const INSERT_COLUMNS: &str =
    "id, owner, name, instance_name, state, incus, error, created_at, updated_at, location";

/// Current time as RFC 3339 UTC with second precision.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Applies the migrations the database lacks, each in its own transaction.
fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let wrap = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(wrap)?;
    // A negative version is nothing this server wrote: treat it as too new.
    let found = usize::try_from(found).unwrap_or(usize::MAX);
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found) {
        let tx = conn.transaction().map_err(wrap)?;
        tx.execute_batch(sql).map_err(wrap)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )
        .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        tracing::info!(database = %path, version = index + 1, "schema migrated");
    }
    Ok(())
}

/// The database and its -wal/-shm files are readable by the server's user only (they hold owner
/// names and agent parameters). SQLite gives the -wal/-shm files the database file's mode.
fn restrict_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let display = path.display().to_string();
        restrict_files(path).map_err(|source| StoreError::Io {
            path: display.clone(),
            source,
        })?;
        let wrap = |source| StoreError::Sqlite {
            path: display.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        migrate(&mut conn, &display)?;
        let server_id: String = conn
            .query_row(
                "SELECT value FROM server_meta WHERE key = 'server_id'",
                [],
                |row| row.get(0),
            )
            .map_err(wrap)?;
        Ok(Store {
            path: display,
            server_id,
            conn: Mutex::new(conn),
        })
    }

    /// This server's identity: created once with the database, stamped on every instance.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| {
            // Only a unique key collision is a duplicate (a trigger's ABORT is a constraint
            // error too, with another extended code).
            let extended = source.sqlite_error().map(|e| e.extended_code);
            if matches!(
                extended,
                Some(
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
            ) {
                StoreError::Duplicate {
                    path: self.path.clone(),
                }
            } else {
                StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }

    /// The row made by `owner`'s POST with this idempotency key, with the hash of that request.
    pub fn find_idempotent(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<(AgentRecord, Option<String>)>, StoreError> {
        let found = self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS}, a.request_hash FROM {FROM} WHERE a.owner = ?1 AND a.idempotency_key = ?2"
                ),
                params![owner, key],
                |row| Ok((raw_row(row)?, row.get::<_, Option<String>>(12)?)),
            )
            .optional()
        })?;
        found
            .map(|(raw, hash)| Ok((self.decode(raw)?, hash)))
            .transpose()
    }

    /// Unbinds `owner`'s idempotency key from the `failed` row `id` (so a retry may make a new
    /// agent under it); returns whether it did.
    pub fn release_failed_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE agents SET idempotency_key = NULL, request_hash = NULL, updated_at = ?4
                 WHERE id = ?1 AND owner = ?2 AND idempotency_key = ?3 AND state = 'failed'",
                params![id, owner, key, now()],
            )
        })?;
        Ok(changed == 1)
    }

    /// Inserts a new row in state `provisioning`; with `gateway`, also reserves the lowest free
    /// port of the range for its instance, in the same transaction (a full range inserts nothing).
    pub fn insert_provisioning(
        &self,
        id: &str,
        owner: &str,
        name: Option<&str>,
        incus: &IncusProvisionParams,
        idempotency: Option<(&str, &str)>,
        gateway: Option<GatewayAllocation<'_>>,
    ) -> Result<AgentRecord, StoreError> {
        let now = now();
        let mut record = AgentRecord {
            id: id.to_owned(),
            owner: owner.to_owned(),
            name: name.map(str::to_owned),
            instance_name: incus_keys::instance_name(id),
            state: AgentState::Provisioning,
            incus: incus.clone(),
            location: None,
            gateway_url: None,
            error: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let port = self.with_tx(|tx| insert_agent(tx, &record, idempotency, gateway.as_ref()))?;
        if let (Some(port), Some(g)) = (port, &gateway) {
            record.gateway_url = Some(gateway_url(g.ports.address, port));
        }
        Ok(record)
    }

    /// Records that this database is about to ask Incus to create `instance_name` for `agent_id`
    /// (before the create, so a crash right after it still leaves the proof).
    pub fn record_created(&self, instance_name: &str, agent_id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO created_instances (instance_name, agent_id, created_at)
                 VALUES (?1, ?2, ?3)",
                params![instance_name, agent_id, now()],
            )
        })?;
        Ok(())
    }

    /// The instance names this database created (and has not seen removed), with their agent.
    pub fn created_instances(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT instance_name, agent_id FROM created_instances")?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// Drops a ledger entry once its instance is known to be gone.
    pub fn forget_created(&self, instance_name: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM created_instances WHERE instance_name = ?1",
                params![instance_name],
            )
        })?;
        Ok(())
    }

    /// Reserves the lowest free port of the range that `avoid` does not refuse for
    /// `instance_name` (a reprovision's new instance, a retry after a bind failed) and returns it.
    pub fn reserve_port(
        &self,
        ports: &PortRequest,
        agent_id: &str,
        instance_name: &str,
        avoid: PortAvoid<'_>,
    ) -> Result<u16, StoreError> {
        self.with_tx(|tx| reserve_port(tx, ports, agent_id, instance_name, avoid))
    }

    /// Gives the port `port` (held by `from`) to `to`: a reprovision's new instance takes over
    /// the agent's port once the old instance is gone. Frees what `to` held before.
    pub fn move_port(&self, port: u16, from: &str, to: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            tx.execute(
                "DELETE FROM gateway_ports WHERE instance_name = ?1",
                params![to],
            )
            .map_err(Tx::Sql)?;
            tx.execute(
                "UPDATE gateway_ports SET instance_name = ?3 WHERE port = ?1 AND instance_name = ?2",
                params![port, from, to],
            )
            .map_err(Tx::Sql)?;
            Ok(())
        })
    }

    /// Frees the port held by `instance_name` (its instance is gone or was never made).
    pub fn release_port(&self, instance_name: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM gateway_ports WHERE instance_name = ?1",
                params![instance_name],
            )
        })?;
        Ok(())
    }

    /// Frees every port held for an instance that is no agent's current one (left by a
    /// reprovision that a crash interrupted), or whose agent is `failed` or `lost` (its
    /// instance is gone), except warm-pool members'; returns how many. Only while no request runs (reconcile).
    pub fn release_unused_ports(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM gateway_ports WHERE NOT EXISTS (
                     SELECT 1 FROM agents a WHERE a.instance_name = gateway_ports.instance_name
                     AND a.state NOT IN ('failed', 'lost'))
                 AND instance_name NOT IN (SELECT instance_name FROM pool_members)",
                [],
            )
        })
    }

    /// Where the proxy device of `instance_name` listens, if it holds a port.
    pub fn gateway_address(
        &self,
        instance_name: &str,
    ) -> Result<Option<std::net::SocketAddr>, StoreError> {
        let found: Option<(String, i64)> = self.with(|c| {
            c.query_row(
                "SELECT address, port FROM gateway_ports WHERE instance_name = ?1",
                params![instance_name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
        })?;
        found
            .map(|(address, port)| {
                socket_address(&address, port).ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    id: instance_name.to_owned(),
                    message: format!("gateway port {address}:{port} is unreadable"),
                })
            })
            .transpose()
    }

    /// Every (instance name, listen address) that holds a port.
    pub fn gateway_ports(&self) -> Result<Vec<(String, std::net::SocketAddr)>, StoreError> {
        let rows: Vec<(String, String, i64)> = self.with(|c| {
            let mut stmt =
                c.prepare("SELECT instance_name, address, port FROM gateway_ports ORDER BY port")?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, address, port)| Some((name, socket_address(&address, port)?)))
            .collect())
    }

    /// Records the SHA-256 (hex) of an agent's current gateway token.
    pub fn set_gateway_token_sha256(&self, id: &str, sha256: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE agents SET gateway_token_sha256 = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, sha256, now()],
            )
        })?;
        Ok(())
    }

    /// The SHA-256 (hex) of an agent's current gateway token.
    pub fn gateway_token_sha256(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .with(|c| {
                c.query_row(
                    "SELECT gateway_token_sha256 FROM agents WHERE id = ?1",
                    params![id],
                    |row| row.get::<_, Option<String>>(0),
                )
                .optional()
            })?
            .flatten())
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, Tx>,
    ) -> Result<T, StoreError> {
        let mut outcome = None;
        let result = self.with(|c| {
            let tx = c.unchecked_transaction()?;
            match f(&tx) {
                Ok(value) => {
                    tx.commit()?;
                    outcome = Some(Ok(value));
                }
                Err(Tx::Sql(err)) => return Err(err),
                Err(Tx::Store(err)) => outcome = Some(Err(err)),
            }
            Ok(())
        });
        result?;
        outcome.expect("the transaction ran")
    }

    /// One row, whoever owns it.
    pub fn get(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE a.id = ?1"),
                params![id],
                raw_row,
            )
            .optional()
        })?;
        row.map(|raw| self.decode(raw)).transpose()
    }

    /// One row of `owner` (another owner's row reads as absent).
    pub fn get_owned(&self, owner: &str, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self.get(id)?.filter(|record| record.owner == owner))
    }

    /// Rows of `owner`, oldest first; all rows when `owner` is `None`.
    pub fn list(&self, owner: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let raws = self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE ?1 IS NULL OR a.owner = ?1 ORDER BY a.created_at, a.id"
            ))?;
            let rows = stmt.query_map(params![owner], raw_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raws.into_iter().map(|raw| self.decode(raw)).collect()
    }

    /// Moves a row to `to` only when it is currently in one of `from`; returns whether it moved.
    pub fn transition(
        &self,
        id: &str,
        from: &[AgentState],
        to: AgentState,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let from_json = serde_json::to_string(&from).expect("states serialize");
        let changed = self.with(|c| {
            c.execute(
                "UPDATE agents SET state = ?2, error = ?3, updated_at = ?4
                 WHERE id = ?1 AND state IN (SELECT value FROM json_each(?5))",
                params![id, to.as_str(), error, now(), from_json],
            )
        })?;
        Ok(changed == 1)
    }

    /// Marks a `running` or `unreachable` row `lost`, only while it still points at
    /// `instance_name`; returns whether it did.
    pub fn mark_lost(
        &self,
        id: &str,
        instance_name: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE agents SET state = 'lost', error = ?3, updated_at = ?4
                 WHERE id = ?1 AND instance_name = ?2 AND state IN ('running', 'unreachable')",
                params![id, instance_name, error, now()],
            )
        })?;
        Ok(changed == 1)
    }

    /// Sets state, error and parameters of a row unconditionally.
    pub fn update(
        &self,
        id: &str,
        state: AgentState,
        error: Option<&str>,
        incus: &IncusProvisionParams,
    ) -> Result<(), StoreError> {
        let incus_json = serde_json::to_string(incus).expect("params serialize");
        self.with(|c| {
            c.execute(
                "UPDATE agents SET state = ?2, error = ?3, incus = ?4, updated_at = ?5 WHERE id = ?1",
                params![id, state.as_str(), error, incus_json, now()],
            )
        })?;
        Ok(())
    }

    /// Points a row at a new instance with new parameters (reprovision, before the old instance goes).
    pub fn set_instance(
        &self,
        id: &str,
        instance_name: &str,
        incus: &IncusProvisionParams,
    ) -> Result<(), StoreError> {
        let incus_json = serde_json::to_string(incus).expect("params serialize");
        self.with(|c| {
            c.execute(
                "UPDATE agents SET instance_name = ?2, incus = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, instance_name, incus_json, now()],
            )
        })?;
        Ok(())
    }

    /// Records the cluster member an agent's instance runs on (`None` off a cluster).
    pub fn set_location(&self, id: &str, location: Option<&str>) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE agents SET location = ?2, updated_at = ?3
                 WHERE id = ?1 AND location IS NOT ?2",
                params![id, location, now()],
            )
        })?;
        Ok(())
    }

    /// Deletes the row and frees every port it held.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            tx.execute("DELETE FROM gateway_ports WHERE agent_id = ?1", params![id])
                .map_err(Tx::Sql)?;
            tx.execute("DELETE FROM agents WHERE id = ?1", params![id])
                .map_err(Tx::Sql)
        })?;
        Ok(())
    }

    fn decode(&self, raw: RawRow) -> Result<AgentRecord, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            id: raw.id.clone(),
            message,
        };
        let state = raw.state.parse::<AgentState>().map_err(corrupt)?;
        let incus = serde_json::from_str(&raw.incus)
            .map_err(|err| corrupt(format!("column incus: {err}")))?;
        let gateway_url = match (raw.gateway_address, raw.gateway_port) {
            (Some(address), Some(port)) => Some(
                socket_address(&address, port)
                    .map(|addr| gateway_url(addr.ip(), addr.port()))
                    .ok_or_else(|| corrupt(format!("gateway port {address}:{port}")))?,
            ),
            _ => None,
        };
        Ok(AgentRecord {
            id: raw.id,
            owner: raw.owner,
            name: raw.name,
            instance_name: raw.instance_name,
            state,
            incus,
            location: raw.location,
            gateway_url,
            error: raw.error,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

struct RawRow {
    id: String,
    owner: String,
    name: Option<String>,
    instance_name: String,
    state: String,
    incus: String,
    error: Option<String>,
    created_at: String,
    updated_at: String,
    location: Option<String>,
    gateway_address: Option<String>,
    gateway_port: Option<i64>,
}

/// A failure inside a transaction: SQL (rolled back and mapped like any), or the store's own.
enum Tx {
    Sql(rusqlite::Error),
    Store(StoreError),
}

/// Inserts an agent row (state as in `record`) with its ledger entry and, with `gateway`, a port.
fn insert_agent(
    tx: &rusqlite::Transaction<'_>,
    record: &AgentRecord,
    idempotency: Option<(&str, &str)>,
    gateway: Option<&GatewayAllocation<'_>>,
) -> Result<Option<u16>, Tx> {
    let incus_json = serde_json::to_string(&record.incus).expect("params serialize");
    tx.execute(
        &format!(
            "INSERT INTO agents ({INSERT_COLUMNS}, idempotency_key, request_hash, gateway_token_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            record.id,
            record.owner,
            record.name,
            record.instance_name,
            record.state.as_str(),
            incus_json,
            record.error,
            record.created_at,
            record.updated_at,
            record.location,
            idempotency.map(|(key, _)| key),
            idempotency.map(|(_, hash)| hash),
            gateway.as_ref().map(|g| g.token_sha256),
        ],
    )
    .map_err(Tx::Sql)?;
    // The ledger entry (reconcile deletes only instances it names) in the same transaction.
    tx.execute(
        "INSERT OR IGNORE INTO created_instances (instance_name, agent_id, created_at)
         VALUES (?1, ?2, ?3)",
        params![record.instance_name, record.id, record.created_at],
    )
    .map_err(Tx::Sql)?;
    match &gateway {
        None => Ok(None),
        Some(g) => reserve_port(tx, g.ports, &record.id, &record.instance_name, g.avoid).map(Some),
    }
}

/// The lowest port of the range that no instance holds and `avoid` does not refuse, reserved for
/// `instance_name`.
fn reserve_port(
    tx: &rusqlite::Transaction<'_>,
    ports: &PortRequest,
    agent_id: &str,
    instance_name: &str,
    avoid: PortAvoid<'_>,
) -> Result<u16, Tx> {
    let taken: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT port FROM gateway_ports WHERE port BETWEEN ?1 AND ?2 ORDER BY port")
            .map_err(Tx::Sql)?;
        let rows = stmt
            .query_map(params![ports.first, ports.last], |row| row.get(0))
            .map_err(Tx::Sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Tx::Sql)?
    };
    let agents = taken.len();
    let mut taken = taken.into_iter().peekable();
    let mut in_use = 0;
    let free = (ports.first..=ports.last).find(|port| {
        while taken.peek().is_some_and(|t| *t < i64::from(*port)) {
            taken.next();
        }
        if taken.peek() == Some(&i64::from(*port)) {
            return false;
        }
        if avoid(*port) {
            in_use += 1;
            return false;
        }
        true
    });
    let Some(port) = free else {
        return Err(Tx::Store(StoreError::PortsExhausted {
            first: ports.first,
            last: ports.last,
            agents,
            in_use,
            var: crate::config::ENV_GATEWAY_PORTS,
        }));
    };
    tx.execute(
        "INSERT INTO gateway_ports (port, address, agent_id, instance_name) VALUES (?1, ?2, ?3, ?4)",
        params![port, ports.address.to_string(), agent_id, instance_name],
    )
    .map_err(Tx::Sql)?;
    Ok(port)
}

fn socket_address(address: &str, port: i64) -> Option<std::net::SocketAddr> {
    Some(std::net::SocketAddr::new(
        address.parse().ok()?,
        u16::try_from(port).ok()?,
    ))
}

/// `http://ADDR:PORT` (IPv6 in brackets).
pub fn gateway_url(address: std::net::IpAddr, port: u16) -> String {
    format!("http://{}", std::net::SocketAddr::new(address, port))
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        owner: row.get(1)?,
        name: row.get(2)?,
        instance_name: row.get(3)?,
        state: row.get(4)?,
        incus: row.get(5)?,
        error: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        location: row.get(9)?,
        gateway_address: row.get(10)?,
        gateway_port: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pika_managed_agent_contract::IncusGuestRole;

    fn params() -> IncusProvisionParams {
        IncusProvisionParams {
            guest_role: Some(IncusGuestRole::ManagedOpenclaw),
            project: Some("p".into()),
            ..Default::default()
        }
    }

    #[test]
    fn rows_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.db");
        let store = Store::open(&path).unwrap();
        let a = store
            .insert_provisioning("a1", "alice", Some("bot"), &params(), None, None)
            .unwrap();
        store
            .insert_provisioning("b1", "bob", None, &params(), None, None)
            .unwrap();
        assert_eq!(a.instance_name, "pika-agent-a1");
        assert_eq!(store.get("a1").unwrap().unwrap(), a);
        assert!(store.get_owned("bob", "a1").unwrap().is_none());
        assert_eq!(store.list(Some("alice")).unwrap().len(), 1);
        assert_eq!(store.list(None).unwrap().len(), 2);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get("a1").unwrap().unwrap().incus, params());
    }

    #[test]
    fn the_location_is_recorded_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.db");
        let store = Store::open(&path).unwrap();
        let row = store
            .insert_provisioning("a1", "alice", None, &params(), None, None)
            .unwrap();
        assert_eq!(row.location, None);
        store.set_location("a1", Some("node2")).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.get("a1").unwrap().unwrap().location.as_deref(),
            Some("node2")
        );
        store.set_location("a1", None).unwrap();
        assert_eq!(store.get("a1").unwrap().unwrap().location, None);
    }

    #[test]
    fn transitions_are_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        store
            .insert_provisioning("a1", "alice", None, &params(), None, None)
            .unwrap();
        assert!(
            !store
                .transition("a1", &[AgentState::Running], AgentState::Deleting, None)
                .unwrap()
        );
        assert!(
            store
                .transition(
                    "a1",
                    &[AgentState::Provisioning],
                    AgentState::Failed,
                    Some("boom")
                )
                .unwrap()
        );
        let row = store.get("a1").unwrap().unwrap();
        assert_eq!(row.state, AgentState::Failed);
        assert_eq!(row.error.as_deref(), Some("boom"));
        store.delete("a1").unwrap();
        assert!(store.get("a1").unwrap().is_none());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        store
            .insert_provisioning("a1", "alice", None, &params(), None, None)
            .unwrap();
        assert!(
            store
                .insert_provisioning("a1", "bob", None, &params(), None, None)
                .is_err()
        );
    }

    /// The schema of the release before versioned migrations, byte for byte, as it created
    /// databases (`CREATE TABLE IF NOT EXISTS`, user_version 0).
    const FIRST_RELEASE_DDL: &str = "
CREATE TABLE IF NOT EXISTS agents (
    id            TEXT PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    name          TEXT,
    instance_name TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL,
    incus         TEXT NOT NULL,
    error         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_owner ON agents(owner, created_at);
";

    #[test]
    fn a_database_of_the_first_release_upgrades_without_losing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch(FIRST_RELEASE_DDL).unwrap();
            for (id, owner, state) in [
                ("a1", "alice", "running"),
                ("b1", "bob", "failed"),
                ("c1", "alice", "provisioning"),
            ] {
                conn.execute(
                    "INSERT INTO agents VALUES (?1, ?2, 'n', ?3, ?4, ?5, NULL, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                    params![id, owner, format!("pika-agent-{id}"), state, serde_json::to_string(&params()).unwrap()],
                )
                .unwrap();
            }
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, 0, "the first release did not version its schema");
        }
        let store = Store::open(&path).unwrap();
        let rows = store.list(None).unwrap();
        assert_eq!(rows.len(), 3, "every row survived");
        assert_eq!(rows[0].id, "a1");
        assert_eq!(rows[0].state, AgentState::Running);
        assert_eq!(rows[0].incus, params());
        assert_eq!(store.server_id().len(), 32);
        // The new columns work on the upgraded database.
        store
            .insert_provisioning("d1", "alice", None, &params(), Some(("k1", "h1")), None)
            .unwrap();
        let (found, hash) = store.find_idempotent("alice", "k1").unwrap().unwrap();
        assert_eq!((found.id.as_str(), hash.as_deref()), ("d1", Some("h1")));
        let server_id = store.server_id().to_owned();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.server_id(), server_id, "the identity is created once");
        assert_eq!(store.list(None).unwrap().len(), 4);
    }

    #[test]
    fn a_newer_schema_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(
            None,
            "user_version",
            i64::try_from(SCHEMA_VERSION + 1).unwrap(),
        )
        .unwrap();
        drop(conn);
        let err = Store::open(&path).err().expect("refused").to_string();
        assert!(
            err.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
    }

    #[test]
    fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/agents.db");
        let store = Store::open(&path).unwrap();
        store
            .insert_provisioning("a1", "alice", None, &params(), None, None)
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        // A database made with a looser mode is tightened when opened.
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = Store::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    fn ports(first: u16, last: u16) -> PortRequest {
        PortRequest {
            address: "127.0.0.1".parse().unwrap(),
            first,
            last,
        }
    }

    #[test]
    fn gateway_ports_are_never_shared_and_a_full_range_inserts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.db");
        let store = Store::open(&path).unwrap();
        let range = ports(18800, 18801);
        let gateway = || {
            Some(GatewayAllocation {
                ports: &range,
                token_sha256: "h",
                avoid: &|_| false,
            })
        };
        let a = store
            .insert_provisioning("a1", "alice", None, &params(), None, gateway())
            .unwrap();
        let b = store
            .insert_provisioning("b1", "bob", None, &params(), None, gateway())
            .unwrap();
        assert_eq!(a.gateway_url.as_deref(), Some("http://127.0.0.1:18800"));
        assert_eq!(b.gateway_url.as_deref(), Some("http://127.0.0.1:18801"));
        let err = store
            .insert_provisioning("c1", "carol", None, &params(), None, gateway())
            .unwrap_err();
        assert!(matches!(err, StoreError::PortsExhausted { .. }), "{err}");
        assert!(err.to_string().contains("18800-18801"), "{err}");
        assert!(
            store.get("c1").unwrap().is_none(),
            "no row for a full range"
        );
        // The database itself refuses a second holder of a port.
        let conn = Connection::open(&path).unwrap();
        let dup = conn.execute(
            "INSERT INTO gateway_ports (port, address, agent_id, instance_name) VALUES (18800, '127.0.0.1', 'x', 'y')",
            [],
        );
        assert!(dup.is_err(), "the port is the primary key");
        // Ports and the token hash survive a reopen; a delete frees the port.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get("a1").unwrap().unwrap(), a);
        assert_eq!(
            store.gateway_token_sha256("a1").unwrap().as_deref(),
            Some("h")
        );
        store.delete("a1").unwrap();
        let c = store
            .insert_provisioning("c1", "carol", None, &params(), None, gateway())
            .unwrap();
        assert_eq!(c.gateway_url.as_deref(), Some("http://127.0.0.1:18800"));
    }

    #[test]
    fn ports_in_use_by_others_are_skipped_and_count_in_the_exhausted_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        let range = ports(18800, 18802);
        let asked = std::cell::RefCell::new(Vec::new());
        let busy = |port: u16| {
            asked.borrow_mut().push(port);
            port == 18800
        };
        let gateway = GatewayAllocation {
            ports: &range,
            token_sha256: "h",
            avoid: &busy,
        };
        let a = store
            .insert_provisioning("a1", "alice", None, &params(), None, Some(gateway))
            .unwrap();
        assert_eq!(a.gateway_url.as_deref(), Some("http://127.0.0.1:18801"));
        assert_eq!(
            *asked.borrow(),
            [18800, 18801],
            "lowest first, until one is free"
        );
        asked.borrow_mut().clear();
        // Ports agents hold are never probed.
        let port = store
            .reserve_port(&range, "b1", "pika-agent-b1", &busy)
            .unwrap();
        assert_eq!(port, 18802);
        assert_eq!(*asked.borrow(), [18800, 18802]);
        let err = store
            .insert_provisioning("c1", "carol", None, &params(), None, Some(gateway))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::PortsExhausted {
                    agents: 2,
                    in_use: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("1 in use by other programs"),
            "{err}"
        );
        assert!(
            store.get("c1").unwrap().is_none(),
            "no row for a full range"
        );
        // A reprovision's new instance hands the agent's port over.
        store
            .move_port(18801, "pika-agent-a1", "pika-agent-b1")
            .unwrap();
        assert_eq!(
            store.gateway_address("pika-agent-b1").unwrap(),
            Some("127.0.0.1:18801".parse().unwrap())
        );
        assert_eq!(store.gateway_address("pika-agent-a1").unwrap(), None);
        assert_eq!(store.gateway_ports().unwrap().len(), 1, "18802 was freed");
    }

    #[test]
    fn a_reprovision_holds_a_second_port_until_the_old_instance_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        let range = ports(18800, 18809);
        let gateway = GatewayAllocation {
            ports: &range,
            token_sha256: "h",
            avoid: &|_| false,
        };
        store
            .insert_provisioning("a1", "alice", None, &params(), None, Some(gateway))
            .unwrap();
        let port = store
            .reserve_port(&range, "a1", "pika-agent-a1-x", &|_| false)
            .unwrap();
        assert_eq!(port, 18801);
        assert_eq!(
            store.release_unused_ports().unwrap(),
            1,
            "the new instance is not current"
        );
        let port = store
            .reserve_port(&range, "a1", "pika-agent-a1-x", &|_| false)
            .unwrap();
        store
            .set_instance("a1", "pika-agent-a1-x", &params())
            .unwrap();
        store.release_port("pika-agent-a1").unwrap();
        assert_eq!(
            store.get("a1").unwrap().unwrap().gateway_url,
            Some(format!("http://127.0.0.1:{port}"))
        );
        assert_eq!(store.release_unused_ports().unwrap(), 0);
    }

    #[test]
    fn one_idempotency_key_makes_one_row_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        store
            .insert_provisioning("a1", "alice", None, &params(), Some(("k", "h")), None)
            .unwrap();
        let err = store
            .insert_provisioning("a2", "alice", None, &params(), Some(("k", "h")), None)
            .unwrap_err();
        assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
        store
            .insert_provisioning("b1", "bob", None, &params(), Some(("k", "h")), None)
            .unwrap();
        assert!(store.find_idempotent("carol", "k").unwrap().is_none());
    }
}
