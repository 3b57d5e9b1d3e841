//! `POST /v1/agents`: a request admitted against the operator's policy becomes an agent, from
//! the warm pool when it has a member for the request's target, else by a fresh launch
//! ([`Agents::build`]).

use pika_managed_agent_contract::AgentProvisionRequest;

use crate::agents::{Agents, Idempotency, Provisioned, check_name, new_hex_id, port_avoid};
use crate::error::AgentError;
use crate::store::GatewayAllocation;

impl Agents {
    pub async fn provision(
        &self,
        owner: &str,
        request: AgentProvisionRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Provisioned, AgentError> {
        let name = check_name(request.name)?;
        if let Some(replay) = self.replay(owner, idempotency.as_ref()).await? {
            return Ok(replay);
        }
        let (resolved, project, checked) = self.admit(&self.defaults, &request.incus).await?;
        let plan = self.gateway_plan(resolved.guest_role)?;
        Self::check_gateway_reach(plan.as_ref(), &checked)?;
        let id = new_hex_id(8);
        let _building = self.mark_building(&id);
        let key = idempotency.map(|i| (i.key, i.request_hash));
        let pooled = crate::pool::claim(
            self,
            &id,
            owner,
            name.as_deref(),
            &resolved,
            &checked,
            key.clone(),
            plan.as_ref(),
        )
        .await?;
        if let Some(record) = pooled {
            tracing::info!(agent = %id, %owner, instance = %record.instance_name, gateway = ?record.gateway_url, "provisioning from the warm pool");
            let record =
                crate::pool::finish(self, record, &resolved, &project, plan.as_ref()).await?;
            return Ok(Provisioned {
                record,
                replayed: false,
                gateway_token: plan.map(|plan| plan.token),
            });
        }
        let record = {
            let (id, owner, incus) = (id.clone(), owner.to_owned(), resolved.materialized());
            let gateway = plan
                .as_ref()
                .map(|plan| (self.gateway_ports.clone(), plan.token.sha256()));
            let probe = project.client().is_local();
            self.db(move |s| {
                let key = key.as_ref().map(|(k, h)| (k.as_str(), h.as_str()));
                let avoid = gateway
                    .as_ref()
                    .map(|(ports, _)| port_avoid(probe, ports.address, Vec::new()));
                let gateway =
                    gateway
                        .as_ref()
                        .zip(avoid.as_ref())
                        .map(|((ports, sha256), avoid)| GatewayAllocation {
                            ports,
                            token_sha256: sha256,
                            avoid,
                        });
                s.insert_provisioning(&id, &owner, name.as_deref(), &incus, key, gateway)
            })
            .await
        };
        let record = record?;
        tracing::info!(agent = %id, %owner, params = %resolved, gateway = ?record.gateway_url, "provisioning");
        let record = self
            .build(record, &resolved, &project, &checked, plan.as_ref())
            .await?;
        Ok(Provisioned {
            record,
            replayed: false,
            gateway_token: plan.map(|plan| plan.token),
        })
    }
}
