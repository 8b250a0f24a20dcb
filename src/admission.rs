//! One door policy. A request reaches Ballast through `POST /v1/turns` or as a record a producer
//! wrote to the request log (Kafka); whichever door it takes, [`admit`] decides whether it is
//! admitted — the same limits, the same claims check, the same tokenization, the same
//! deduplication — and refuses it with the same reason. The API answers a refusal with a
//! problem (`api::turns`); a partition dead-letters the record with the refusal as its reason
//! (`runtime::partition::intake`).
//!
//! Order matters: validation first (nothing is sealed for a request that is refused), then the
//! claims (what the sender may assert), then tokenization (every caller-chosen identifier and
//! every personal value found becomes a token before anything records it), then deduplication
//! (on the tokenized form, which is what the log holds).

use crate::control::claims::{ClaimRefused, Grants};
use crate::event::TurnRequest;
use crate::vault::{Vault, VaultError, VaultRecord, token};

/// Largest `text` of a request, in bytes.
pub const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Most attributes a request may carry.
pub const MAX_ATTRIBUTES: usize = 32;
/// Largest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 64;
/// Largest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 4 * 1024;
/// Longest `session_id`, in characters.
pub const MAX_SESSION_ID_CHARS: usize = 128;
/// Longest `user_id`, in characters.
pub const MAX_USER_ID_CHARS: usize = 256;
/// Longest `channel`, in characters.
pub const MAX_CHANNEL_CHARS: usize = 64;

/// Why a request is not admitted. Every variant is terminal: the same request is refused again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} {unit}, limit {limit}")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
        unit: &'static str,
    },
    #[error("{count} attributes, limit {limit}")]
    TooManyAttributes { count: usize, limit: usize },
    #[error("{field} {reason}")]
    Malformed {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Claim(#[from] ClaimRefused),
}

impl Refused {
    /// The limit a request went over, for problems that carry one.
    pub fn limit(&self) -> Option<u64> {
        match self {
            Refused::TooLong { limit, .. } | Refused::TooManyAttributes { limit, .. } => {
                Some(*limit as u64)
            }
            _ => None,
        }
    }

    /// The claim the sender may not grant, if that is the refusal.
    pub fn claim(&self) -> Option<String> {
        match self {
            Refused::Claim(c) => Some(c.claim()),
            _ => None,
        }
    }

    /// A short label for metrics (`ballast_api_rejected_total{reason}`, dead-letter counts).
    pub fn label(&self) -> &'static str {
        match self {
            Refused::Empty { .. } | Refused::Malformed { .. } => "invalid",
            Refused::TooLong { .. } | Refused::TooManyAttributes { .. } => "over_limit",
            Refused::Claim(_) => "claims",
        }
    }
}

/// Why admission did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The request itself is at fault: refuse it (400/403, or a dead letter).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The vault could not seal its values: nothing was recorded; retry (503, or the
    /// partition reads the record again).
    #[error("the vault: {0}")]
    Vault(#[from] VaultError),
    /// The door's deduplication store failed.
    #[error("{0}")]
    Dedup(String),
}

impl AdmitError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AdmitError::Refused(_) => false,
            AdmitError::Vault(e) => e.is_retryable(),
            AdmitError::Dedup(_) => true,
        }
    }
}

/// What a door's deduplication found for a turn id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen: admit it.
    New,
    /// The same request again: answer as before, record nothing.
    Same,
    /// Another request under this turn id: refuse (409), record nothing.
    Different,
    /// A submission of this turn id is being written right now (the API): wait for it.
    Pending,
}

/// An admitted request: tokenized, within the sender's claims, with the vault records that
/// hold its values (durable before the request is).
#[derive(Debug)]
pub struct Admitted {
    pub request: TurnRequest,
    pub records: Vec<VaultRecord>,
    pub seen: Seen,
}

/// Who is asking, as far as admission cares.
pub struct Door<'a> {
    /// What the sender may assert about its user (a token's grants; a tenant's intake trust);
    /// `None` where the deployment trusts the door (the embedded request log, written only by
    /// the API and the demo).
    pub grants: Option<&'a Grants>,
    /// The vault, when the deployment has one.
    pub vault: Option<&'a Vault>,
}

