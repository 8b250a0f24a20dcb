//! Bearer tokens with a tenant and roles. Only the token's SHA-256 is stored (`auth.toml`), so
//! the file grants nothing to whoever reads it. Every API route names the roles it accepts;
//! `admin` holds all of them, within its own tenant only.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::problem::Problem;

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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Sustained requests per second per tenant.
    pub requests_per_second: f64,
    /// Requests a tenant may make at once.
    pub burst: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            requests_per_second: 50.0,
            burst: 100.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    #[serde(default)]
    pub rate: RateConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        }
        Ok(config)
    }

    /// A fresh random token for `name`, and its entry (add it to the file with `append`).
    pub fn issue(name: &str, tenant: &str, roles: Vec<Role>) -> (String, TokenEntry) {
        let bytes: [u8; 24] = rand::random();
        let token = format!(
            "blst_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let entry = TokenEntry {
            name: name.to_string(),
            tenant: tenant.to_string(),
            roles,
            sha256: hash(&token),
        };
        (token, entry)
    }

    /// Appends one token entry to the file (created if missing).
    pub fn append(path: &Path, entry: &TokenEntry) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let roles: Vec<String> = entry
            .roles
            .iter()
            .map(|r| format!("{:?}", r.as_str()))
            .collect();
        writeln!(
            f,
            "\n[[tokens]]\nname = {:?}\ntenant = {:?}\nroles = [{}]\nsha256 = {:?}",
            entry.name,
            entry.tenant,
            roles.join(", "),
            entry.sha256
        )
    }

    fn find(&self, token: &str) -> Option<&TokenEntry> {
        let h = hash(token);
        self.tokens.iter().find(|t| t.sha256 == h)
    }
}

/// Who is calling, from a valid token.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Caller {
    pub name: String,
    pub tenant: String,
    pub roles: Vec<Role>,
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

/// The caller behind an `Authorization: Bearer …` header.
pub fn authenticate(config: &AuthConfig, header: Option<&str>) -> Result<Caller, Problem> {
    let token = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Problem::unauthorized("a bearer token is required"))?;
    let entry = config
        .find(token)
        .ok_or_else(|| Problem::unauthorized("unknown token"))?;
    Ok(Caller {
        name: entry.name.clone(),
        tenant: entry.tenant.clone(),
        roles: entry.roles.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_and_roles_by_route() {
        let (token, entry) = AuthConfig::issue("anna", "acme", vec![Role::Operator]);
        let config = AuthConfig {
            tokens: vec![entry],
            rate: RateConfig::default(),
        };
        let caller = authenticate(&config, Some(&format!("Bearer {token}"))).expect("valid");
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
    }

    #[test]
    fn appended_entries_load_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("auth.toml");
        let (token, entry) =
            AuthConfig::issue("li", "globex", vec![Role::Auditor, Role::Submitter]);
        AuthConfig::append(&path, &entry).expect("append");
        let config = AuthConfig::load(&path).expect("load");
        let caller = authenticate(&config, Some(&format!("Bearer {token}"))).expect("valid");
        assert_eq!(caller.roles, vec![Role::Auditor, Role::Submitter]);
    }
}
