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
];

/// The schema version this server writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

const COLUMNS: &str =
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
                    "SELECT {COLUMNS}, request_hash FROM agents WHERE owner = ?1 AND idempotency_key = ?2"
                ),
                params![owner, key],
                |row| Ok((raw_row(row)?, row.get::<_, Option<String>>(10)?)),
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

    /// Inserts a new row in state `provisioning`.
    pub fn insert_provisioning(
        &self,
        id: &str,
        owner: &str,
        name: Option<&str>,
        incus: &IncusProvisionParams,
        idempotency: Option<(&str, &str)>,
    ) -> Result<AgentRecord, StoreError> {
        let now = now();
        let record = AgentRecord {
            id: id.to_owned(),
            owner: owner.to_owned(),
            name: name.map(str::to_owned),
            instance_name: incus_keys::instance_name(id),
            state: AgentState::Provisioning,
            incus: incus.clone(),
            location: None,
            error: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let incus_json = serde_json::to_string(&record.incus).expect("params serialize");
        self.with(|c| {
            // Row and ledger entry together: `c` is the one connection, so a savepoint keeps
            // them atomic.
            c.execute_batch("SAVEPOINT insert_provisioning")?;
            let inserted = c
                .execute(
                    &format!(
                        "INSERT INTO agents ({COLUMNS}, idempotency_key, request_hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
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
                    ],
                )
                .and_then(|_| {
                    c.execute(
                    "INSERT OR IGNORE INTO created_instances (instance_name, agent_id, created_at)
                     VALUES (?1, ?2, ?3)",
                    params![record.instance_name, record.id, record.created_at],
                )
                });
            match inserted {
                Ok(_) => c.execute_batch("RELEASE insert_provisioning"),
                Err(err) => {
                    let _ = c.execute_batch(
                        "ROLLBACK TO insert_provisioning; RELEASE insert_provisioning",
                    );
                    Err(err)
                }
            }
        })?;
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

    /// One row, whoever owns it.
    pub fn get(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"),
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
                "SELECT {COLUMNS} FROM agents WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id"
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

    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM agents WHERE id = ?1", params![id]))?;
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
        Ok(AgentRecord {
            id: raw.id,
            owner: raw.owner,
            name: raw.name,
            instance_name: raw.instance_name,
            state,
            incus,
            location: raw.location,
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
            .insert_provisioning("a1", "alice", Some("bot"), &params(), None)
            .unwrap();
        store
            .insert_provisioning("b1", "bob", None, &params(), None)
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
            .insert_provisioning("a1", "alice", None, &params(), None)
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
            .insert_provisioning("a1", "alice", None, &params(), None)
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
            .insert_provisioning("a1", "alice", None, &params(), None)
            .unwrap();
        assert!(
            store
                .insert_provisioning("a1", "bob", None, &params(), None)
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
            .insert_provisioning("d1", "alice", None, &params(), Some(("k1", "h1")))
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
            .insert_provisioning("a1", "alice", None, &params(), None)
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

    #[test]
    fn one_idempotency_key_makes_one_row_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        store
            .insert_provisioning("a1", "alice", None, &params(), Some(("k", "h")))
            .unwrap();
        let err = store
            .insert_provisioning("a2", "alice", None, &params(), Some(("k", "h")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
        store
            .insert_provisioning("b1", "bob", None, &params(), Some(("k", "h")))
            .unwrap();
        assert!(store.find_idempotent("carol", "k").unwrap().is_none());
    }
}
