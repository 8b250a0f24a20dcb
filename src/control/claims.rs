//! What a request may assert about its end user. A request's `roles` and `scopes` attributes feed
//! the Cedar principal and the scope guard, so they are a grant of authority: whoever sends the
//! request must hold that authority. An API token carries the claims it may grant
//! (`grants` in `auth.toml`); a Kafka producer is trusted per tenant by configuration
//! (`[intake]` in `ballast.toml`). A request asserting more is refused (API: 403) or
//! dead-lettered (Kafka), naming the claim.
//!
//! A grant list holds scopes (`orders:read`), roles written `role:NAME`, and wildcards: `*` (any
//! scope), `role:*` (any role) and a trailing `:*` (`orders:*`: every scope under `orders:`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::list_attribute;

/// The request attribute carrying the end user's roles (comma-separated).
pub const ROLES: &str = "roles";
/// The request attribute carrying the end user's scopes (comma-separated).
pub const SCOPES: &str = "scopes";

/// The claims one sender may grant, and those a request gets when it asserts none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// The ceiling: every role and scope a request may assert.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Given to a request that asserts no `roles` (the `role:` entries) or no `scopes` (the
    /// others). Each must be within `grants`.
    #[serde(default)]
    pub defaults: Vec<String>,
}

/// A claim the sender may not grant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this sender may not grant {kind} {value:?}")]
pub struct ClaimRefused {
    /// `role` or `scope`.
    pub kind: &'static str,
    pub value: String,
}

impl ClaimRefused {
    /// The claim as written in a grant list (`role:NAME` or the scope).
    pub fn claim(&self) -> String {
        match self.kind {
            "role" => format!("role:{}", self.value),
            _ => self.value.clone(),
        }
    }
}

fn covers(grant: &str, claim: &str) -> bool {
    grant == claim
        || grant == "*"
        || grant
            .strip_suffix('*')
            .is_some_and(|prefix| prefix.ends_with(':') && claim.starts_with(prefix))
}

impl Grants {
    pub fn new(grants: Vec<String>, defaults: Vec<String>) -> Self {
        Grants { grants, defaults }
    }

    fn allows(&self, kind: &'static str, value: &str) -> bool {
        let claim = match kind {
            "role" => format!("role:{value}"),
            _ => value.to_string(),
        };
        self.grants.iter().any(|g| {
            let g = g.trim();
            match kind {
                // A bare `*` is every scope, not every role: roles are granted explicitly.
                "role" => g.starts_with("role:") && covers(g, &claim),
                _ => !g.starts_with("role:") && covers(g, &claim),
            }
        })
    }

    /// A malformed list (an empty entry, a default outside the grants), for config checks.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(g) = self.grants.iter().find(|g| g.trim().is_empty()) {
            return Err(format!("empty grant {g:?}"));
        }
        for d in &self.defaults {
            let (kind, value) = split(d);
            if value.is_empty() || value.contains('*') {
                return Err(format!("default {d:?} must name one role or scope"));
            }
            if !self.allows(kind, value) {
                return Err(format!("default {d:?} is not within grants"));
            }
        }
        Ok(())
    }

    /// Checks a request's `roles` and `scopes` against the grants, filling in the defaults for
    /// an attribute the request does not assert. The attributes the turn will carry, or the
    /// first claim refused.
    pub fn apply(
        &self,
        attributes: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ClaimRefused> {
        let mut out = attributes.clone();
        for (key, kind) in [(ROLES, "role"), (SCOPES, "scope")] {
            let asserted = list_attribute(attributes, key);
            if let Some(v) = asserted.iter().find(|v| !self.allows(kind, v)) {
                return Err(ClaimRefused {
                    kind,
                    value: v.clone(),
                });
            }
            if asserted.is_empty() {
                let defaults: Vec<&str> = self
                    .defaults
                    .iter()
                    .map(|d| split(d))
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, v)| v)
                    .collect();
                if defaults.is_empty() {
                    out.remove(key);
                } else {
                    out.insert(key.to_string(), defaults.join(","));
                }
            }
        }
        Ok(out)
    }
}

