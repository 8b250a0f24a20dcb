//! The Cedar entities of a review — the user asking and the tool asked for — and a cache of
//! them.
//!
//! A five-step turn is reviewed eleven times, each time by the same user and mostly for the
//! same few tools. Building the user entity (its attributes are restricted expressions Cedar
//! evaluates) and the `Entities` set (Cedar computes its ancestor closure) each time was ~5% of
//! a turn's CPU; both depend only on who asks and for what, so a policy set builds them once
//! per (user, tool) and reuses them. The cache is bounded and belongs to one policy set: a
//! reload starts a fresh one.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

/// Who is asking, as Cedar sees them.
pub struct PrincipalAttrs<'a> {
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub channel: &'a str,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

/// (user, tool) pairs whose entities are kept; past this the cache starts over (a worker sees
/// far fewer distinct users between two policy reloads than it reviews calls).
const CACHE_MAX: usize = 4096;

/// The entities of one review, built once per (user, tool).
pub(super) struct Built {
    pub(super) principal: EntityUid,
    pub(super) entities: Entities,
}

#[derive(Default)]
pub(super) struct EntityCache {
    built: Mutex<HashMap<Vec<u8>, Arc<Built>>>,
}

impl EntityCache {
    /// The principal's uid and the entities (the user, and `tool` if any) for a review.
    /// `resource` names the resource in the key (a tool name, or "" for the response).
    pub(super) fn get(
        &self,
        names: &Names,
        p: &PrincipalAttrs<'_>,
        resource: &str,
        tool: Option<&Entity>,
    ) -> Result<Arc<Built>, String> {
        let key = key(p, resource);
        if let Some(b) = self.lock().get(&key) {
            return Ok(Arc::clone(b));
        }
        let user = user_entity(names, p)?;
        let principal = user.uid();
        let entities = Entities::from_entities(std::iter::once(user).chain(tool.cloned()), None)
            .map_err(|e| e.to_string())?;
        let built = Arc::new(Built {
            principal,
            entities,
        });
        let mut cache = self.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&built));
        Ok(built)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<Built>>> {
        // A cache: what a panicking holder left is still a valid map.
        self.built.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Every field the entities are built from, each length-prefixed (no separator a value could
/// contain makes two principals collide).
fn key(p: &PrincipalAttrs<'_>, resource: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    let mut part = |s: &str| {
        k.extend_from_slice(&(s.len() as u32).to_le_bytes());
        k.extend_from_slice(s.as_bytes());
    };
    part(p.tenant);
    part(p.user_id);
    part(p.channel);
    part(resource);
    for list in [&p.roles, &p.scopes] {
        part(&list.len().to_string());
        for item in list {
            part(item);
        }
    }
    k
}

pub(super) fn type_name(ty: &str) -> Result<EntityTypeName, String> {
    EntityTypeName::from_str(&format!("Ballast::{ty}")).map_err(|e| e.to_string())
}

pub(super) fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(ty)?,
        EntityId::new(id),
    ))
}

/// Entity type names and fixed uids, parsed once per policy set: Cedar parses a type name
/// from text, which would otherwise be a noticeable share of every review.
pub(super) struct Names {
    user: EntityTypeName,
    tenant: EntityTypeName,
    role: EntityTypeName,
    pub(super) response: EntityUid,
    pub(super) call_tool: EntityUid,
    pub(super) send_response: EntityUid,
}

impl Names {
    pub(super) fn new(call_tool: &str, send_response: &str) -> Result<Self, String> {
        Ok(Names {
            user: type_name("User")?,
            tenant: type_name("Tenant")?,
            role: type_name("Role")?,
            response: uid("Response", "reply")?,
            call_tool: uid("Action", call_tool)?,
            send_response: uid("Action", send_response)?,
        })
    }

    fn of(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

pub(super) fn strings(items: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

fn user_entity(names: &Names, p: &PrincipalAttrs<'_>) -> Result<Entity, String> {
    let mut parents = HashSet::from([Names::of(&names.tenant, p.tenant)]);
    for r in &p.roles {
        parents.insert(Names::of(&names.role, r));
    }
    let attrs = HashMap::from([
        (
            "tenant".to_string(),
            RestrictedExpression::new_string(p.tenant.to_string()),
        ),
        ("roles".to_string(), strings(&p.roles)),
        ("scopes".to_string(), strings(&p.scopes)),
        (
            "channel".to_string(),
            RestrictedExpression::new_string(p.channel.to_string()),
        ),
    ]);
    Entity::new(
        Names::of(&names.user, &format!("{}/{}", p.tenant, p.user_id)),
        attrs,
        parents,
    )
    .map_err(|e| e.to_string())
}

pub(super) fn tool_entity(t: &crate::exec::catalog::ToolSpec) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "name".to_string(),
            RestrictedExpression::new_string(t.name.clone()),
        ),
        (
            "impact".to_string(),
            RestrictedExpression::new_string(t.impact.as_str().into()),
        ),
        (
            "impact_level".to_string(),
            RestrictedExpression::new_long(t.impact.level()),
        ),
        ("scopes".to_string(), strings(&t.auth_scopes)),
        ("tags".to_string(), strings(&t.tags)),
        (
            "idempotent".to_string(),
            RestrictedExpression::new_bool(t.idempotent),
        ),
        (
            "reversible".to_string(),
            RestrictedExpression::new_bool(t.compensation.is_some()),
        ),
        (
            "cost_micros".to_string(),
            RestrictedExpression::new_long(t.cost_micros),
        ),
    ]);
    Entity::new(uid("Tool", &t.name)?, attrs, HashSet::new()).map_err(|e| e.to_string())
}
