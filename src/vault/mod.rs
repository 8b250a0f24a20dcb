//! The PII vault: personal values never rest in clear. At the edges of the engine — a request
//! at intake, a tool result, a model's answer, retrieved documents — each value the detectors
//! find is replaced by a token (`token.rs`) and its cleartext sealed here with AES-256-GCM under
//! a per-user data key, itself wrapped by a per-tenant key, wrapped by the master key. Tokens
//! are stable per tenant, so the engine compares them as it compared values. The execution plane
//! gets the cleartext back (detokenized on the way out); views show `[REDACTED:kind]`, or
//! `[FORGOTTEN:kind]` once [`Vault::forget`] destroyed the keys.
//!
//! Layout of the store (`store.rs`):
//! - `k\0TENANT` → the tenant key, wrapped by the master key;
//! - `u\0TENANT\0USER` → a user's key, wrapped by the tenant key (USER is the user's token code);
//! - `v\0TENANT\0USER\0TOKEN` → a value, sealed by the user key (nonce derived from the token:
//!   sealing is deterministic, so re-sealing a value writes the same bytes).
//!
//! In a data dir the keys live in the key file (`keyfile/`), never in sled, so that forgetting
//! destroys them for real; sealed values live in sled.

pub mod compact;
pub mod crypto;
mod detokenize;
mod forget;
pub mod keyfile;
mod master;
pub mod reveal;
pub mod rotate;
pub mod store;
pub use crate::guard::token;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crypto::Key;
pub use forget::forget_records;
pub use master::{DEV_KEY_FILE, MASTER_KEY_ENV, MasterKeySource, dev_key_path};
pub use store::{MemoryVaultStore, SledVaultStore, StoreError, VaultRecord, VaultStore};

use crate::guard::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("master key {path}: {message}")]
    MasterKey { path: String, message: String },
    #[error("the vault's key for {0} does not open with this master key")]
    WrongKey(String),
    #[error("sealing failed")]
    Seal,
    #[error("tenant {0:?} has no agreed key yet (the replica settles it first)")]
    Unsettled(String),
    #[error("the shared vault log: {0}")]
    Replica(String),
}

impl VaultError {
    /// A store outage may pass; a wrong master key or a failed seal will not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            VaultError::Store(_) | VaultError::Unsettled(_) | VaultError::Replica(_)
        )
    }
}

/// Tokens and the records that hold their values.
#[derive(Debug, Default)]
pub struct Tokenized {
    /// The kinds of the values replaced, one per value.
    pub kinds: Vec<String>,
    /// What to persist with the events that use the tokens.
    pub records: Vec<VaultRecord>,
}

impl Tokenized {
    pub fn absorb(&mut self, other: Tokenized) {
        self.kinds.extend(other.kinds);
        self.records.extend(other.records);
    }
}

/// A vault shared by several processes through a log (Kafka's compacted vault topic): the
/// local store is a replica of it, and each tenant's key is agreed on before first use.
#[async_trait::async_trait]
pub trait VaultReplica: Send + Sync + 'static {
    /// Applies to the local store every record the log holds now.
    async fn catch_up(&self) -> Result<(), VaultError>;
    /// Proposes `wrapped` as `tenant`'s key; returns once the agreed key (the first proposed)
    /// is in the local store.
    async fn settle_tenant(&self, tenant: &str, wrapped: Vec<u8>) -> Result<(), VaultError>;
}

pub struct Vault {
    master: Key,
    replica: Option<Arc<dyn VaultReplica>>,
    store: Arc<dyn VaultStore>,
    detector: Redactor,
    /// Records made but not yet durable (they travel with their round), so reads see them.
    pending: Mutex<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Unwrapped keys, by their store key.
    keys: Mutex<HashMap<Vec<u8>, Key>>,
}

pub(crate) fn tenant_key_id(tenant: &str) -> Vec<u8> {
    [b"k\0".as_slice(), tenant.as_bytes()].concat()
}

pub(crate) fn user_key_id(tenant: &str, user: &str) -> Vec<u8> {
    [b"u\0", tenant.as_bytes(), b"\0", user.as_bytes()].concat()
}

fn value_id(tenant: &str, user: &str, token: &str) -> Vec<u8> {
    [
        b"v\0",
        tenant.as_bytes(),
        b"\0",
        user.as_bytes(),
        b"\0",
        token.as_bytes(),
    ]
    .concat()
}

