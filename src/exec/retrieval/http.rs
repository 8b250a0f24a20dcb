//! `[retrieval] kind = "http"`: the team's own search service behind a small contract.
//!
//! Ballast sends `POST {url}` with `{"query": "...", "k": 4, "tenant": "acme"}` (and the
//! configured headers) and expects `200` with
//! `{"documents": [{"id", "title", "snippet", "score", "version", "updated_at", "facts"}]}`:
//! `id`, `snippet` and `updated_at` (RFC 3339, or milliseconds since the epoch) are required;
//! `title` defaults to the id, `score` to 0, `version` to 1, `facts` (name → value, compared by
//! the contradictory-context guard) to none. At most `k` documents are kept and every field is
//! cut to a bound, so a search service cannot flood the log. 408, 429 and 5xx answers and
//! transport errors are retryable (retrieval has no side effect); other answers are not.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MAX_FACTS, MAX_FIELD_CHARS, MAX_SNIPPET_CHARS, RetrievalConfig, cut};
use crate::event::RetrievedDocument;
use crate::exec::Retriever;
use crate::exec::types::{ExecFailure, Retrieval};
use crate::ids::TurnId;

pub struct HttpRetriever {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    k: usize,
    max_response_bytes: usize,
}

#[derive(Deserialize)]
struct Answer {
    documents: Vec<Value>,
}

#[derive(Deserialize)]
struct Doc {
    id: String,
    #[serde(default)]
    title: Option<String>,
    snippet: String,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    version: Option<i64>,
    updated_at: Value,
    #[serde(default)]
    facts: BTreeMap<String, Value>,
}

impl HttpRetriever {
    pub fn new(
        config: &RetrievalConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        if let Some((field, message)) = config.problems(env).into_iter().next() {
            return Err(format!("retrieval.{field}: {message}"));
        }
        let url = config.url.clone().ok_or("retrieval.url is not set")?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &config.headers {
            let value = crate::exec::http_tool::expand(v, env)
                .map_err(|var| format!("retrieval.headers.{k}: {var} is not set"))?;
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("retrieval.headers.{k}: {e}"))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| format!("retrieval.headers.{k}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpRetriever {
            client,
            url,
            headers,
            k: config.k,
            max_response_bytes: config.max_response_bytes,
        })
    }
}

#[async_trait]
impl Retriever for HttpRetriever {
    async fn retrieve(
        &self,
        _turn: TurnId,
        tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure> {
        let started = Instant::now();
        let fail = |message: String, retryable: bool| ExecFailure {
            message: format!("retrieval: {message}"),
            retryable,
            latency_ms: started.elapsed().as_millis() as i64,
        };
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .json(&json!({"query": query, "k": self.k, "tenant": tenant}))
            .send()
            .await
            .map_err(|e| fail(e.to_string(), true))?;
        let status = resp.status().as_u16();
        let body = crate::exec::body::read_capped(resp, self.max_response_bytes)
            .await
            .map_err(|e| fail(format!("HTTP {status}: {e}"), true))?;
        match status {
            200..=299 => {}
            408 | 429 | 500..=599 => return Err(fail(format!("HTTP {status}"), true)),
            _ => return Err(fail(format!("HTTP {status}"), false)),
        }
        let documents = parse(&body, self.k).map_err(|e| fail(e, false))?;
        Ok(Retrieval {
            query: query.to_string(),
            documents,
            latency_ms: started.elapsed().as_millis() as i64,
        })
    }
}

/// The documents of an answer, bounded; an answer that breaks the contract is an error naming
/// what is wrong.
pub fn parse(body: &[u8], k: usize) -> Result<Vec<RetrievedDocument>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("answer is not {{\"documents\": [...]}}: {e}"))?;
    let mut out = Vec::new();
    for (i, raw) in answer.documents.into_iter().take(k).enumerate() {
        let d: Doc = serde_json::from_value(raw).map_err(|e| format!("documents[{i}]: {e}"))?;
        let updated_at_ms = match &d.updated_at {
            Value::Number(n) => n.as_i64().ok_or("not an integer")?,
            Value::String(s) => crate::clock::parse_time(s)?,
            _ => return Err(format!("documents[{i}].updated_at is not a time")),
        };
        let facts = d
            .facts
            .into_iter()
            .take(MAX_FACTS)
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (cut(&k, MAX_FIELD_CHARS), cut(&v, MAX_FIELD_CHARS))
            })
            .collect();
        out.push(RetrievedDocument {
            title: cut(d.title.as_deref().unwrap_or(&d.id), MAX_FIELD_CHARS),
            id: cut(&d.id, MAX_FIELD_CHARS),
            score: d.score.filter(|s| s.is_finite()).unwrap_or(0.0),
            version: d.version.unwrap_or(1),
            updated_at_ms,
            snippet: cut(&d.snippet, MAX_SNIPPET_CHARS),
            facts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_bounded_and_checked() {
        let body = json!({"documents": [
            {"id": "a", "snippet": "x".repeat(5000), "updated_at": "2026-11-01T00:00:00Z",
             "score": 1.5, "version": 3, "facts": {"refund_days": 5}},
            {"id": "b", "title": "B", "snippet": "y", "updated_at": 1_700_000_000_000_i64},
            {"id": "c", "snippet": "z", "updated_at": 1}
        ]});
        let docs = parse(body.to_string().as_bytes(), 2).expect("docs");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].snippet.chars().count(), MAX_SNIPPET_CHARS);
        assert_eq!(docs[0].facts["refund_days"], "5");
        assert_eq!(docs[0].title, "a");
        assert_eq!(docs[0].updated_at_ms, 1_793_491_200_000);
        assert_eq!((docs[1].version, docs[1].score), (1, 0.0));
        for bad in [
            json!([]),
            json!({"documents": [{"id": "a"}]}),
            json!({"documents": [{"id": "a", "snippet": "s", "updated_at": "yesterday"}]}),
            json!({"documents": [{"id": "a", "snippet": "s", "updated_at": true}]}),
        ] {
            assert!(parse(bad.to_string().as_bytes(), 4).is_err(), "{bad}");
        }
    }
}
