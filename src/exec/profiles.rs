//! One planner per profile: routing picks a profile for each turn (`RouteSelected`), and the
//! configuration says which model serves it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{PlanRequest, Planner};
use crate::exec::types::{ExecFailure, Planned};

pub struct ProfilePlanner {
    planners: BTreeMap<String, Arc<dyn Planner>>,
}

impl ProfilePlanner {
    pub fn new(planners: BTreeMap<String, Arc<dyn Planner>>) -> Self {
        ProfilePlanner { planners }
    }
}

#[async_trait]
impl Planner for ProfilePlanner {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, ExecFailure> {
        match self.planners.get(&request.profile) {
            Some(p) => p.plan(request).await,
            // Configuration checks refuse this; a profile added to the policies later lands here.
            None => Err(ExecFailure {
                message: format!("no planner is configured for profile {:?}", request.profile),
                retryable: false,
                latency_ms: 0,
            }),
        }
    }
}