/// Admits `request` through `door`: validated, its claims applied, tokenized, then checked by
/// `dedup` (on the tokenized request). See the module docs.
pub fn admit(
    door: &Door<'_>,
    mut request: TurnRequest,
    dedup: &mut dyn FnMut(&TurnRequest) -> Result<Seen, AdmitError>,
) -> Result<Admitted, AdmitError> {
    validate(&request)?;
    if let Some(grants) = door.grants {
        request.attributes = grants.apply(&request.attributes).map_err(Refused::from)?;
    }
    let records = match door.vault {
        Some(v) => {
            let mut records = v.tokenize_request(&mut request)?;
            let (session, t) = match request.session_id.take() {
                Some(s) => {
                    let (tok, t) = v.tokenize_session(&request.tenant, &request.user_id, &s)?;
                    (Some(tok), t.records)
                }
                None => (None, Vec::new()),
            };
            request.session_id = session;
            records.extend(t);
            records
        }
        None => Vec::new(),
    };
    let seen = dedup(&request)?;
    Ok(Admitted {
        request,
        records,
        seen,
    })
}

/// The limits every request is held to. A request whose user id is already a vault token was
/// admitted (and measured, before tokens lengthened it) by the door that tokenized it — the API
/// or the partition that forwarded it — so its text and attribute values are not measured again.
pub fn validate(r: &TurnRequest) -> Result<(), Refused> {
    let measured = !token::is_token(&r.user_id);
    if r.user_id.trim().is_empty() {
        return Err(Refused::Empty { field: "user_id" });
    }
    if r.text.trim().is_empty() {
        return Err(Refused::Empty { field: "text" });
    }
    chars("user_id", &r.user_id, MAX_USER_ID_CHARS)?;
    identifier("user_id", &r.user_id)?;
    if measured && r.text.len() > MAX_TEXT_BYTES {
        return Err(Refused::TooLong {
            field: "text",
            len: r.text.len(),
            limit: MAX_TEXT_BYTES,
            unit: "bytes",
        });
    }
    if let Some(s) = &r.session_id {
        if s.trim().is_empty() {
            return Err(Refused::Empty {
                field: "session_id",
            });
        }
        chars("session_id", s, MAX_SESSION_ID_CHARS)?;
        identifier("session_id", s)?;
    }
    if measured {
        chars("channel", &r.channel, MAX_CHANNEL_CHARS)?;
    }
    if r.channel.chars().any(char::is_control) {
        return Err(Refused::Malformed {
            field: "channel",
            reason: "holds a control character",
        });
    }
    if r.attributes.len() > MAX_ATTRIBUTES {
        return Err(Refused::TooManyAttributes {
            count: r.attributes.len(),
            limit: MAX_ATTRIBUTES,
        });
    }
    for (name, value) in &r.attributes {
        if name.is_empty()
            || name.len() > MAX_ATTRIBUTE_NAME_BYTES
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err(Refused::Malformed {
                field: "attributes",
                reason: "names are 1 to 64 characters of letters, digits, '_', '-', '.' and ':'",
            });
        }
        if measured && value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(Refused::TooLong {
                field: "an attribute value",
                len: value.len(),
                limit: MAX_ATTRIBUTE_VALUE_BYTES,
                unit: "bytes",
            });
        }
    }
    Ok(())
}

fn chars(field: &'static str, value: &str, limit: usize) -> Result<(), Refused> {
    let len = value.chars().count();
    if len > limit {
        return Err(Refused::TooLong {
            field,
            len,
            limit,
            unit: "characters",
        });
    }
    Ok(())
}

