//! Views of recorded facts: each token shown as `[REDACTED:kind]`, or `[FORGOTTEN:kind]` once
//! the user's (or the tenant's) keys were destroyed. Masking needs no master key — only whether
//! the keys are still there — so every read command masks, offline or not. Revealing (the
//! cleartext, for an operator or auditor who asks, recorded) is `Vault::detokenize_*`.

use std::collections::HashMap;

use super::token;
use super::{VaultStore, tenant_key_id, user_key_id};
use crate::event::{Event, Payload, TurnOutcome};

/// Whether `user_token`'s values can still be recovered (its keys exist).
pub fn remembered(store: &dyn VaultStore, tenant: &str, user_token: &str) -> bool {
    let user = token::find(user_token)
        .first()
        .map_or_else(|| user_token.to_string(), |t| t.code.clone());
    matches!(store.get(&tenant_key_id(tenant)), Ok(Some(_)))
        && matches!(store.get(&user_key_id(tenant, &user)), Ok(Some(_)))
}

/// A text of `user_token`'s turn, as views show it.
pub fn mask_text(
    store: Option<&dyn VaultStore>,
    tenant: &str,
    user_token: &str,
    text: &str,
) -> String {
    Masker::new(store).text(tenant, user_token, text)
}

/// Any token left, its user unknown: `[REDACTED:kind]`. The last net before output leaves.
pub fn redact_all(text: &str) -> String {
    if !text.contains("[pii:") {
        return text.to_string();
    }
    token::replace(text, |t| format!("[REDACTED:{}]", t.kind))
}

/// [`redact_all`] on every string of a JSON value.
pub fn redact_all_json(value: &mut serde_json::Value) {
    token::map_json(value, &mut |s| redact_all(s));
}

