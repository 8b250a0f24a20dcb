//! The scripted model's final answer: a reply written from the turn's tool results, citing the
//! retrieved documents it used. Deterministic, for the demo and tests; with an
//! OpenAI-compatible planner the reply is the model's own.

use crate::event::RetrievedDocument;

/// The reply and the document ids it cites, from `(tool, result JSON)` pairs in call order.
pub fn template_reply(
    documents: &[RetrievedDocument],
    results: &[(String, String)],
) -> (String, Vec<String>) {
    let mut text = String::new();
    for (tool, result) in results {
        let summary = serde_json::from_str::<serde_json::Value>(result)
            .ok()
            .and_then(|v| v.get("summary").and_then(|s| s.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("{tool} done"));
        // One full stop, whether or not the summary brings its own.
        text.push_str(summary.trim_end().trim_end_matches('.'));
        text.push_str(". ");
    }
    let cited: Vec<_> = documents.iter().take(2).collect();
    if let Some(doc) = cited.first() {
        text.push_str(&format!("See \"{}\".", doc.title));
    }
    if text.is_empty() {
        text.push_str("I could not find anything for that request; a colleague will follow up.");
    }
    (
        text.trim().to_string(),
        cited.iter().map(|d| d.id.clone()).collect(),
    )
}
