//! The warm pool's rows (see [`crate::pool`]): one per unclaimed guest this server launched.
//!
//! A member is written (`launching`, with its ledger entry and its gateway port) before Incus
//! hears of it, becomes `ready` once its gateway answers, and leaves the table either by a claim
//! (in the transaction that inserts the agent, so no guest is ever claimed twice) or by a drain.

use pika_managed_agent_contract::AgentRecord;
use rusqlite::{OptionalExtension, params};

use super::{
    PortAvoid, PortRequest, Store, StoreError, Tx, gateway_url, insert_agent, now, reserve_port,
};

/// The ledger's agent ID of a pool member (no agent yet).
const POOL_LEDGER_AGENT: &str = "";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMemberState {
    Launching,
    Ready,
}

impl PoolMemberState {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "launching" => Some(PoolMemberState::Launching),
            "ready" => Some(PoolMemberState::Ready),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolMember {
    pub instance_name: String,
    pub role: String,
    pub state: PoolMemberState,
    /// The fingerprint of the image it runs (`volatile.base_image`), once ready.
    pub image: Option<String>,
    /// SHA-256 of the model environment its gateway started with.
    pub env_sha256: String,
}

/// Which member a claim may take: the role, the image its alias serves now, and the model
/// environment the agent gets (a gateway takes a new token in place, but not a new environment).
pub struct PoolClaim<'a> {
    pub role: &'a str,
    pub image: &'a str,
    pub env_sha256: &'a str,
}

