//! Remembering Cedar's answers to the same question.
//!
//! A five-step turn asks Cedar eleven times: each call at the plan checkpoint, each call again
//! just before it runs, and the reply. Between the plan review and the pre-tool review of a
//! call little usually changes that the policies look at — but something may (the checkpoint
//! itself, the budget left, the tools already run, what the arguments were derived from), and
//! a policy may read any of it. So an answer is reused only for a request that agrees with an
//! earlier one on everything Cedar could see: who asks (every attribute the user entity is built
//! from), the action, the resource, and the value of every `context` attribute some policy of
//! the set reads. Which attributes are read is found once per policy set from the policies'
//! JSON form; a set that uses `context` in any other way than `context.attr` or
//! `context has attr` reuses nothing. Answers belong to one policy set (a reload starts over)
//! and the memo is bounded.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::Value;

/// The top-level `context` attributes a policy set reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextReads {
    /// `context` is used as a whole somewhere (or a policy could not be read): anything may
    /// matter.
    All,
    Only(BTreeSet<String>),
}

/// What the policies (their JSON form; `None` for one that could not be rendered) read of
/// `context`.
pub fn context_reads(policies: impl IntoIterator<Item = Option<Value>>) -> ContextReads {
    let mut attrs = BTreeSet::new();
    for policy in policies {
        match policy {
            Some(json) if walk(&json, &mut attrs) => {}
            _ => return ContextReads::All,
        }
    }
    ContextReads::Only(attrs)
}

fn is_context(v: &Value) -> bool {
    v.get("Var").and_then(Value::as_str) == Some("context")
}

/// Collects `context.attr` and `context has attr`; false if `context` appears any other way.
fn walk(v: &Value, attrs: &mut BTreeSet<String>) -> bool {
    match v {
        Value::Object(map) => {
            if is_context(v) {
                return false;
            }
            for (k, inner) in map {
                if (k == "." || k == "has") && inner.get("left").is_some_and(is_context) {
                    match inner.get("attr").and_then(Value::as_str) {
                        Some(a) => {
                            attrs.insert(a.to_string());
                            continue;
                        }
                        None => return false,
                    }
                }
                if !walk(inner, attrs) {
                    return false;
                }
            }
            true
        }
        Value::Array(items) => items.iter().all(|i| walk(i, attrs)),
        _ => true,
    }
}

/// A memo key: length-prefixed parts, so no value can pass for two others run together.
#[derive(Default)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn part(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    pub fn list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.part(&items.len().to_string());
        for i in items {
            self.part(i.as_ref());
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Answers kept at most; past this the memo starts over.
const MEMO_MAX: usize = 16_384;

pub struct Memo<V> {
    answers: Mutex<HashMap<Vec<u8>, V>>,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo {
            answers: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Memo<V> {
    pub fn get(&self, key: &[u8]) -> Option<V> {
        self.lock().get(key).cloned()
    }

    pub fn put(&self, key: Vec<u8>, value: V) {
        let mut answers = self.lock();
        if answers.len() >= MEMO_MAX {
            answers.clear();
        }
        answers.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, V>> {
        // A memo: what a panicking holder left is still a valid map.
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