fn split(entry: &str) -> (&'static str, &str) {
    match entry.trim().strip_prefix("role:") {
        Some(role) => ("role", role),
        None => ("scope", entry.trim()),
    }
}

/// Which claims each tenant's Kafka producers may make (`[intake]` in `ballast.toml`). A tenant
/// not listed gets `"*"`'s entry when there is one, else no claims at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeTrust {
    #[serde(default)]
    pub tenants: BTreeMap<String, Grants>,
}

impl IntakeTrust {
    /// Every tenant may claim anything: the demo's own producers, never a deployment default.
    pub fn trust_all() -> Self {
        IntakeTrust {
            tenants: BTreeMap::from([(
                "*".to_string(),
                Grants::new(vec!["*".into(), "role:*".into()], Vec::new()),
            )]),
        }
    }

    pub fn for_tenant(&self, tenant: &str) -> Grants {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.get("*"))
            .cloned()
            .unwrap_or_default()
    }

    pub fn apply(
        &self,
        tenant: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ClaimRefused> {
        self.for_tenant(tenant).apply(attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn grants(g: &[&str], d: &[&str]) -> Grants {
        Grants::new(
            g.iter().map(|s| s.to_string()).collect(),
            d.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn a_request_may_assert_only_what_its_sender_may_grant() {
        let g = grants(&["role:customer", "orders:read", "refunds:*"], &[]);
        assert!(
            g.apply(&attrs(&[
                ("roles", "customer"),
                ("scopes", "orders:read,refunds:write")
            ]))
            .is_ok()
        );
        let refused = g
            .apply(&attrs(&[("scopes", "orders:read, admin:all")]))
            .unwrap_err();
        assert_eq!(refused.claim(), "admin:all");
        let refused = g.apply(&attrs(&[("roles", "customer,admin")])).unwrap_err();
        assert_eq!(refused.claim(), "role:admin");
        // `refunds:*` covers scopes under refunds:, not a scope that merely starts alike.
        assert!(g.apply(&attrs(&[("scopes", "refundsx")])).is_err());
    }

    #[test]
    fn nothing_granted_means_no_claims_and_a_star_is_scopes_only() {
        let none = Grants::default();
        assert!(none.apply(&attrs(&[("class", "billing")])).is_ok());
        assert!(none.apply(&attrs(&[("scopes", "a")])).is_err());
        let star = grants(&["*"], &[]);
        assert!(star.apply(&attrs(&[("scopes", "anything:at_all")])).is_ok());
        assert!(star.apply(&attrs(&[("roles", "customer")])).is_err());
    }

    #[test]
    fn defaults_fill_what_a_request_does_not_assert() {
        let g = grants(
            &["role:customer", "support:*"],
            &["role:customer", "support:lookup_order"],
        );
        g.validate().expect("valid");
        let out = g.apply(&attrs(&[("class", "billing")])).expect("ok");
        assert_eq!(out["roles"], "customer");
        assert_eq!(out["scopes"], "support:lookup_order");
        let out = g
            .apply(&attrs(&[("scopes", "support:issue_refund")]))
            .expect("ok");
        assert_eq!(out["scopes"], "support:issue_refund", "asserted wins");
        assert!(grants(&["a"], &["b"]).validate().is_err());
        assert!(grants(&["role:*"], &["role:*"]).validate().is_err());
    }

    #[test]
    fn intake_trust_is_per_tenant_with_a_fallback() {
        let t = IntakeTrust {
            tenants: BTreeMap::from([
                ("acme".to_string(), grants(&["orders:read"], &[])),
                ("*".to_string(), grants(&[], &[])),
            ]),
        };
        assert!(
            t.apply("acme", &attrs(&[("scopes", "orders:read")]))
                .is_ok()
        );
        assert!(
            t.apply("globex", &attrs(&[("scopes", "orders:read")]))
                .is_err()
        );
        assert!(
            IntakeTrust::default()
                .apply("x", &attrs(&[("roles", "r")]))
                .is_err()
        );
        assert!(
            IntakeTrust::trust_all()
                .apply("x", &attrs(&[("roles", "r"), ("scopes", "s")]))
                .is_ok()
        );
    }
}
