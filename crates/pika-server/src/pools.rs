//! The configured warm pools (`--pool-size ROLE=N`): per role, its size, its target and how its
//! refills fare. Plain state, below both the agents that own it and the refill work in
//! [`crate::pool`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use pika_managed_agent_contract::{IncusGuestRole, IncusProvisionParams};

use crate::config::{ENV_POOL_SIZE, PoolSettings};
use crate::params::{ResolvedIncusParams, resolved_incus_params};

/// Why the last refill failed, and when the next one may run.
#[derive(Default)]
pub(crate) struct Status {
    pub(crate) error: Option<String>,
    pub(crate) failures: u32,
    pub(crate) retry_at: Option<Instant>,
}

/// One role's pool: how many members it keeps, where, and how its refills fare.
pub(crate) struct Pool {
    pub(crate) role: IncusGuestRole,
    pub(crate) size: usize,
    pub(crate) target: ResolvedIncusParams,
    pub(crate) status: Mutex<Status>,
}

/// Every configured pool (none by default).
#[derive(Default)]
pub struct Pools {
    pub(crate) pools: Vec<Pool>,
    /// Wakes the refill task (a claim took a member).
    pub(crate) wake: tokio::sync::Notify,
}

impl Pools {
    /// The pools of `settings`, each in the target a request naming only the role resolves to.
    pub fn new(settings: &PoolSettings, defaults: &IncusProvisionParams) -> anyhow::Result<Pools> {
        let mut sizes: BTreeMap<IncusGuestRole, usize> = BTreeMap::new();
        for size in &settings.sizes {
            let requested = IncusProvisionParams {
                guest_role: size.role,
                ..Default::default()
            };
            let target = resolved_incus_params(defaults, &requested)
                .map_err(|err| anyhow::anyhow!("{ENV_POOL_SIZE}: {err}"))?;
            sizes.insert(target.guest_role, size.size);
        }
        let mut pools = Vec::new();
        for (role, size) in sizes.into_iter().filter(|(_, size)| *size > 0) {
            let requested = IncusProvisionParams {
                guest_role: Some(role),
                ..Default::default()
            };
            let target = resolved_incus_params(defaults, &requested)
                .map_err(|err| anyhow::anyhow!("{ENV_POOL_SIZE}: {err}"))?;
            pools.push(Pool {
                role,
                size,
                target,
                status: Mutex::new(Status::default()),
            });
        }
        Ok(Pools {
            pools,
            wake: tokio::sync::Notify::new(),
        })
    }

    pub(crate) fn for_target(&self, resolved: &ResolvedIncusParams) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.target == *resolved)
    }

    pub(crate) fn of_role(&self, role: &str) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.role.as_str() == role)
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MAX_POOL_SIZE, PoolSize, parse_pool_size};

    #[test]
    fn pool_sizes_parse_with_errors_naming_the_input() {
        assert_eq!(
            parse_pool_size("managed-openclaw=4"),
            Ok(PoolSize {
                role: Some(IncusGuestRole::ManagedOpenclaw),
                size: 4
            })
        );
        assert_eq!(
            parse_pool_size(" 2 "),
            Ok(PoolSize {
                role: None,
                size: 2
            })
        );
        let err = parse_pool_size("nope=1").unwrap_err();
        assert!(err.contains("managed-openclaw"), "lists the roles: {err}");
        let err = parse_pool_size("managed-openclaw=-1").unwrap_err();
        assert!(err.contains("\"managed-openclaw=-1\""), "{err}");
        assert!(parse_pool_size(&format!("{}", MAX_POOL_SIZE + 1)).is_err());
    }
}