/// `text` as a JSON object or array holding tokens, if it is one.
fn json_document(text: &str) -> Option<serde_json::Value> {
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) || !text.contains("[pii:") {
        return None;
    }
    serde_json::from_str(text)
        .ok()
        .filter(|v: &serde_json::Value| v.is_object() || v.is_array())
}

/// The form of a value two spellings of share: what its token is computed from.
fn normalize(kind: &str, value: &str) -> String {
    match kind {
        "email" => value.trim().to_lowercase(),
        "phone" => {
            let plus = value.trim_start().starts_with('+') || value.trim_start().starts_with("00");
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            let digits = digits
                .strip_prefix("00")
                .map(str::to_owned)
                .unwrap_or(digits);
            if plus { format!("+{digits}") } else { digits }
        }
        "card_number" => value
            .chars()
            .filter_map(|c| c.to_digit(10))
            .map(|d| char::from(b'0' + d as u8))
            .collect(),
        "iban" => value
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        _ => value.to_string(),
    }
}

impl Vault {
    pub fn new(master: Key, store: Arc<dyn VaultStore>, detector: Redactor) -> Self {
        Vault {
            master,
            replica: None,
            store,
            detector,
            pending: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// A vault in memory with a random master key (tests, benches).
    pub fn ephemeral() -> Self {
        Vault::new(
            crypto::random_key(),
            Arc::new(MemoryVaultStore::default()),
            Redactor::builtin(),
        )
    }

    /// Shares this vault with other processes through `replica` (its store is the replica's).
    pub fn with_replica(mut self, replica: Arc<dyn VaultReplica>) -> Self {
        self.replica = Some(replica);
        self
    }

    /// Whether tenant keys must be agreed on (a shared vault) before use.
    pub fn shared(&self) -> bool {
        self.replica.is_some()
    }

    /// Brings the local store up to the shared log (nothing to do when not shared).
    pub async fn catch_up(&self) -> Result<(), VaultError> {
        match &self.replica {
            Some(r) => r.catch_up().await,
            None => Ok(()),
        }
    }

    /// Makes sure `tenant` has a key every process agrees on. A local vault creates keys as it
    /// goes; a shared one proposes a key and takes the first proposed.
    pub async fn ensure_tenant(&self, tenant: &str) -> Result<(), VaultError> {
        let Some(replica) = &self.replica else {
            return Ok(());
        };
        let id = tenant_key_id(tenant);
        if self.get(&id)?.is_some() {
            return Ok(());
        }
        let wrapped =
            crypto::wrap(&self.master, &crypto::random_key(), &id).ok_or(VaultError::Seal)?;
        replica.settle_tenant(tenant, wrapped).await?;
        match self.get(&id)? {
            Some(_) => Ok(()),
            None => Err(VaultError::Unsettled(tenant.to_string())),
        }
    }

    /// A round's records are durable in the shared log: apply them to the local replica (the
    /// tail would, later) so reads see them now. A local vault's journal applied them already.
    pub fn committed(&self, records: &[VaultRecord]) -> Result<(), VaultError> {
        if self.replica.is_some() {
            self.store.apply(records)?;
        }
        self.settled(records);
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn VaultStore> {
        &self.store
    }

    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        if let Some(v) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(v.clone());
        }
        Ok(self.store.get(id)?)
    }

    fn remember(&self, records: &[VaultRecord]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in records {
            pending.insert(k.clone(), v.clone());
        }
    }

    /// The records are durable in the store now: reads need not keep them in memory.
    pub fn settled(&self, records: &[VaultRecord]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in records {
            if pending.get(k) == Some(v) {
                pending.remove(k);
            }
        }
    }

    /// Writes records straight to the store (when no round carries them: the API's intake).
    pub fn persist(&self, records: &[VaultRecord]) -> Result<(), VaultError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.apply(records)?;
        self.settled(records);
        Ok(())
    }

