//! Bearer tokens with a tenant and roles. Only the token's SHA-256 is stored (`auth.toml`), so
//! the file grants nothing to whoever reads it. Every API route names the roles it accepts;
//! `admin` holds all of them, within its own tenant only. The file also holds the limits on
//! callers: `[rate]` (per tenant, and failed authentications per address) and `[connections]`
//! (the HTTP server's bound on open connections and its timeouts), re-read with the tokens.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::problem::Problem;
use crate::control::claims::Grants;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits turns and reads its tenant's turns.
    Submitter,
    /// Answers approvals and handoffs, reverses turns, reads traces.
    Operator,
    /// Reads traces, audit chains, outcomes and SLOs; labels turns.
    Auditor,
    /// All of the above, in its tenant.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Submitter, Role::Operator, Role::Auditor, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s.trim())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token: recorded as the operator of what they do.
    pub name: String,
    pub tenant: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// The end-user roles (`role:NAME`) and scopes a request sent with this token may assert
    /// (`control::claims`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// What a request gets when it asserts no roles or no scopes (within `grants`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<String>,
}

impl TokenEntry {
    pub fn grants(&self) -> Grants {
        Grants::new(self.grants.clone(), self.defaults.clone())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Sustained requests per second per tenant.
    pub requests_per_second: f64,
    /// Requests a tenant may make at once.
    pub burst: f64,
    /// Failed authentications a client address may make at once, before it must wait.
    pub failed_auth_burst: f64,
    /// Failed authentications per second a client address earns back.
    pub failed_auth_per_second: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            requests_per_second: 50.0,
            burst: 100.0,
            failed_auth_burst: 20.0,
            failed_auth_per_second: 0.5,
        }
    }
}

/// The bounds on the HTTP server's connections (`[connections]`), read again for each new
/// connection (`telemetry::server`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Open connections at most; 0: as many as the file limit allows, less a reserve of
    /// descriptors for the rest of the process (never more than that either way).
    pub max: u64,
    /// How long a connection that has not authenticated may take to send a complete request
    /// head, from connecting or from its previous response.
    pub header_timeout_ms: u64,
    /// How long any connection may stay without a complete request head after its previous
    /// response (keep-alive).
    pub idle_timeout_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        let d = crate::telemetry::server::Limits::default();
        ConnectionsConfig {
            max: 0,
            header_timeout_ms: d.header_timeout.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
        }
    }
}

impl ConnectionsConfig {
    pub fn limits(&self) -> crate::telemetry::server::Limits {
        use std::time::Duration;
        crate::telemetry::server::Limits {
            max: (self.max > 0).then(|| usize::try_from(self.max).unwrap_or(usize::MAX)),
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
        }
    }
}