impl Store {
    /// Records a member about to be launched: its row, its ledger entry (so reconcile may remove
    /// it after a crash) and, with `ports`, its gateway port, in one transaction.
    pub fn pool_launching(
        &self,
        instance_name: &str,
        role: &str,
        env_sha256: &str,
        ports: Option<(&PortRequest, PortAvoid<'_>)>,
    ) -> Result<Option<std::net::SocketAddr>, StoreError> {
        let at = now();
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO pool_members (instance_name, role, state, env_sha256, created_at)
                 VALUES (?1, ?2, 'launching', ?3, ?4)",
                params![instance_name, role, env_sha256, at],
            )
            .map_err(Tx::Sql)?;
            tx.execute(
                "INSERT OR REPLACE INTO created_instances (instance_name, agent_id, created_at)
                 VALUES (?1, ?2, ?3)",
                params![instance_name, POOL_LEDGER_AGENT, at],
            )
            .map_err(Tx::Sql)?;
            match ports {
                None => Ok(None),
                Some((ports, avoid)) => {
                    reserve_port(tx, ports, POOL_LEDGER_AGENT, instance_name, avoid)
                        .map(|port| Some(std::net::SocketAddr::new(ports.address, port)))
                }
            }
        })
    }

    /// Marks a launched member ready, running `image`; false when it is no longer a member.
    pub fn pool_ready(&self, instance_name: &str, image: &str) -> Result<bool, StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE pool_members SET state = 'ready', image = ?2
                 WHERE instance_name = ?1 AND state = 'launching'",
                params![instance_name, image],
            )
        })?;
        Ok(changed == 1)
    }

    /// Takes a member out of the pool (to drain or forget it) with its port, unless a claim took
    /// it first; returns whether it did. The ledger entry stays until the instance is gone.
    pub fn pool_remove(&self, instance_name: &str) -> Result<bool, StoreError> {
        self.with_tx(|tx| {
            let changed = tx
                .execute(
                    "DELETE FROM pool_members WHERE instance_name = ?1",
                    params![instance_name],
                )
                .map_err(Tx::Sql)?;
            if changed == 1 {
                tx.execute(
                    "DELETE FROM gateway_ports WHERE instance_name = ?1 AND agent_id = ?2",
                    params![instance_name, POOL_LEDGER_AGENT],
                )
                .map_err(Tx::Sql)?;
            }
            Ok(changed == 1)
        })
    }

    /// Every member, oldest first.
    pub fn pool_members(&self) -> Result<Vec<PoolMember>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>, String)> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT instance_name, role, state, image, env_sha256 FROM pool_members
                 ORDER BY created_at, instance_name",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(instance_name, role, state, image, env_sha256)| {
                let state = PoolMemberState::parse(&state).ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    id: instance_name.clone(),
                    message: format!("pool member state {state:?}"),
                })?;
                Ok(PoolMember {
                    instance_name,
                    role,
                    state,
                    image,
                    env_sha256,
                })
            })
            .collect()
    }

    /// Claims the oldest ready member that `claim` accepts for a new agent, in one transaction:
    /// the member leaves the pool, the agent's row (`record`, whose instance name becomes the
    /// member's) is inserted, the ledger entry and the member's port pass to the agent. `None`
    /// (nothing written) when no member fits.
    pub fn claim_pool_member(
        &self,
        claim: &PoolClaim<'_>,
        mut record: AgentRecord,
        idempotency: Option<(&str, &str)>,
        token_sha256: Option<&str>,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let claimed = self.with_tx(|tx| {
            let name: Option<String> = tx
                .query_row(
                    "SELECT instance_name FROM pool_members
                     WHERE role = ?1 AND state = 'ready' AND image = ?2 AND env_sha256 = ?3
                     ORDER BY created_at, instance_name LIMIT 1",
                    params![claim.role, claim.image, claim.env_sha256],
                    |row| row.get(0),
                )
                .optional()
                .map_err(Tx::Sql)?;
            let Some(name) = name else {
                return Ok(None);
            };
            tx.execute(
                "DELETE FROM pool_members WHERE instance_name = ?1",
                params![name],
            )
            .map_err(Tx::Sql)?;
            tx.execute(
                "UPDATE created_instances SET agent_id = ?2 WHERE instance_name = ?1",
                params![name, record.id],
            )
            .map_err(Tx::Sql)?;
            record.instance_name = name.clone();
            insert_agent(tx, &record, idempotency, None)?;
            tx.execute(
                "UPDATE agents SET gateway_token_sha256 = ?2 WHERE id = ?1",
                params![record.id, token_sha256],
            )
            .map_err(Tx::Sql)?;
            tx.execute(
                "UPDATE gateway_ports SET agent_id = ?2 WHERE instance_name = ?1",
                params![name, record.id],
            )
            .map_err(Tx::Sql)?;
            let port: Option<(String, i64)> = tx
                .query_row(
                    "SELECT address, port FROM gateway_ports WHERE instance_name = ?1",
                    params![name],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(Tx::Sql)?;
            Ok(Some((record, port)))
        })?;
        Ok(claimed.map(|(mut record, port)| {
            record.gateway_url = port.and_then(|(address, port)| {
                let addr = super::socket_address(&address, port)?;
                Some(gateway_url(addr.ip(), addr.port()))
            });
            record
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pika_managed_agent_contract::{AgentState, IncusProvisionParams};

    fn record(id: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            owner: "alice".into(),
            name: None,
            instance_name: String::new(),
            state: AgentState::Provisioning,
            incus: IncusProvisionParams::default(),
            location: None,
            gateway_url: None,
            error: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    #[test]
    fn a_member_is_claimed_once_with_its_port_and_ledger_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        let ports = PortRequest {
            address: "127.0.0.1".parse().unwrap(),
            first: 18800,
            last: 18809,
        };
        let addr = store
            .pool_launching("pika-agent-pool-1", "r", "e", Some((&ports, &|_| false)))
            .unwrap()
            .unwrap();
        let claim = PoolClaim {
            role: "r",
            image: "img",
            env_sha256: "e",
        };
        assert!(
            store
                .claim_pool_member(&claim, record("a1"), None, Some("h"))
                .unwrap()
                .is_none(),
            "a launching member is not claimable"
        );
        assert!(store.pool_ready("pika-agent-pool-1", "img").unwrap());
        for stale in [
            PoolClaim {
                image: "other",
                ..claim
            },
            PoolClaim {
                env_sha256: "other",
                ..claim
            },
        ] {
            assert!(
                store
                    .claim_pool_member(&stale, record("a1"), None, Some("h"))
                    .unwrap()
                    .is_none(),
                "another image or environment is not claimed"
            );
        }
        let claimed = store
            .claim_pool_member(&claim, record("a1"), None, Some("h"))
            .unwrap()
            .unwrap();
        assert_eq!(claimed.instance_name, "pika-agent-pool-1");
        assert_eq!(claimed.gateway_url, Some(format!("http://{addr}")));
        assert_eq!(store.get("a1").unwrap().unwrap(), claimed);
        assert_eq!(
            store.gateway_token_sha256("a1").unwrap().as_deref(),
            Some("h")
        );
        assert_eq!(
            store.created_instances().unwrap().get("pika-agent-pool-1"),
            Some(&"a1".to_owned())
        );
        assert!(store.pool_members().unwrap().is_empty());
        assert!(
            store
                .claim_pool_member(&claim, record("b1"), None, Some("h"))
                .unwrap()
                .is_none(),
            "claimed once"
        );
        assert_eq!(store.release_unused_ports().unwrap(), 0, "the agent's port");
    }

    #[test]
    fn a_members_port_is_not_freed_by_reconcile_and_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agents.db")).unwrap();
        let ports = PortRequest {
            address: "127.0.0.1".parse().unwrap(),
            first: 18800,
            last: 18800,
        };
        store
            .pool_launching("pika-agent-pool-1", "r", "e", Some((&ports, &|_| false)))
            .unwrap();
        assert_eq!(store.release_unused_ports().unwrap(), 0);
        assert!(
            store
                .gateway_address("pika-agent-pool-1")
                .unwrap()
                .is_some()
        );
        assert!(store.pool_remove("pika-agent-pool-1").unwrap());
        assert!(!store.pool_remove("pika-agent-pool-1").unwrap());
        assert!(
            store
                .gateway_address("pika-agent-pool-1")
                .unwrap()
                .is_none()
        );
    }
}
