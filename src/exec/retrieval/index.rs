//! `[retrieval] kind = "index"`: a local full-text index (tantivy, BM25) over a folder of
//! Markdown or text files, built by `ballast index build DOCS_DIR --out INDEX_DIR` and searched
//! by `ballast index search INDEX_DIR QUERY` and by workers.
//!
//! A file may open with front matter between `---` lines, one `key: value` per line:
//! `id` (default: the path under DOCS_DIR without its extension), `title` (default: the first
//! `# ` heading, else the file name), `version` (an integer, default 1), `updated_at` (RFC 3339
//! or a date; default: the file's modification time), and `fact.NAME: value` for each fact the
//! document states (the contradictory-context guard compares them across documents). Other keys
//! are ignored, so existing front matter (tags, authors) does no harm.
//!
//! Which files a build reads (regular files only, each once, no link out of the folder) and
//! which directory it may replace (only one it wrote itself) is in `files.rs`.

mod files;

pub use files::Sources;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, STORED, STRING, Schema, TEXT, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, TantivyDocument, doc};

use super::{MAX_FACTS, MAX_FIELD_CHARS, MAX_SNIPPET_CHARS, cut};
use crate::event::RetrievedDocument;
use crate::exec::Retriever;
use crate::exec::types::{ExecFailure, Retrieval};
use crate::ids::TurnId;

/// A larger file is skipped (and said so): one document should be a page, not a dump.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
const SNIPPET_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A document read from a file, before indexing.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceDoc {
    pub id: String,
    pub title: String,
    pub body: String,
    pub version: i64,
    pub updated_at_ms: Option<i64>,
    pub facts: BTreeMap<String, String>,
}

/// Parses a file's text: front matter (if any), then the body. `fallback_id` names the file.
pub fn parse_document(text: &str, fallback_id: &str) -> Result<SourceDoc, String> {
    let mut doc = SourceDoc {
        id: fallback_id.to_string(),
        title: String::new(),
        body: text.to_string(),
        version: 1,
        updated_at_ms: None,
        facts: BTreeMap::new(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    {
        let Some(end) = rest.find("\n---") else {
            return Err("front matter opened with --- is never closed".into());
        };
        let (front, after) = rest.split_at(end);
        doc.body = after["\n---".len()..]
            .trim_start_matches(['-', '\r'])
            .trim_start_matches('\n')
            .to_string();
        for (n, line) in front.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("front matter line {}: not `key: value`", n + 2));
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            match key.trim() {
                "id" => doc.id = value.to_string(),
                "title" => doc.title = value.to_string(),
                "version" => {
                    doc.version = value
                        .parse()
                        .map_err(|_| format!("version {value:?} is not an integer"))?
                }
                "updated_at" => {
                    doc.updated_at_ms = Some(crate::clock::parse_time(value)?);
                }
                k => {
                    if let Some(fact) = k.strip_prefix("fact.") {
                        if doc.facts.len() < MAX_FACTS {
                            doc.facts
                                .insert(cut(fact, MAX_FIELD_CHARS), cut(value, MAX_FIELD_CHARS));
                        }
                    }
                }
            }
        }
    }
    if doc.title.is_empty() {
        doc.title = doc
            .body
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .map(str::trim)
            .unwrap_or(fallback_id)
            .to_string();
    }
    doc.id = cut(&doc.id, MAX_FIELD_CHARS);
    doc.title = cut(&doc.title, MAX_FIELD_CHARS);
    Ok(doc)
}

struct Fields {
    id: Field,
    title: Field,
    body: Field,
    version: Field,
    updated: Field,
    facts: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", TEXT | STORED),
        body: b.add_text_field("body", TEXT | STORED),
        version: b.add_i64_field("version", STORED),
        updated: b.add_i64_field("updated_at_ms", STORED),
        facts: b.add_text_field("facts", STORED),
    };
    (b.build(), fields)
}

fn fields_of(index: &Index) -> Result<Fields, IndexError> {
    let s = index.schema();
    let f = |name: &str| {
        s.get_field(name)
            .map_err(|_| IndexError::Invalid(format!("not a Ballast index: no field {name}")))
    };
    Ok(Fields {
        id: f("id")?,
        title: f("title")?,
        body: f("body")?,
        version: f("version")?,
        updated: f("updated_at_ms")?,
        facts: f("facts")?,
    })
}

