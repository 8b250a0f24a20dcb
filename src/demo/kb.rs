//! A small customer-support knowledge base and a keyword retriever over it.

use std::time::Duration;

use async_trait::async_trait;

use crate::event::RetrievedDocument;
use crate::exec::Retriever;
use crate::ids::TurnId;
use crate::turn::{ExecFailure, Retrieval};

const DOCS: &[(&str, &str, &str)] = &[
    (
        "kb-refund-policy",
        "Refund policy",
        "Orders that arrive late or damaged can be refunded in full within 30 days. Refunds above 500 EUR need a supervisor.",
    ),
    (
        "kb-refund-timing",
        "How long refunds take",
        "Refunds reach the original payment method within 5 to 7 business days after approval.",
    ),
    (
        "kb-shipping-times",
        "Shipping times",
        "Standard shipping takes 2 to 4 days; express ships next day. Delayed orders are tracked automatically.",
    ),
    (
        "kb-order-tracking",
        "Tracking an order",
        "Every order has an id like A10023. Order status shows shipped, delayed, delivered or cancelled.",
    ),
    (
        "kb-returns",
        "Returning an item",
        "Items can be returned within 30 days in original packaging; a return label is emailed.",
    ),
    (
        "kb-damaged",
        "Damaged items",
        "Report damaged items with a photo; we refund or replace them at no cost.",
    ),
    (
        "kb-password",
        "Resetting your password",
        "Use the reset link on the sign-in page; links expire after one hour.",
    ),
    (
        "kb-billing",
        "Billing questions",
        "Invoices are emailed monthly; card charges appear as BALLAST SHOP.",
    ),
    (
        "kb-international",
        "International shipping",
        "We ship to 40 countries; customs fees are paid by the recipient.",
    ),
    (
        "kb-account-deletion",
        "Deleting an account",
        "Account deletion is handled by the privacy team and cannot be done by the assistant.",
    ),
];

/// Scores documents by the share of query words found in their title and body.
pub struct KbRetriever {
    latency: Duration,
}

impl KbRetriever {
    pub fn new(latency: Duration) -> Self {
        KbRetriever { latency }
    }

    pub fn search(query: &str, limit: usize) -> Vec<RetrievedDocument> {
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 3)
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<RetrievedDocument> = DOCS
            .iter()
            .enumerate()
            .filter_map(|(i, (id, title, body))| {
                let hay = format!("{title} {body}").to_lowercase();
                let hits = words.iter().filter(|w| hay.contains(w.as_str())).count();
                (hits > 0).then(|| RetrievedDocument {
                    id: id.to_string(),
                    title: title.to_string(),
                    score: hits as f64 / words.len() as f64,
                    version: 1 + (i as i64 % 3),
                    updated_at_ms: 1_767_225_600_000 - (i as i64) * 86_400_000,
                    snippet: body.chars().take(120).collect(),
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
    async fn retrieve(&self, _turn: TurnId, query: &str) -> Result<Retrieval, ExecFailure> {
        let started = std::time::Instant::now();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(Retrieval {
            query: query.to_string(),
            documents: Self::search(query, 3),
            latency_ms: started.elapsed().as_millis() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_relevant_documents_first() {
        let docs = KbRetriever::search("How long do refunds take?", 3);
        assert_eq!(
            docs.first().map(|d| d.id.as_str()),
            Some("kb-refund-timing")
        );
        assert!(docs.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(KbRetriever::search("?!", 3).is_empty());
    }
}
