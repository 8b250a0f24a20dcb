//! Rotating the master key. The master key wraps only the tenant keys (`k\0TENANT`, and on
//! Kafka the proposals `k\0TENANT\0CANDIDATE` they were agreed from); user keys and values sit
//! under the tenant keys, and tokens are computed from them. So a rotation re-wraps a handful of
//! records, never re-encrypts a value, and leaves every token in the log as it was.

use super::crypto::{self, Key};
use super::{VaultError, VaultRecord, VaultStore};

/// The id a tenant key record is bound to (its AEAD associated data): `k\0TENANT`, for the key
/// and for every proposal of it.
pub(super) fn bound_id(id: &[u8]) -> &[u8] {
    // Up to the NUL after the tenant, or all of it.
    match id.iter().skip(2).position(|b| *b == 0) {
        Some(end) => id.get(..2 + end).unwrap_or(id),
        None => id,
    }
}

/// Every tenant key record of `store`, unwrapped with `old` and wrapped again with `new`.
/// Refuses (naming the record) if any does not open with `old`: a half-rotated vault would
/// lose the tenants left behind.
pub fn rewrap_records(
    store: &dyn VaultStore,
    old: &Key,
    new: &Key,
) -> Result<Vec<VaultRecord>, VaultError> {
    let mut out = Vec::new();
    for id in store.keys(b"k\0")? {
        let Some(sealed) = store.get(&id)? else {
            continue;
        };
        let aad = bound_id(&id);
        let key = crypto::unwrap(old, &sealed, aad)
            .ok_or_else(|| VaultError::WrongKey(String::from_utf8_lossy(&id).replace('\0', "/")))?;
        let wrapped = crypto::wrap(new, &key, aad).ok_or(VaultError::Seal)?;
        out.push((id, Some(wrapped)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Redactor;
    use crate::vault::{MemoryVaultStore, Vault};
    use std::sync::Arc;

    fn ann() -> crate::event::TurnRequest {
        let mut r = crate::event::fixtures::request(crate::ids::TurnId::from_parts(1, [7; 10]));
        r.user_id = "ann@example.com".into();
        r
    }

    #[test]
    fn a_rotated_vault_reads_every_value_with_the_new_key_and_none_with_the_old() {
        let store: Arc<dyn VaultStore> = Arc::new(MemoryVaultStore::default());
        let (old, new) = (crypto::random_key(), crypto::random_key());
        let v = Vault::new(old, store.clone(), Redactor::builtin());
        let mut request = ann();
        request.text = "mail ann@example.com or call +44 20 7946 0958".into();
        let records = v.tokenize_request(&mut request).unwrap();
        v.persist(&records).unwrap();
        let tokenized = request.text.clone();

        let rewrapped = rewrap_records(store.as_ref(), &old, &new).unwrap();
        assert_eq!(rewrapped.len(), 1, "one tenant key");
        store.apply(&rewrapped).unwrap();

        let after = Vault::new(new, store.clone(), Redactor::builtin());
        assert_eq!(
            after.detokenize_text("acme", &request.user_id, &tokenized),
            "mail ann@example.com or call +44 20 7946 0958"
        );
        // Tokens do not change: the same value tokenizes to the same token under the new key.
        let mut again = ann();
        again.text = "mail ann@example.com or call +44 20 7946 0958".into();
        after.tokenize_request(&mut again).unwrap();
        assert_eq!(again.text, tokenized);
        assert_eq!(again.user_id, request.user_id);

        let stale = Vault::new(old, store.clone(), Redactor::builtin());
        assert!(matches!(
            stale.user_code_of("acme", "ann@example.com"),
            Err(VaultError::WrongKey(_))
        ));
        // A second rotation with the retired key is refused, not half-applied.
        assert!(rewrap_records(store.as_ref(), &old, &new).is_err());
    }

    #[test]
    fn proposals_are_bound_to_their_tenant_key_id() {
        assert_eq!(bound_id(b"k\0acme"), b"k\0acme");
        assert_eq!(bound_id(b"k\0acme\0c0ffee"), b"k\0acme");
    }
}
