//! A small customer-support knowledge base and a keyword retriever over it.

use std::time::Duration;

use async_trait::async_trait;

use crate::event::RetrievedDocument;
use crate::exec::Retriever;
use crate::ids::TurnId;
use crate::turn::{ExecFailure, Retrieval};

/// A knowledge-base document: id, title, body, age in days, the facts it states.
struct Doc {
    id: &'static str,
    title: &'static str,
    body: &'static str,
    age_days: i64,
    facts: &'static [(&'static str, &'static str)],
}

const fn doc(
    id: &'static str,
    title: &'static str,
    body: &'static str,
    age_days: i64,
    facts: &'static [(&'static str, &'static str)],
) -> Doc {
    Doc {
        id,
        title,
        body,
        age_days,
        facts,
    }
}

const DAY_MS: i64 = 86_400_000;

const DOCS: &[Doc] = &[
    doc(
        "kb-refund-policy",
        "Refund policy",
        "Orders that arrive late or damaged can be refunded in full within 30 days. Refunds above 500 EUR need a supervisor.",
        40,
        &[("refund_window_days", "30")],
    ),
    doc(
        "kb-refund-timing",
        "How long refunds take",
        "Refunds reach the original payment method within 5 to 7 business days after approval.",
        12,
        &[("refund_days", "5-7")],
    ),
    // Superseded years ago; the stale-context guard keeps it out of any plan.
    doc(
        "kb-refund-timing-2019",
        "How long refunds take (2019)",
        "Refunds reach the original payment method within 14 business days after approval.",
        2_400,
        &[("refund_days", "14")],
    ),
    // Disagrees with kb-refund-timing: a question touching both is contradictory context.
    doc(
        "kb-express-lane",
        "Express-lane reimbursements",
        "Express-lane reimbursements credit the customer within 2 days.",
        5,
        &[("refund_days", "2")],
    ),
    doc(
        "kb-shipping-times",
        "Shipping and delivery times",
        "Standard delivery takes 2 to 4 days; express ships next day. Delayed orders are tracked automatically.",
        30,
        &[("standard_shipping_days", "2-4")],
    ),
    doc(
        "kb-order-tracking",
        "Tracking an order",
        "Every order has an id like A10023. Order status shows shipped, delayed, delivered or cancelled.",
        60,
        &[],
    ),
    doc(
        "kb-returns",
        "Returning an item",
        "Items can be returned within 30 days in original packaging; a return label is emailed.",
        90,
        &[("return_window_days", "30")],
    ),
    doc(
        "kb-damaged",
        "Damaged items",
        "Report damaged items with a photo; we refund or replace them at no cost.",
        20,
        &[],
    ),
    doc(
        "kb-password",
        "Resetting your password",
        "Use the reset link on the sign-in page; links expire after one hour.",
        200,
        &[],
    ),
    doc(
        "kb-billing",
        "Billing questions",
        "Invoices are emailed monthly; card charges appear as BALLAST SHOP.",
        150,
        &[],
    ),
    doc(
        "kb-international",
        "International shipping",
        "We ship to 40 countries; customs fees are paid by the recipient.",
        120,
        &[],
    ),
    doc(
        "kb-holiday-delivery",
        "Holiday delivery",
        "Orders placed before December 20 usually arrive before the holidays; later ones may not.",
        15,
        &[],
    ),
    // A marketing draft that promises more than the agent may: the reply lint stops a reply
    // that repeats it. Only a question about the campaign finds it.
    doc(
        "kb-holiday-campaign",
        "Holiday campaign (draft)",
        "Draft copy: we guarantee it arrives before the holidays for every purchase made by December 20.",
        3,
        &[],
    ),
    doc(
        "kb-account-deletion",
        "Deleting an account",
        "Account deletion is handled by the privacy team and cannot be done by the assistant.",
        80,
        &[],
    ),
];

/// Words of a question that say nothing about its subject ("What is your return policy?" is
/// about returns, not about whichever document says "your").
const STOP_WORDS: &[&str] = &[
    "what", "when", "where", "which", "while", "will", "would", "could", "should", "your", "yours",
    "have", "does", "done", "with", "this", "that", "these", "those", "from", "there", "their",
    "about", "please", "thanks", "thank", "just", "into", "they", "them", "been", "being", "were",
    "than", "then", "also", "some", "much", "many", "more", "most", "very", "want", "need", "know",
    "tell", "help", "long",
];

/// Scores documents by the share of query words found in their title and body.
pub struct KbRetriever {
    latency: Duration,
}

impl KbRetriever {
    pub fn new(latency: Duration) -> Self {
        KbRetriever { latency }
    }

    /// Documents matching `query`, best first; their dates are relative to `now_ms`.
    pub fn search(query: &str, limit: usize, now_ms: i64) -> Vec<RetrievedDocument> {
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 3)
            .map(str::to_lowercase)
            .filter(|w| !STOP_WORDS.contains(&w.as_str()))
            .collect();
        if words.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<RetrievedDocument> = DOCS
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                // A word in the title says more about what a document is for than one in its
                // body: it counts twice.
                let (title, body) = (d.title.to_lowercase(), d.body.to_lowercase());
                let hits: usize = words
                    .iter()
                    .map(|w| {
                        2 * usize::from(title.contains(w.as_str()))
                            + usize::from(body.contains(w.as_str()))
                    })
                    .map(|h| h.min(2))
                    .sum();
                (hits > 0).then(|| RetrievedDocument {
                    id: d.id.to_string(),
                    title: d.title.to_string(),
                    score: hits as f64 / (2 * words.len()) as f64,
                    version: 1 + (i as i64 % 3),
                    updated_at_ms: now_ms - d.age_days * DAY_MS,
                    snippet: d.body.chars().take(120).collect(),
                    facts: d
                        .facts
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                })
            })
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        scored.truncate(limit);
        scored
    }
}

#[async_trait]
impl Retriever for KbRetriever {
    async fn retrieve(
        &self,
        _turn: TurnId,
        _tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure> {
        let started = std::time::Instant::now();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(Retrieval {
            query: query.to_string(),
            documents: Self::search(
                query,
                3,
                crate::clock::Clock::now_ms(&crate::clock::SystemClock),
            ),
            latency_ms: started.elapsed().as_millis() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_relevant_documents_first() {
        let docs = KbRetriever::search("How long do refunds take?", 3, 1_767_225_600_000);
        assert_eq!(
            docs.first().map(|d| d.id.as_str()),
            Some("kb-refund-timing")
        );
        assert!(docs.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(KbRetriever::search("?!", 3, 0).is_empty());
    }
}