/// A caller-chosen identifier: no control characters, and not a vault token unless it is the
/// whole value (a token the API wrote; a partial one would be a value dressed as a token).
fn identifier(field: &'static str, value: &str) -> Result<(), Refused> {
    if value.chars().any(char::is_control) {
        return Err(Refused::Malformed {
            field,
            reason: "holds a control character",
        });
    }
    if value.contains("[pii:") && !token::is_token(value) {
        return Err(Refused::Malformed {
            field,
            reason: "holds a vault token",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn request() -> TurnRequest {
        TurnRequest {
            turn_id: crate::ids::TurnId::new_v7(),
            tenant: "acme".into(),
            user_id: "u-1".into(),
            text: "Where is my order A1001?".into(),
            channel: "api".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 0,
            session_id: None,
        }
    }

    fn everything() -> Grants {
        Grants::new(vec!["*".into(), "role:*".into()], vec![])
    }

    fn new(_: &TurnRequest) -> Result<Seen, AdmitError> {
        Ok(Seen::New)
    }

    #[test]
    fn limits_hold_at_their_edges() {
        let mut r = request();
        r.text = "x".repeat(MAX_TEXT_BYTES);
        assert_eq!(validate(&r), Ok(()));
        r.text.push('x');
        assert!(matches!(
            validate(&r),
            Err(Refused::TooLong { field: "text", .. })
        ));

        let mut r = request();
        r.session_id = Some("s".repeat(MAX_SESSION_ID_CHARS));
        assert_eq!(validate(&r), Ok(()));
        r.session_id = Some("s".repeat(MAX_SESSION_ID_CHARS + 1));
        assert!(validate(&r).is_err());
        r.session_id = Some("  ".into());
        assert_eq!(
            validate(&r),
            Err(Refused::Empty {
                field: "session_id"
            })
        );

        let mut r = request();
        for i in 0..MAX_ATTRIBUTES {
            r.attributes.insert(format!("a{i}"), "v".into());
        }
        assert_eq!(validate(&r), Ok(()));
        r.attributes.insert("one-more".into(), "v".into());
        assert_eq!(validate(&r).map_err(|e| e.limit()), Err(Some(32)));
    }

    #[test]
    fn identifiers_refuse_control_characters_and_partial_tokens() {
        let mut r = request();
        r.user_id = "u\u{0}1".into();
        assert!(validate(&r).is_err());
        let mut r = request();
        r.session_id = Some("x [pii:email:abcdefghabcdefgh]".into());
        assert!(validate(&r).is_err());
        let mut r = request();
        r.attributes.insert("bad name".into(), "v".into());
        assert!(validate(&r).is_err());
        let mut r = request();
        r.text = "   ".into();
        assert_eq!(validate(&r), Err(Refused::Empty { field: "text" }));
    }

    #[test]
    fn tokenized_requests_are_not_measured_again() {
        let mut r = request();
        r.user_id = "[pii:user:abcdefghabcdefgh]".into();
        r.text = "[pii:email:abcdefghabcdefgh] ".repeat(2000);
        assert!(r.text.len() > MAX_TEXT_BYTES);
        assert_eq!(validate(&r), Ok(()));
    }

    #[test]
    fn claims_are_checked_before_anything_is_sealed() {
        let vault = Vault::ephemeral();
        let grants = Grants::new(vec!["orders:read".into()], vec![]);
        let door = Door {
            grants: Some(&grants),
            vault: Some(&vault),
        };
        let mut r = request();
        r.attributes.insert("roles".into(), "admin".into());
        let err = admit(&door, r, &mut new).expect_err("refused");
        assert!(matches!(err, AdmitError::Refused(Refused::Claim(_))));
        assert!(!err.is_retryable());
    }

    #[test]
    fn every_caller_chosen_identifier_is_tokenized() {
        let vault = Vault::ephemeral();
        let grants = everything();
        let door = Door {
            grants: Some(&grants),
            vault: Some(&vault),
        };
        let mut r = request();
        r.user_id = "alice@example.com".into();
        r.session_id = Some("alice@example.com".into());
        r.text = "Call me on +44 20 7946 0958".into();
        let a = admit(&door, r.clone(), &mut new).expect("admitted");
        let all = serde_json::to_string(&a.request).expect("json");
        assert!(!all.contains("alice"), "{all}");
        assert!(!all.contains("7946"), "{all}");
        let session = a.request.session_id.clone().expect("session");
        assert!(token::is_token(&session), "{session}");
        assert!(session.starts_with("[pii:session:"), "{session}");
        // The same session id gives the same token: the session continues.
        let b = admit(&door, r, &mut new).expect("admitted");
        assert_eq!(b.request.session_id, Some(session));
    }

    #[test]
    fn dedup_sees_the_tokenized_request() {
        let vault = Vault::ephemeral();
        let grants = everything();
        let door = Door {
            grants: Some(&grants),
            vault: Some(&vault),
        };
        let mut seen_user = String::new();
        let mut dedup = |r: &TurnRequest| {
            seen_user = r.user_id.clone();
            Ok(Seen::Same)
        };
        let a = admit(&door, request(), &mut dedup).expect("admitted");
        assert_eq!(a.seen, Seen::Same);
        assert!(token::is_token(&seen_user));
    }
}