    /// The unwrapped key stored at `id` under `wrapping`, created (and its record added to
    /// `out`) when `create` and missing.
    fn key(
        &self,
        id: Vec<u8>,
        wrapping: &Key,
        create: bool,
        out: &mut Vec<VaultRecord>,
    ) -> Result<Option<Key>, VaultError> {
        let cached = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        if let Some(k) = cached {
            // A key forgotten by another handle on the store (the CLI, a Kafka tombstone)
            // must stop working here too: the cache only spares the unwrapping.
            if self.get(&id)?.is_some() {
                return Ok(Some(k));
            }
            self.keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
        let key = match self.get(&id)? {
            Some(sealed) => crypto::unwrap(wrapping, &sealed, &id).ok_or_else(|| {
                VaultError::WrongKey(String::from_utf8_lossy(&id).replace('\0', "/"))
            })?,
            None if create => {
                let key = crypto::random_key();
                let sealed = crypto::wrap(wrapping, &key, &id).ok_or(VaultError::Seal)?;
                let record = (id.clone(), Some(sealed));
                self.remember(std::slice::from_ref(&record));
                out.push(record);
                key
            }
            None => return Ok(None),
        };
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, key);
        Ok(Some(key))
    }

    fn tenant_key(
        &self,
        tenant: &str,
        create: bool,
        out: &mut Vec<VaultRecord>,
    ) -> Result<Option<Key>, VaultError> {
        let create_wanted = create;
        let master = self.master;
        // A shared vault never makes a tenant key on the spot: `ensure_tenant` agrees on one.
        let create = create && self.replica.is_none();
        match self.key(tenant_key_id(tenant), &master, create, out)? {
            None if self.replica.is_some() && create_wanted => {
                Err(VaultError::Unsettled(tenant.to_string()))
            }
            k => Ok(k),
        }
    }

    /// The token of a user id: the same for the same user of a tenant.
    pub fn user_token(
        &self,
        tenant: &str,
        user_id: &str,
        out: &mut Vec<VaultRecord>,
    ) -> Result<String, VaultError> {
        if token::is_token(user_id) {
            return Ok(user_id.to_string());
        }
        let Some(tk) = self.tenant_key(tenant, true, out)? else {
            return Err(VaultError::Seal);
        };
        Ok(token::format(
            "user",
            &crypto::hmac(&tk, &[b"token", b"user", user_id.as_bytes()]),
        ))
    }

    fn user_code(user_token: &str) -> String {
        token::find(user_token)
            .first()
            .map_or_else(|| user_token.to_string(), |t| t.code.clone())
    }

    /// Tokenizes the user id itself (its value sealed under its own user key).
    pub fn tokenize_user(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let mut out = Tokenized::default();
        if token::is_token(user_id) {
            return Ok((user_id.to_string(), out));
        }
        let user_token = self.user_token(tenant, user_id, &mut out.records)?;
        self.store_value(tenant, &user_token, &user_token, user_id, &mut out.records)?;
        out.kinds.push("user".into());
        Ok((user_token, out))
    }

    /// Tokenizes a session id: a caller-chosen identifier is personal data like the user id (an
    /// e-mail address or a phone number is a common choice), so it is always replaced, its
    /// value sealed under the user's key. The token is stable per tenant, so a session's turns
    /// still find each other.
    pub fn tokenize_session(
        &self,
        tenant: &str,
        user_token: &str,
        session: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let mut out = Tokenized::default();
        if token::is_token(session) {
            return Ok((session.to_string(), out));
        }
        let Some(tk) = self.tenant_key(tenant, true, &mut out.records)? else {
            return Err(VaultError::Seal);
        };
        let tok = token::format(
            "session",
            &crypto::hmac(&tk, &[b"token", b"session", session.as_bytes()]),
        );
        self.store_value(tenant, user_token, &tok, session, &mut out.records)?;
        out.kinds.push("session".into());
        Ok((tok, out))
    }

    /// The token a session id has in `tenant` (for looking a session up), without sealing
    /// anything; `None` if the tenant has no key (so no session of it exists).
    pub fn session_token(&self, tenant: &str, session: &str) -> Result<Option<String>, VaultError> {
        if token::is_token(session) {
            return Ok(Some(session.to_string()));
        }
        let mut none = Vec::new();
        let Some(tk) = self.tenant_key(tenant, false, &mut none)? else {
            return Ok(None);
        };
        Ok(Some(token::format(
            "session",
            &crypto::hmac(&tk, &[b"token", b"session", session.as_bytes()]),
        )))
    }