/// The longest timeout `[connections]` takes: a day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    #[serde(default)]
    pub rate: RateConfig,
    #[serde(default)]
    pub connections: ConnectionsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl AuthConfig {
    /// The file, or no tokens (every API call refused) if it does not exist.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        if !path.exists() {
            return Ok(AuthConfig::default());
        }
        let err = |message: String| AuthError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let config: AuthConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        for t in &config.tokens {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(format!(
                    "token {:?}: sha256 must be 64 hex digits",
                    t.name
                )));
            }
            if let Err(e) = t.grants().validate() {
                return Err(err(format!("token {:?}: {e}", t.name)));
            }
        }
        for (key, v) in [
            ("rate.requests_per_second", config.rate.requests_per_second),
            ("rate.burst", config.rate.burst),
            ("rate.failed_auth_burst", config.rate.failed_auth_burst),
            (
                "rate.failed_auth_per_second",
                config.rate.failed_auth_per_second,
            ),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(err(format!("{key} must be a positive number")));
            }
        }
        for (key, v) in [
            (
                "connections.header_timeout_ms",
                config.connections.header_timeout_ms,
            ),
            (
                "connections.idle_timeout_ms",
                config.connections.idle_timeout_ms,
            ),
        ] {
            if !(1..=MAX_TIMEOUT_MS).contains(&v) {
                return Err(err(format!(
                    "{key} must be between 1 and {MAX_TIMEOUT_MS} (milliseconds)"
                )));
            }
        }
        Ok(config)
    }

    /// Removes every token named `name` from the file; how many were removed. The rest of the
    /// file (comments, the rate section) is kept as written.
    pub fn revoke(path: &Path, name: &str) -> Result<usize, AuthError> {
        let err = |message: String| AuthError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| err(format!("{e}")))?;
        let Some(tokens) = doc
            .get_mut("tokens")
            .and_then(|t| t.as_array_of_tables_mut())
        else {
            return Ok(0);
        };
        let before = tokens.len();
        tokens.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(name));
        let removed = before - tokens.len();
        if removed > 0 {
            // Write beside and rename, so a concurrent reader sees the old file or the new one.
            let tmp = path.with_extension("toml.tmp");
            write_private(&tmp, doc.to_string().as_bytes()).map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        }
        Ok(removed)
    }

    /// A fresh random token for `name`, and its entry (add it to the file with `append`).
    pub fn issue(name: &str, tenant: &str, roles: Vec<Role>) -> (String, TokenEntry) {
        Self::issue_with(name, tenant, roles, Grants::default())
    }

    /// A fresh token that may grant its end users `grants`.
    pub fn issue_with(
        name: &str,
        tenant: &str,
        roles: Vec<Role>,
        grants: Grants,
    ) -> (String, TokenEntry) {
        let bytes: [u8; 24] = rand::random();
        let token = format!("blst_{}", hex::encode(bytes));
        let entry = TokenEntry {
            name: name.to_string(),
            tenant: tenant.to_string(),
            roles,
            sha256: hash(&token),
            grants: grants.grants,
            defaults: grants.defaults,
        };
        (token, entry)
    }

    /// Appends one token entry to the file (created if missing).
    pub fn append(path: &Path, entry: &TokenEntry) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // Owner only: the file says which tokens exist and what each may grant.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        // A file an earlier build (or a person) created wider is narrowed.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let roles: Vec<String> = entry
            .roles
            .iter()
            .map(|r| format!("{:?}", r.as_str()))
            .collect();
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "\n[[tokens]]\nname = {:?}\ntenant = {:?}\nroles = [{}]\nsha256 = {:?}",
            entry.name,
            entry.tenant,
            roles.join(", "),
            entry.sha256
        )?;
        if !entry.grants.is_empty() {
            writeln!(f, "grants = [{}]", list(&entry.grants))?;
        }
        if !entry.defaults.is_empty() {
            writeln!(f, "defaults = [{}]", list(&entry.defaults))?;
        }
        Ok(())
    }

    fn find(&self, token: &str) -> Option<&TokenEntry> {
        let h = hash(token);
        self.tokens.iter().find(|t| t.sha256 == h)
    }

    /// Whether the token behind `credential` still admits `caller` as it did: false once the
    /// token is revoked or its entry changed.
    pub fn still_admits(&self, credential: &Credential, caller: &Caller) -> bool {
        self.tokens
            .iter()
            .find(|t| t.sha256 == credential.0)
            .is_some_and(|t| &Caller::of(t) == caller)
    }
}

/// The token a request authenticated with (its hash, never the token): a long request — an
/// event stream — checks with it that the token is still valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential(String);

/// Who is calling, from a valid token.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Caller {
    pub name: String,
    pub tenant: String,
    pub roles: Vec<Role>,
    /// The end-user claims this caller may grant (`role:NAME` and scopes).
    pub grants: Vec<String>,
    /// What a request asserting no roles or scopes gets.
    pub defaults: Vec<String>,
}

impl Caller {
    /// Ok if the caller holds one of `roles` (admin holds all).
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if self.roles.contains(&Role::Admin) || self.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(Problem::forbidden(format!(
                "this needs one of the roles: {}",
                names.join(", ")
            )))
        }
    }
}

impl Caller {
    fn of(entry: &TokenEntry) -> Caller {
        Caller {
            name: entry.name.clone(),
            tenant: entry.tenant.clone(),
            roles: entry.roles.clone(),
            grants: entry.grants.clone(),
            defaults: entry.defaults.clone(),
        }
    }

    pub fn claims(&self) -> Grants {
        Grants::new(self.grants.clone(), self.defaults.clone())
    }
}

/// Writes `bytes` to a new file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The token of an `Authorization: Bearer …` header. The scheme is case-insensitive (RFC 7235).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The caller behind an `Authorization: Bearer …` header, and the credential it used.
pub fn authenticate(
    config: &AuthConfig,
    header: Option<&str>,
) -> Result<(Caller, Credential), Problem> {
    let token = header
        .and_then(bearer)
        .ok_or_else(|| Problem::unauthorized("a bearer token is required"))?;
    let entry = config
        .find(token)
        .ok_or_else(|| Problem::unauthorized("unknown token"))?;
    Ok((Caller::of(entry), Credential(entry.sha256.clone())))
}