/// The user token a turn's request names ("" if the request is not among `events`).
pub fn turn_user(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|e| match &e.payload {
            Payload::TurnRequested(r) => Some(r.user_id.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Applies `f` to the JSON form of an event's payload, when it holds a token. String-for-string
/// edits keep the payload's shape; were one ever to break it, the tokens are redacted instead
/// (a payload is never shown with its tokens because of a failed edit).
pub fn rewrite(e: &mut Event, f: &mut dyn FnMut(&mut serde_json::Value)) {
    let Ok(mut v) = serde_json::to_value(&e.payload) else {
        return;
    };
    if !v.to_string().contains("[pii:") {
        return;
    }
    f(&mut v);
    match serde_json::from_value::<Payload>(v) {
        Ok(p) => e.payload = p,
        Err(_) => {
            if let Ok(mut raw) = serde_json::to_value(&e.payload) {
                redact_all_json(&mut raw);
                if let Ok(p) = serde_json::from_value(raw) {
                    e.payload = p;
                }
            }
        }
    }
}

/// The events of one turn with their values back (for a recorded reveal).
pub fn reveal_events(vault: &super::Vault, events: &mut [Event]) {
    let user = turn_user(events);
    for e in events.iter_mut() {
        let tenant = e.tenant.clone();
        rewrite(e, &mut |v| vault.detokenize_json(&tenant, &user, v));
    }
}

/// Masks the facts of many turns, asking the store once per user.
pub struct Masker<'a> {
    store: Option<&'a dyn VaultStore>,
    remembered: HashMap<(String, String), bool>,
}

impl<'a> Masker<'a> {
    /// Without a store every token is `[REDACTED:kind]` (nobody can tell what was forgotten).
    pub fn new(store: Option<&'a dyn VaultStore>) -> Self {
        Masker {
            store,
            remembered: HashMap::new(),
        }
    }

    fn word(&mut self, tenant: &str, user_token: &str) -> &'static str {
        let Some(store) = self.store else {
            return "REDACTED";
        };
        let key = (tenant.to_string(), user_token.to_string());
        let known = *self
            .remembered
            .entry(key)
            .or_insert_with(|| remembered(store, tenant, user_token));
        if known { "REDACTED" } else { "FORGOTTEN" }
    }

    /// A text of `user_token`'s turn.
    pub fn text(&mut self, tenant: &str, user_token: &str, text: &str) -> String {
        if !text.contains("[pii:") {
            return text.to_string();
        }
        let w = self.word(tenant, user_token);
        token::replace(text, |t| format!("[{w}:{}]", t.kind))
    }

    /// Every string of a JSON value of `user_token`'s turn.
    pub fn json(&mut self, tenant: &str, user_token: &str, value: &mut serde_json::Value) {
        let w = self.word(tenant, user_token);
        token::map_json(value, &mut |s| {
            if s.contains("[pii:") {
                token::replace(s, |t| format!("[{w}:{}]", t.kind))
            } else {
                s.to_string()
            }
        });
    }

    /// The events of one turn (its user is the one its request names).
    pub fn events(&mut self, events: &mut [Event]) {
        let user = turn_user(events);
        for e in events.iter_mut() {
            let tenant = e.tenant.clone();
            self.event(&tenant, &user, e);
        }
    }

    /// One event of `user_token`'s turn.
    pub fn event(&mut self, tenant: &str, user_token: &str, e: &mut Event) {
        if user_token.is_empty() {
            rewrite(e, &mut redact_all_json);
        } else {
            rewrite(e, &mut |v| self.json(tenant, user_token, v));
        }
    }

    /// An outcome record as analytics consumers and views see it.
    pub fn outcome(&mut self, o: &mut TurnOutcome) {
        let (tenant, user) = (o.tenant.clone(), o.user_id.clone());
        o.reason = self.text(&tenant, &user, &o.reason);
        o.reply = o.reply.take().map(|r| self.text(&tenant, &user, &r));
        o.labels = std::mem::take(&mut o.labels)
            .into_iter()
            .map(|l| self.text(&tenant, &user, &l))
            .collect();
        o.session_id = o.session_id.take().map(|s| self.text(&tenant, &user, &s));
        o.user_id = self.text(&tenant, &user, &user);
    }

    /// A turn's tenant and user as views name them.
    pub fn user(&mut self, tenant: &str, user_token: &str) -> String {
        self.text(tenant, user_token, user_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Vault;

    /// Every kind of event, with the user's token and a tokenized text in its strings.
    fn seeded(user: &str, text: &str) -> Vec<Event> {
        let mut events = crate::event::fixtures::every_event(crate::ids::TurnId::new_v7());
        for e in &mut events {
            e.tenant = "acme".into();
            let mut v = serde_json::to_value(&e.payload).expect("json");
            seed(&mut v, user, text);
            e.payload = serde_json::from_value(v).expect("payload");
        }
        events
    }

    fn seed(v: &mut serde_json::Value, user: &str, text: &str) {
        match v {
            serde_json::Value::String(s) if s == "u-42" => *s = user.to_string(),
            serde_json::Value::String(s) => *s = s.replace("A1001", text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| seed(i, user, text)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|i| seed(i, user, text)),
            _ => {}
        }
    }

    #[test]
    fn events_are_masked_field_by_field_and_forgotten_users_say_so() {
        let v = Vault::ephemeral();
        let (user, mut t) = v.tokenize_user("acme", "jane@example.com").expect("user");
        let (text, more) = v
            .tokenize_text("acme", &user, "refund to jane@example.com")
            .expect("text");
        t.absorb(more);
        v.persist(&t.records).expect("persist");
        let mut events = seeded(&user, &text);
        let store = v.store().as_ref();
        Masker::new(Some(store)).events(&mut events);
        let shown = serde_json::to_string(&events).expect("json");
        assert!(!shown.contains("[pii:"), "{shown}");
        assert!(shown.contains("[REDACTED:email]"), "{shown}");
        assert!(shown.contains("[REDACTED:user]"), "{shown}");
        v.forget("acme", Some(&user)).expect("forget");
        let mut events = seeded(&user, &text);
        Masker::new(Some(store)).events(&mut events);
        let shown = serde_json::to_string(&events).expect("json");
        assert!(shown.contains("[FORGOTTEN:email]"), "{shown}");
        // No store: redacted, never cleartext and never a token.
        let mut events = seeded(&user, &text);
        Masker::new(None).events(&mut events);
        let shown = serde_json::to_string(&events).expect("json");
        assert!(!shown.contains("[pii:") && shown.contains("[REDACTED:email]"));
    }
}