/// What a build did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BuildReport {
    pub documents: usize,
    /// Files left out, with why.
    pub skipped: Vec<(String, String)>,
}

/// The Markdown and text files under `dir`, sorted (a build is reproducible), and the ones
/// left out with why (see `files.rs`).
pub fn source_files(dir: &Path) -> Result<Sources, IndexError> {
    files::source_files(dir)
}

/// Builds an index of `docs` into `out`: a new or empty directory, or one an earlier build
/// wrote (replaced); a directory holding anything else is refused and left as it is.
/// `progress` is told each file done.
pub fn build(docs: &Path, out: &Path, progress: &dyn Fn(&Path)) -> Result<BuildReport, IndexError> {
    let sources = source_files(docs)?;
    let created = files::prepare_out(out)?;
    match write_index(docs, out, sources, progress) {
        Ok(report) => {
            files::mark_out(out)?;
            Ok(report)
        }
        Err(e) => {
            // `out` was empty when the build began: what is in it now is the build's.
            files::clean_out(out, created);
            Err(e)
        }
    }
}

fn write_index(
    docs: &Path,
    out: &Path,
    sources: Sources,
    progress: &dyn Fn(&Path),
) -> Result<BuildReport, IndexError> {
    let (schema, f) = schema();
    let index = Index::create_in_dir(out, schema)?;
    let mut writer: tantivy::IndexWriter = index.writer(50_000_000)?;
    let mut report = BuildReport {
        documents: 0,
        skipped: sources.skipped,
    };
    for path in &sources.files {
        progress(path);
        let rel = path.strip_prefix(docs).unwrap_or(path);
        let id = rel.with_extension("").to_string_lossy().replace('\\', "/");
        let text = match files::read_document(path, MAX_FILE_BYTES) {
            Ok(t) => t,
            Err(e) => {
                report.skipped.push((rel.display().to_string(), e));
                continue;
            }
        };
        let d = match parse_document(&text, &id) {
            Ok(d) => d,
            Err(e) => {
                report.skipped.push((rel.display().to_string(), e));
                continue;
            }
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let facts = serde_json::to_string(&d.facts).unwrap_or_else(|_| "{}".into());
        writer.add_document(doc!(
            f.id => d.id,
            f.title => d.title,
            f.body => d.body,
            f.version => d.version,
            f.updated => d.updated_at_ms.unwrap_or(modified),
            f.facts => facts,
        ))?;
        report.documents += 1;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    drop(index);
    Ok(report)
}

/// An open index, searched by workers and `ballast index search`.
#[derive(Clone)]
pub struct IndexRetriever(Arc<Inner>);

struct Inner {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    k: usize,
}

impl IndexRetriever {
    pub fn open(dir: &Path, k: usize) -> Result<Self, IndexError> {
        if !dir.join("meta.json").exists() {
            return Err(io(dir, "not an index: build it with `ballast index build`"));
        }
        let index = Index::open_in_dir(dir)?;
        let fields = fields_of(&index)?;
        let reader = index.reader()?;
        Ok(IndexRetriever(Arc::new(Inner {
            index,
            reader,
            fields,
            k: k.clamp(1, super::MAX_K),
        })))
    }

    /// The best `k` documents for `query` (any text: what the parser cannot read is searched
    /// as words).
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<RetrievedDocument>, IndexError> {
        self.0.search(query, k)
    }
}

impl Inner {
    fn search(&self, query: &str, k: usize) -> Result<Vec<RetrievedDocument>, IndexError> {
        let searcher = self.reader.searcher();
        let parser = QueryParser::for_index(&self.index, vec![self.fields.title, self.fields.body]);
        let (q, _ignored) = parser.parse_query_lenient(query);
        let top = searcher.search(&q, &TopDocs::with_limit(k.clamp(1, super::MAX_K)))?;
        let mut snippets = SnippetGenerator::create(&searcher, &*q, self.fields.body)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut out = Vec::new();
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let text = |f: Field| {
                d.get_first(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let int = |f: Field| d.get_first(f).and_then(|v| v.as_i64()).unwrap_or(0);
            let fragment = snippets.snippet_from_doc(&d).fragment().to_string();
            let snippet = if fragment.trim().is_empty() {
                cut(&text(self.fields.body), SNIPPET_CHARS)
            } else {
                fragment
            };
            out.push(RetrievedDocument {
                id: text(self.fields.id),
                title: text(self.fields.title),
                score: f64::from(score),
                version: int(self.fields.version),
                updated_at_ms: int(self.fields.updated),
                snippet: cut(&snippet, MAX_SNIPPET_CHARS),
                facts: serde_json::from_str(&text(self.fields.facts)).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Retriever for IndexRetriever {
    async fn retrieve(
        &self,
        _turn: TurnId,
        _tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure> {
        let started = Instant::now();
        // Searching is CPU work on files: off the runtime's threads.
        let inner = Arc::clone(&self.0);
        let q = query.to_string();
        let result = tokio::task::spawn_blocking(move || inner.search(&q, inner.k))
            .await
            .unwrap_or_else(|e| Err(IndexError::Invalid(format!("search task: {e}"))));
        let latency_ms = started.elapsed().as_millis() as i64;
        match result {
            Ok(documents) => Ok(Retrieval {
                query: query.to_string(),
                documents,
                latency_ms,
            }),
            Err(e) => Err(ExecFailure {
                message: format!("retrieval: {e}"),
                retryable: true,
                latency_ms,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_gives_version_time_and_facts() {
        let d = parse_document(
            "---\ntitle: \"Refunds\"\nversion: 3\nupdated_at: 2026-11-01\nfact.refund_days: 5-7\n\
             tags: [a, b]\n---\n# Heading\nRefunds take 5 to 7 days.\n",
            "policies/refunds",
        )
        .expect("doc");
        assert_eq!(d.title, "Refunds");
        assert_eq!(d.version, 3);
        assert_eq!(d.updated_at_ms, Some(1_793_491_200_000));
        assert_eq!(d.facts["refund_days"], "5-7");
        assert!(d.body.starts_with("# Heading"));
        let plain = parse_document("# Shipping\nWe ship daily.", "shipping").expect("doc");
        assert_eq!((plain.title.as_str(), plain.version), ("Shipping", 1));
        assert!(parse_document("---\ntitle: x\n", "x").is_err());
        assert!(parse_document("---\nversion: three\n---\n", "x").is_err());
        assert!(parse_document("---\nupdated_at: soon\n---\n", "x").is_err());
    }

    #[test]
    fn an_index_is_built_and_searched() {
        let dir = tempfile::tempdir().expect("tmp");
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(docs.join("sub")).expect("mkdir");
        std::fs::write(
            docs.join("refunds.md"),
            "---\nversion: 2\nupdated_at: 2026-10-01T00:00:00Z\nfact.refund_days: 5\n---\n\
             # Refunds\nRefunds reach the card within five days.\n",
        )
        .expect("write");
        std::fs::write(docs.join("sub/shipping.txt"), "Parcels ship every weekday.").expect("w");
        std::fs::write(docs.join("bad.md"), "---\nversion: x\n---\n").expect("w");
        std::fs::write(docs.join("image.png"), "not text").expect("w");
        let out = dir.path().join("index");
        let report = build(&docs, &out, &|_| {}).expect("build");
        assert_eq!(report.documents, 2);
        assert_eq!(report.skipped.len(), 1);
        let r = IndexRetriever::open(&out, 4).expect("open");
        let hits = r.search("how long do refunds take", 4).expect("search");
        assert_eq!(hits[0].id, "refunds");
        assert_eq!(hits[0].version, 2);
        assert_eq!(hits[0].facts["refund_days"], "5");
        assert!(hits[0].snippet.contains("Refunds") || hits[0].snippet.contains("refund"));
        assert_eq!(
            r.search("weekday", 4).expect("search")[0].id,
            "sub/shipping"
        );
        // Query syntax errors are searched as words, never an error.
        assert!(r.search("refunds AND (", 4).is_ok());
        // A rebuild replaces the index; a directory holding other things is refused.
        build(&docs, &out, &|_| {}).expect("rebuild");
        assert!(build(&docs, &docs, &|_| {}).is_err());
    }
}
