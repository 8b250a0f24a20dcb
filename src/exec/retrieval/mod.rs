//! Retrieval a deployment points at its own documents with (`[retrieval]` in `ballast.toml`):
//! a search service of the team's behind a small HTTP contract ([`http`]), or a local full-text
//! index over a folder of Markdown and text files built by `ballast index build` ([`index`]).
//! Either way each retrieval is a recorded `ContextRetrieved` event, and the stale and
//! contradictory-context guards read the documents' `updated_at` and facts.

pub mod http;
pub mod index;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Retriever;
use crate::exec::types::{ExecFailure, Retrieval};
use crate::ids::TurnId;

/// `[retrieval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalConfig {
    pub kind: RetrievalKind,
    /// `http`: the search endpoint (POST, see `exec::retrieval::http`).
    pub url: Option<String>,
    /// `http`: headers of each request; values may name `${VAR}`.
    pub headers: BTreeMap<String, String>,
    /// `index`: the directory `ballast index build` wrote (relative to the file).
    pub index_dir: Option<PathBuf>,
    /// Documents asked for per retrieval.
    pub k: usize,
    /// `http`: one request's timeout.
    pub timeout_ms: u64,
    /// `http`: a larger answer fails the retrieval.
    pub max_response_bytes: usize,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            kind: RetrievalKind::None,
            url: None,
            headers: BTreeMap::new(),
            index_dir: None,
            k: 4,
            timeout_ms: 2_000,
            max_response_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalKind {
    /// No retrieval: plans see the request and the session only.
    #[default]
    None,
    /// The team's search service.
    Http,
    /// A local index built by `ballast index build`.
    Index,
}

/// The most documents one retrieval may return, whatever `k` says.
pub const MAX_K: usize = 32;
/// Bounds on each document's fields as they enter the log.
pub const MAX_SNIPPET_CHARS: usize = 2_000;
pub const MAX_FIELD_CHARS: usize = 256;
pub const MAX_FACTS: usize = 32;

impl RetrievalConfig {
    /// What is wrong with this section, as (field, message).
    pub fn problems(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=MAX_K).contains(&self.k) {
            out.push(("k", format!("between 1 and {MAX_K}")));
        }
        match self.kind {
            RetrievalKind::None => {}
            RetrievalKind::Http => {
                match self.url.as_deref().map(reqwest::Url::parse) {
                    None => out.push(("url", "kind = \"http\" needs the search url".into())),
                    Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => {}
                    Some(Ok(_)) => out.push(("url", "the scheme must be http or https".into())),
                    Some(Err(e)) => out.push(("url", e.to_string())),
                }
                for (k, v) in &self.headers {
                    if let Err(var) = super::http_tool::expand(v, env) {
                        out.push((
                            "headers",
                            format!("{k}: environment variable {var} is not set"),
                        ));
                    }
                }
                if !(1..=60_000).contains(&self.timeout_ms) {
                    out.push(("timeout_ms", "between 1 and 60000".into()));
                }
                if !(1..=super::body::MAX_RESPONSE_CAP).contains(&self.max_response_bytes) {
                    out.push((
                        "max_response_bytes",
                        format!("between 1 and {}", super::body::MAX_RESPONSE_CAP),
                    ));
                }
            }
            RetrievalKind::Index => match &self.index_dir {
                None => out.push((
                    "index_dir",
                    "kind = \"index\" needs the directory `ballast index build` wrote".into(),
                )),
                Some(d) if !d.join("meta.json").exists() => out.push((
                    "index_dir",
                    format!(
                        "{} is not an index: build it with `ballast index build DOCS_DIR --out {}`",
                        d.display(),
                        d.display()
                    ),
                )),
                Some(_) => {}
            },
        }
        out
    }
}

/// No retrieval: a deployment whose plans need the request only.
pub struct NoRetriever;

#[async_trait]
impl Retriever for NoRetriever {
    async fn retrieve(
        &self,
        _turn: TurnId,
        _tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure> {
        Ok(Retrieval {
            query: query.to_string(),
            documents: Vec::new(),
            latency_ms: 0,
        })
    }
}

pub(crate) fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
