//! The logs an operator command needs (`approve`, `deny`, `handoff`, `reverse`, `label`), opened
//! the same way on either backend, and the [`Desk`] they act through.

use std::sync::Arc;

use ballast::embedded::Embedded;
use ballast::event::codec::Codecs;
use ballast::log::EventLog;
use ballast::operator::Desk;
use ballast::projection::Projections;
use ballast::projection::turn_index::TurnIndex;
use ballast::projection::waiting::WaitingView;

pub(super) struct OpenDesk {
    pub events: Arc<dyn EventLog>,
    pub requests: Arc<dyn EventLog>,
    pub escalations: Arc<dyn EventLog>,
    pub codecs: Codecs,
    pub index: TurnIndex,
    /// Embedded and not served: the data dir stays open here, so the command can run the
    /// turn's partition itself (`reverse`, `label`).
    pub embedded: Option<Embedded>,
    store: ballast::log::SledStore,
}

impl OpenDesk {
    pub fn desk(&self) -> Desk<'_> {
        Desk {
            events: self.events.as_ref(),
            requests: self.requests.as_ref(),
            codecs: &self.codecs,
            index: &self.index,
        }
    }

    /// The operator queue projection, caught up (inside `serve`, with the projections it
    /// serves; else alone).
    pub async fn waiting(&self, log: &super::LogArgs) -> anyhow::Result<WaitingView> {
        let served = match &log.bootstrap {
            None => Embedded::served(&log.data_dir),
            Some(_) => None,
        };
        let set = match served {
            Some((_, projections)) => projections,
            None => Projections::new(vec![Arc::new(WaitingView::open(&self.store)?)]),
        };
        set.catch_up(self.events.as_ref(), &self.codecs.events, &|_| {})
            .await?;
        Ok(WaitingView::open(&self.store)?)
    }
}

/// Opens the data dir (its turn index caught up) or the Kafka topics of `log`. `busy` is said
/// when the data dir is locked by a running process.
pub(super) async fn open(log: &super::LogArgs, busy: &str) -> anyhow::Result<OpenDesk> {
    let dir = &log.data_dir;
    match &log.bootstrap {
        None => {
            if !dir.join("sled").exists() {
                anyhow::bail!(
                    "{} is not a ballast data dir (no sled/ inside)",
                    dir.display()
                );
            }
            let emb = Embedded::open(dir, 0).map_err(|e| anyhow::anyhow!("{e}\n({busy})"))?;
            let index = TurnIndex::open(&emb.store)?;
            super::catch_up_index(&emb, &index).await?;
            Ok(OpenDesk {
                events: emb.events.clone(),
                requests: emb.requests.clone(),
                escalations: emb.escalations.clone(),
                codecs: emb.codecs.clone(),
                index,
                store: emb.store.clone(),
                // A data dir `serve` runs: its worker applies the command.
                embedded: Some(emb).filter(|e| !e.is_served()),
            })
        }
        Some(bootstrap) => {
            let opened = super::open_log(log).await?;
            let topics = ballast::kafka::Topics::new(&log.topic_prefix);
            let cfg = ballast::log::kafka::KafkaConfig::new(bootstrap);
            Ok(OpenDesk {
                requests: Arc::new(ballast::log::KafkaLog::open(&cfg, &topics.requests).await?),
                escalations: Arc::new(
                    ballast::log::KafkaLog::open(&cfg, &topics.escalations).await?,
                ),
                events: opened.events,
                codecs: opened.codecs,
                index: opened.index,
                embedded: None,
                store: opened.store,
            })
        }
    }
}
