//! `ballast index build DOCS_DIR --out INDEX_DIR` and `ballast index search INDEX_DIR QUERY`:
//! the local full-text index `[retrieval] kind = "index"` reads (see `exec::retrieval::index`).

use std::path::PathBuf;

use ballast::exec::retrieval::index::{self, IndexRetriever};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    command: IndexCommand,
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Index every .md, .markdown and .txt file under DOCS_DIR (front matter gives id, title,
    /// version, updated_at and fact.NAME); replaces an index an earlier build wrote in
    /// INDEX_DIR, and refuses a directory holding anything else. Pipes, devices and links out
    /// of DOCS_DIR are skipped; each file is read once.
    Build {
        docs_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The best documents for QUERY, as workers retrieve them.
    Search {
        index_dir: PathBuf,
        query: String,
        /// How many documents.
        #[arg(long, short, default_value_t = 4)]
        k: usize,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(a: IndexArgs) -> anyhow::Result<()> {
    match a.command {
        IndexCommand::Build {
            docs_dir,
            out,
            json,
        } => {
            let files = index::source_files(&docs_dir)?.files.len() as u64;
            let bar = indicatif::ProgressBar::new(files);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = tokio::task::spawn_blocking({
                let bar = bar.clone();
                move || {
                    index::build(&docs_dir, &out, &|p| {
                        bar.set_message(p.display().to_string());
                        bar.inc(1);
                    })
                    .map(|r| (r, out))
                }
            })
            .await??;
            bar.finish_and_clear();
            let (report, out) = report;
            if json {
                return super::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?));
            }
            let mut text = format!(
                "indexed {} documents into {}\n",
                report.documents,
                out.display()
            );
            for (file, why) in &report.skipped {
                text.push_str(&format!("skipped {file}: {why}\n"));
            }
            super::emit(&text)
        }
        IndexCommand::Search {
            index_dir,
            query,
            k,
            json,
        } => {
            let r = IndexRetriever::open(&index_dir, k)?;
            let docs = tokio::task::spawn_blocking(move || r.search(&query, k)).await??;
            if json {
                return super::emit(&format!("{}\n", serde_json::to_string_pretty(&docs)?));
            }
            let mut text = String::new();
            for d in &docs {
                text.push_str(&format!(
                    "{:.3}  {}  v{}  {}\n      {}\n",
                    d.score,
                    d.id,
                    d.version,
                    d.title,
                    d.snippet.replace('\n', " ")
                ));
            }
            if docs.is_empty() {
                text.push_str("no documents match\n");
            }
            super::emit(&text)
        }
    }
}
