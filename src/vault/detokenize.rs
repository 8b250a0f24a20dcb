//! The way back out of the vault: tokens → cleartext for the execution plane and for recorded
//! reveals, and the checks that say whether keys still open (a wrong master key, a forgotten
//! user). Kept apart from tokenizing (`mod.rs`), which is the way in.

use super::*;

impl Vault {
    /// The cleartext of one token of `user_token`'s, if its keys still exist.
    pub fn reveal_token(
        &self,
        tenant: &str,
        user_token: &str,
        tok: &str,
    ) -> Result<Option<String>, VaultError> {
        let mut none = Vec::new();
        let Some(tk) = self.tenant_key(tenant, false, &mut none)? else {
            return Ok(None);
        };
        let user = Self::user_code(user_token);
        let Some(uk) = self.key(user_key_id(tenant, &user), &tk, false, &mut none)? else {
            return Ok(None);
        };
        let Some(sealed) = self.get(&value_id(tenant, &user, tok))? else {
            return Ok(None);
        };
        Ok(crypto::open(&uk, &sealed, tok.as_bytes()).and_then(|v| String::from_utf8(v).ok()))
    }

    /// `text` with its tokens back to their values: what the execution plane is given.
    /// A value that can no longer be recovered reads `[FORGOTTEN:kind]`.
    pub fn detokenize_text(&self, tenant: &str, user_token: &str, text: &str) -> String {
        if let Some(mut doc) = json_document(text) {
            token::map_json(&mut doc, &mut |s| {
                self.detokenize_text(tenant, user_token, s)
            });
            return doc.to_string();
        }
        token::replace(text, |t| {
            let tok = format!("[pii:{}:{}]", t.kind, t.code);
            match self.reveal_token(tenant, user_token, &tok) {
                Ok(Some(v)) => v,
                _ => format!("[FORGOTTEN:{}]", t.kind),
            }
        })
    }

    /// As [`Vault::detokenize_text`], but a store that cannot be read is an error rather than
    /// "forgotten": the execution plane must never act on a placeholder by accident.
    pub fn detokenize_checked(
        &self,
        tenant: &str,
        user_token: &str,
        text: &str,
    ) -> Result<String, VaultError> {
        // A JSON document (tool arguments, a tool's result) stays JSON: values go back into its
        // strings escaped, so a value with a line break or a quote cannot break it.
        if let Some(mut doc) = json_document(text) {
            let mut failure = None;
            token::map_json(&mut doc, &mut |s| {
                self.detokenize_checked(tenant, user_token, s)
                    .unwrap_or_else(|e| {
                        failure.get_or_insert(e);
                        s.to_string()
                    })
            });
            return match failure {
                Some(e) => Err(e),
                None => Ok(doc.to_string()),
            };
        }
        let mut failure = None;
        let out = token::replace(text, |t| {
            let tok = format!("[pii:{}:{}]", t.kind, t.code);
            match self.reveal_token(tenant, user_token, &tok) {
                Ok(Some(v)) => v,
                Ok(None) => format!("[FORGOTTEN:{}]", t.kind),
                Err(e) => {
                    failure.get_or_insert(e);
                    tok
                }
            }
        });
        match failure {
            Some(VaultError::WrongKey(k)) => Err(VaultError::WrongKey(k)),
            Some(e @ VaultError::Store(_)) => Err(e),
            Some(_) | None => Ok(out),
        }
    }

    /// Detokenizes every string of a JSON value.
    pub fn detokenize_json(&self, tenant: &str, user_token: &str, value: &mut serde_json::Value) {
        token::map_json(value, &mut |s| self.detokenize_text(tenant, user_token, s));
    }

    /// Whether this vault's master key opens `tenant`'s key (a tenant without a key passes):
    /// a reveal with the wrong key must fail, not show every value as forgotten.
    /// Checks this vault's master key against every tenant key the store holds, so a wrong key
    /// is refused when a process starts rather than answering every request with an error.
    /// Returns how many tenant keys it opened.
    pub fn check_master(&self) -> Result<usize, VaultError> {
        let mut opened = 0;
        for id in self.store.keys(b"k\0")? {
            let Some(tenant) = id.strip_prefix(b"k\0".as_slice()) else {
                continue;
            };
            // Kafka proposals (`k\0TENANT\0…`) are the replica's raw log; the agreed copy is
            // the key without a second separator.
            if tenant.contains(&0) {
                continue;
            }
            let tenant = String::from_utf8_lossy(tenant).to_string();
            self.opens(&tenant)?;
            opened += 1;
        }
        Ok(opened)
    }

    pub fn opens(&self, tenant: &str) -> Result<(), VaultError> {
        self.tenant_key(tenant, false, &mut Vec::new()).map(|_| ())
    }

    /// Whether `user_token`'s values can still be recovered.
    pub fn remembers(&self, tenant: &str, user_token: &str) -> bool {
        let mut none = Vec::new();
        let Ok(Some(tk)) = self.tenant_key(tenant, false, &mut none) else {
            return false;
        };
        let user = Self::user_code(user_token);
        matches!(
            self.key(user_key_id(tenant, &user), &tk, false, &mut none),
            Ok(Some(_))
        )
    }

    /// The code of a user's token (a token given as is; a user id hashed with the tenant key).
    /// `None` when the tenant has no key (nothing of it is kept).
    pub fn user_code_of(&self, tenant: &str, user_id: &str) -> Result<Option<String>, VaultError> {
        if token::is_token(user_id) {
            return Ok(Some(Self::user_code(user_id)));
        }
        let mut none = Vec::new();
        let Some(tk) = self.tenant_key(tenant, false, &mut none)? else {
            return Ok(None);
        };
        let t = token::format(
            "user",
            &crypto::hmac(&tk, &[b"token", b"user", user_id.as_bytes()]),
        );
        Ok(Some(Self::user_code(&t)))
    }
}
