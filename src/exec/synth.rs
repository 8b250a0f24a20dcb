//! A template synthesizer: writes the reply from tool results and cites the retrieved documents
//! it used. Deterministic, for demos and tests.

use async_trait::async_trait;

use super::{SynthRequest, Synthesizer};
use crate::turn::{ExecFailure, Synthesis};

#[derive(Default)]
pub struct TemplateSynthesizer;

#[async_trait]
impl Synthesizer for TemplateSynthesizer {
    async fn synthesize(&self, request: &SynthRequest) -> Result<Synthesis, ExecFailure> {
        let started = std::time::Instant::now();
        let mut text = String::new();
        for (tool, result) in &request.results {
            let summary = serde_json::from_str::<serde_json::Value>(result)
                .ok()
                .and_then(|v| v.get("summary").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("{tool} done"));
            text.push_str(&summary);
            text.push_str(". ");
        }
        let cited: Vec<_> = request.documents.iter().take(2).collect();
        if let Some(doc) = cited.first() {
            text.push_str(&format!("See \"{}\".", doc.title));
        }
        if text.is_empty() {
            text.push_str(
                "I could not find anything for that request; a colleague will follow up.",
            );
        }
        Ok(Synthesis {
            text: text.trim().to_string(),
            citations: cited.iter().map(|d| d.id.clone()).collect(),
            latency_ms: started.elapsed().as_millis() as i64,
        })
    }
}