/// The auth file as last read, re-read when it changes so that tokens added or revoked take
/// effect without a restart. A file that no longer parses keeps the tokens last loaded (and
/// says so): a typo must not lock every caller out, nor let a revoked token back in.
pub struct AuthStore {
    path: Option<std::path::PathBuf>,
    current: std::sync::RwLock<(Option<[u8; 32]>, std::sync::Arc<AuthConfig>)>,
}

impl AuthStore {
    /// A fixed configuration (tests).
    pub fn fixed(config: AuthConfig) -> Self {
        AuthStore {
            path: None,
            current: std::sync::RwLock::new((None, std::sync::Arc::new(config))),
        }
    }

    /// Reads `path` (no file: no tokens).
    pub fn open(path: &Path) -> Result<Self, AuthError> {
        let store = AuthStore {
            path: Some(path.to_path_buf()),
            current: std::sync::RwLock::new((None, std::sync::Arc::new(AuthConfig::default()))),
        };
        store.reload()?;
        Ok(store)
    }

    pub fn current(&self) -> std::sync::Arc<AuthConfig> {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        std::sync::Arc::clone(&guard.1)
    }

    /// Re-reads the file if its bytes changed; true when the tokens were replaced.
    pub fn reload(&self) -> Result<bool, AuthError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(AuthError::Config {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == Some(digest) {
            return Ok(false);
        }
        let config = if bytes.is_empty() {
            AuthConfig::default()
        } else {
            AuthConfig::load(path)?
        };
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = (Some(digest), std::sync::Arc::new(config));
        Ok(true)
    }

    /// Re-reads the file every `every` until `stop`.
    pub async fn watch(
        self: std::sync::Arc<Self>,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            match self.reload() {
                Ok(true) => tracing::info!(
                    tokens = self.current().tokens.len(),
                    "auth file changed: tokens reloaded"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "auth file does not load; the tokens last loaded stay in force")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_and_roles_by_route() {
        let (token, entry) = AuthConfig::issue("anna", "acme", vec![Role::Operator]);
        let mut config = AuthConfig {
            tokens: vec![entry],
            ..AuthConfig::default()
        };
        let (caller, credential) =
            authenticate(&config, Some(&format!("Bearer {token}"))).expect("valid");
        assert!(config.still_admits(&credential, &caller));
        assert_eq!(caller.tenant, "acme");
        assert!(caller.require(&[Role::Operator]).is_ok());
        assert_eq!(caller.require(&[Role::Submitter]).unwrap_err().status, 403);
        assert_eq!(authenticate(&config, None).unwrap_err().status, 401);
        assert_eq!(
            authenticate(&config, Some("Bearer blst_nope"))
                .unwrap_err()
                .status,
            401
        );
        assert!(!toml::to_string(&config).expect("toml").contains(&token));
        // Revoked (or changed): what it authenticated no longer holds.
        config.tokens[0].roles = vec![Role::Auditor];
        assert!(!config.still_admits(&credential, &caller));
        config.tokens.clear();
        assert!(!config.still_admits(&credential, &caller));
    }

    #[test]
    fn connection_limits_load_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "[connections]\nmax = 500\nheader_timeout_ms = 1000\nidle_timeout_ms = 2000\n",
        )
        .expect("write");
        let limits = AuthConfig::load(&path).expect("load").connections.limits();
        assert_eq!(limits.max, Some(500));
        assert_eq!(limits.header_timeout.as_millis(), 1000);
        assert_eq!(AuthConfig::default().connections.limits().max, None);
        for bad in [
            "header_timeout_ms = 0",
            "idle_timeout_ms = 99999999999",
            "maximum = 3",
        ] {
            std::fs::write(&path, format!("[connections]\n{bad}\n")).expect("write");
            assert!(AuthConfig::load(&path).is_err(), "{bad}");
        }
    }

    #[test]
    fn appended_entries_load_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("auth.toml");
        let (token, entry) =
            AuthConfig::issue("li", "globex", vec![Role::Auditor, Role::Submitter]);
        AuthConfig::append(&path, &entry).expect("append");
        let config = AuthConfig::load(&path).expect("load");
        let (caller, _) = authenticate(&config, Some(&format!("Bearer {token}"))).expect("valid");
        assert_eq!(caller.roles, vec![Role::Auditor, Role::Submitter]);
    }
}
