//! Forgetting: a tenant's or a user's keys destroyed, so their sealed values can never be read
//! again (crypto-shredding). Needs no master key.

use super::{StoreError, Vault, VaultError, VaultRecord, VaultStore, tenant_key_id, user_key_id};

impl Vault {
    /// Destroys the keys of a tenant, or of one of its users: their values can never be read
    /// again. Returns the records removed (keys and values) — on Kafka, to publish as
    /// tombstones.
    pub fn forget(
        &self,
        tenant: &str,
        user_id: Option<&str>,
    ) -> Result<Vec<VaultRecord>, VaultError> {
        let user = match user_id {
            Some(u) => match self.user_code_of(tenant, u)? {
                Some(code) => Some(code),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let records = forget_records(self.store.as_ref(), tenant, user.as_deref())?;
        self.store.apply(&records)?;
        let gone: std::collections::HashSet<&Vec<u8>> = records.iter().map(|(k, _)| k).collect();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|id, _| !gone.contains(id));
        drop(keys);
        let prefixes = forget_prefixes(tenant, user.as_deref());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|id, _| !prefixes.iter().any(|p| owned_by(id, p)));
        Ok(records)
    }
}

/// The ids a forget covers: one ending in `\0` is a prefix, any other an exact id (a tenant's
/// key id is a prefix of another tenant's: "acme" of "acme-eu").
pub(super) fn forget_prefixes(tenant: &str, user_code: Option<&str>) -> Vec<Vec<u8>> {
    let t = tenant.as_bytes();
    match user_code {
        Some(user) => vec![
            user_key_id(tenant, user),
            [b"v\0", t, b"\0", user.as_bytes(), b"\0"].concat(),
        ],
        None => vec![
            tenant_key_id(tenant),
            // Keys proposed for the tenant on a shared vault (`k\0TENANT\0CANDIDATE`).
            [b"k\0", t, b"\0"].concat(),
            [b"u\0", t, b"\0"].concat(),
            [b"v\0", t, b"\0"].concat(),
        ],
    }
}

pub(super) fn owned_by(id: &[u8], p: &[u8]) -> bool {
    if p.ends_with(b"\0") {
        id.starts_with(p)
    } else {
        id == p
    }
}

/// The deletions that forget a tenant (`user_code` None) or one of its users, from what
/// `store` holds. Needs no master key.
pub fn forget_records(
    store: &dyn VaultStore,
    tenant: &str,
    user_code: Option<&str>,
) -> Result<Vec<VaultRecord>, StoreError> {
    let mut records: Vec<VaultRecord> = Vec::new();
    for p in forget_prefixes(tenant, user_code) {
        for k in store.keys(&p)? {
            if owned_by(&k, &p) {
                records.push((k, None));
            }
        }
    }
    Ok(records)
}
