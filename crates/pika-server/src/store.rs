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
    #[error("database {path}: row {id} is unreadable: {message}")]
    Corrupt {
        path: String,
        id: String,
        message: String,
    },
}

pub struct Store {
    path: String,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
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

const COLUMNS: &str = "id, owner, name, instance_name, state, incus, error, created_at, updated_at";

/// Current time as RFC 3339 UTC with second precision.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let display = path.display().to_string();
        let wrap = |source| StoreError::Sqlite {
            path: display.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        Ok(Store {
            path: display,
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Inserts a new row in state `provisioning`.
    pub fn insert_provisioning(
        &self,
        id: &str,
        owner: &str,
        name: Option<&str>,
        incus: &IncusProvisionParams,
    ) -> Result<AgentRecord, StoreError> {
        let now = now();
        let record = AgentRecord {
            id: id.to_owned(),
            owner: owner.to_owned(),
            name: name.map(str::to_owned),
            instance_name: incus_keys::instance_name(id),
            state: AgentState::Provisioning,
            incus: incus.clone(),
            error: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let incus_json = serde_json::to_string(&record.incus).expect("params serialize");
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO agents ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
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
                    record.updated_at
                ],
            )
        })?;
        Ok(record)
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
            .insert_provisioning("a1", "alice", Some("bot"), &params())
            .unwrap();
        store
            .insert_provisioning("b1", "bob", None, &params())
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
    fn transitions_are_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        store
            .insert_provisioning("a1", "alice", None, &params())
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
            .insert_provisioning("a1", "alice", None, &params())
            .unwrap();
        assert!(
            store
                .insert_provisioning("a1", "bob", None, &params())
                .is_err()
        );
    }
}