    fn store_value(
        &self,
        tenant: &str,
        user_token: &str,
        tok: &str,
        value: &str,
        out: &mut Vec<VaultRecord>,
    ) -> Result<(), VaultError> {
        let Some(tk) = self.tenant_key(tenant, true, out)? else {
            return Err(VaultError::Seal);
        };
        let user = Self::user_code(user_token);
        let Some(uk) = self.key(user_key_id(tenant, &user), &tk, true, out)? else {
            return Err(VaultError::Seal);
        };
        let id = value_id(tenant, &user, tok);
        // Spellings of one value share its token ("+44 20…" and "0044 20…"); the first one
        // kept is what the token reads back as, ever after.
        if self.get(&id)?.is_some() {
            return Ok(());
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&crypto::hmac(&uk, &[b"nonce", tok.as_bytes()])[..12]);
        let sealed =
            crypto::seal(&uk, nonce, value.as_bytes(), tok.as_bytes()).ok_or(VaultError::Seal)?;
        let record = (id, Some(sealed));
        self.remember(std::slice::from_ref(&record));
        out.push(record);
        Ok(())
    }

    /// `text` with each personal value replaced by its token, the value sealed for `user_token`.
    pub fn tokenize_text(
        &self,
        tenant: &str,
        user_token: &str,
        text: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let mut out = Tokenized::default();
        let found = self.detector.find(text);
        if found.is_empty() {
            return Ok((text.to_string(), out));
        }
        let mut tk = None;
        let mut result = String::with_capacity(text.len());
        let mut last = 0;
        for f in found {
            let value = text.get(f.start..f.end).unwrap_or_default();
            let key = match tk {
                Some(k) => k,
                None => {
                    let k = self
                        .tenant_key(tenant, true, &mut out.records)?
                        .ok_or(VaultError::Seal)?;
                    tk = Some(k);
                    k
                }
            };
            let tok = token::format(
                &f.kind,
                &crypto::hmac(
                    &key,
                    &[
                        b"token",
                        f.kind.as_bytes(),
                        normalize(&f.kind, value).as_bytes(),
                    ],
                ),
            );
            self.store_value(tenant, user_token, &tok, value, &mut out.records)?;
            result.push_str(text.get(last..f.start).unwrap_or_default());
            result.push_str(&tok);
            last = f.end;
            out.kinds.push(f.kind);
        }
        result.push_str(text.get(last..).unwrap_or_default());
        Ok((result, out))
    }

    /// Tokenizes every string of a JSON document given as text (text that is not JSON is
    /// tokenized as text).
    pub fn tokenize_json_text(
        &self,
        tenant: &str,
        user_token: &str,
        text: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            return self.tokenize_text(tenant, user_token, text);
        };
        let mut out = Tokenized::default();
        self.tokenize_value(tenant, user_token, &mut value, &mut out)?;
        if out.kinds.is_empty() {
            return Ok((text.to_string(), out));
        }
        Ok((value.to_string(), out))
    }

    fn tokenize_value(
        &self,
        tenant: &str,
        user_token: &str,
        value: &mut serde_json::Value,
        out: &mut Tokenized,
    ) -> Result<(), VaultError> {
        match value {
            serde_json::Value::String(s) => {
                let (t, found) = self.tokenize_text(tenant, user_token, s)?;
                if !found.kinds.is_empty() {
                    *s = t;
                    out.absorb(found);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    self.tokenize_value(tenant, user_token, v, out)?;
                }
            }
            serde_json::Value::Object(map) => {
                for (_, v) in map.iter_mut() {
                    self.tokenize_value(tenant, user_token, v, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Tokenizes a request's user id, text, channel and attribute values (what intake and the
    /// API do before anything records it); the records its tokens need.
    pub fn tokenize_request(
        &self,
        request: &mut crate::event::TurnRequest,
    ) -> Result<Vec<VaultRecord>, VaultError> {
        let tenant = request.tenant.clone();
        let (user, mut acc) = self.tokenize_user(&tenant, &request.user_id)?;
        request.user_id = user.clone();
        let (text, t) = self.tokenize_text(&tenant, &user, &request.text)?;
        request.text = text;
        acc.absorb(t);
        let (channel, t) = self.tokenize_text(&tenant, &user, &request.channel)?;
        request.channel = channel;
        acc.absorb(t);
        for v in request.attributes.values_mut() {
            let (value, t) = self.tokenize_text(&tenant, &user, v)?;
            *v = value;
            acc.absorb(t);
        }
        Ok(acc.records)
    }
}

#[cfg(test)]
mod tests;
