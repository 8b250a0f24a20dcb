//! The embedded deployment: one data directory holds a sled database with the request log, the
//! turn event log, the writer schemas, worker state and read models.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::event::codec::{CodecError, Codecs, SchemaRegistry, fingerprint_hex};
use crate::log::{EventLog, LogError, SledLog, SledStore};
use crate::runtime::state_store::{SledStateStore, StoreError};

pub const DEFAULT_PARTITIONS: u32 = 8;
pub const EVENTS_LOG: &str = "turn-events";
pub const REQUESTS_LOG: &str = "requests";
const ESCALATIONS_LOG: &str = "escalations";
const OUTCOMES_LOG: &str = "outcomes";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot open data dir {dir} (is another ballast process using it?): {source}")]
    Open { dir: String, source: LogError },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "{dir} is not empty and is not a Ballast data dir (it holds {found}); give --data-dir a new or empty directory"
    )]
    NotADataDir { dir: String, found: String },
}

#[derive(Clone)]
pub struct Embedded {
    pub dir: PathBuf,
    pub store: SledStore,
    pub events: Arc<SledLog>,
    pub requests: Arc<SledLog>,
    /// Handoffs to human operators (the embedded escalations topic).
    pub escalations: Arc<SledLog>,
    /// One TurnOutcome per finished turn (the embedded outcomes topic), in completion order.
    pub outcomes: Arc<SledLog>,
    pub codecs: Codecs,
    pub state: Arc<SledStateStore>,
    /// Sealed personal values and wrapped keys (`vault`); reading them needs the master key.
    pub vault_store: Arc<crate::vault::SledVaultStore>,
    /// Who saw cleartext, of which turn, when and why (`vault::reveal`).
    pub reveals: Arc<SledLog>,
}

/// Data dirs this process serves (`ballast serve`), with the projection set its loop keeps
/// current: a command run in-process for a CLI client (`local_socket`) opens the same database
/// and shares the same projections instead of finding the directory locked.
static SERVED: std::sync::Mutex<Vec<(PathBuf, Embedded, crate::projection::Projections)>> =
    std::sync::Mutex::new(Vec::new());

fn served_key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// While alive, the data dir counts as served by this process.
pub struct Serving(PathBuf);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut served = SERVED.lock().unwrap_or_else(|p| p.into_inner());
        served.retain(|(d, _, _)| *d != self.0);
    }
}

/// Files a data dir holds before its database exists (a token minted first, a development
/// key, the demo's workload and effects journal, the served socket's directory, the vault's
/// key file): a directory holding only these is still a Ballast data dir.
const DATA_DIR_FILES: &[&str] = &[
    "sled",
    "auth.toml",
    "auth.toml.tmp",
    crate::vault::DEV_KEY_FILE,
    "workload.jsonl",
    "effects.jsonl",
    "run",
    "vault-keys",
    // What an interrupted `forget --compact` leaves (the next open finishes it).
    "sled.new",
    "sled.old",
];

/// Refuses a directory that holds something other than a Ballast data dir (a home directory,
/// a project folder): commands that write a data dir must not scatter a database into it.
/// A missing or empty directory is fine.
pub fn check_data_dir(dir: &Path) -> Result<(), EmbeddedError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EmbeddedError::Io(e)),
    };
    let mut foreign: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        // `worker-N`: the Kafka demo's workers' own directories.
        .filter(|n| !DATA_DIR_FILES.contains(&n.as_str()) && !n.starts_with("worker-"))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    let more = foreign.len().saturating_sub(3);
    foreign.truncate(3);
    Err(EmbeddedError::NotADataDir {
        dir: dir.display().to_string(),
        found: format!(
            "{}{}",
            foreign.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    })
}

impl Embedded {
    /// Where operator commands for this data dir are checked and sent from (`index` caught up
    /// by the caller).
    pub fn desk<'a>(
        &'a self,
        index: &'a crate::projection::turn_index::TurnIndex,
    ) -> crate::operator::Desk<'a> {
        crate::operator::Desk {
            events: self.events.as_ref(),
            requests: self.requests.as_ref(),
            codecs: &self.codecs,
            index,
        }
    }

    /// Registers this data dir as served by this process, with its live projection set.
    pub fn serving(&self, projections: crate::projection::Projections) -> Serving {
        let key = served_key(&self.dir);
        let mut served = SERVED.lock().unwrap_or_else(|p| p.into_inner());
        served.retain(|(d, _, _)| *d != key);
        served.push((key.clone(), self.clone(), projections));
        Serving(key)
    }

    /// The data dir as this process serves it, if it does.
    pub fn served(dir: &Path) -> Option<(Embedded, crate::projection::Projections)> {
        let key = served_key(dir);
        let served = SERVED.lock().unwrap_or_else(|p| p.into_inner());
        served
            .iter()
            .find(|(d, _, _)| *d == key)
            .map(|(_, e, p)| (e.clone(), p.clone()))
    }

    /// Whether a worker of this process owns the data dir's partitions (commands must then
    /// leave the work to it rather than run partitions themselves).
    pub fn is_served(&self) -> bool {
        Self::served(&self.dir).is_some()
    }

    /// Opens (creating if needed) the data directory. `partitions` applies only on creation;
    /// 0 means "as created" (or the default for a new directory). A directory this process
    /// serves is not opened again: its open database is shared.
    pub fn open(dir: &Path, partitions: u32) -> Result<Self, EmbeddedError> {
        if let Some((emb, _)) = Self::served(dir) {
            return Ok(emb);
        }
        std::fs::create_dir_all(dir)?;
        // A `forget --compact` a crash cut short: finished (or undone) before sled opens.
        crate::vault::compact::finish_interrupted(dir)
            .map_err(|e| EmbeddedError::Io(std::io::Error::other(e.to_string())))?;
        let store = SledStore::open(dir).map_err(|source| EmbeddedError::Open {
            dir: dir.display().to_string(),
            source,
        })?;
        let codecs = load_codecs(&store)?;
        let fresh = store
            .tree("meta")?
            .get(format!("log/{EVENTS_LOG}/partitions"))
            .ok()
            .flatten()
            .is_none();
        let n = if fresh && partitions == 0 {
            DEFAULT_PARTITIONS
        } else {
            partitions
        };
        let events = Arc::new(store.log(EVENTS_LOG, n)?);
        let requests = Arc::new(store.log(REQUESTS_LOG, events.partitions())?);
        let escalations = Arc::new(store.log(ESCALATIONS_LOG, 1)?);
        let outcomes = Arc::new(store.log(OUTCOMES_LOG, 1)?);
        let reveals = Arc::new(store.log(crate::vault::reveal::REVEALS_LOG, 1)?);
        let state = Arc::new(SledStateStore::open(&store)?);
        let vault_store = Arc::new(
            crate::vault::SledVaultStore::open(&store, dir)
                .map_err(|e| EmbeddedError::Store(StoreError::from_display(e)))?,
        );
        Ok(Embedded {
            dir: dir.to_path_buf(),
            store,
            events,
            requests,
            escalations,
            outcomes,
            codecs,
            state,
            vault_store,
            reveals,
        })
    }

    /// The journals a worker on this data dir commits through: events to the turn log, outcome
    /// records to the outcomes log, handoffs to the escalations log, dead letters to the state
    /// store.
    pub fn journals(&self) -> Arc<crate::runtime::journal::LogJournals> {
        Arc::new(crate::runtime::journal::LogJournals {
            events: self.events.clone(),
            outcomes: Some(self.outcomes.clone()),
            escalations: Some(self.escalations.clone()),
            requests: Some(self.requests.clone()),
            store: self.state.clone(),
            vault: Some(self.vault_store.clone()),
        })
    }

    /// The vault of this data dir, opened with `master`.
    pub fn vault(
        &self,
        master: crate::vault::crypto::Key,
        detector: crate::guard::Redactor,
    ) -> Arc<crate::vault::Vault> {
        Arc::new(crate::vault::Vault::new(
            master,
            self.vault_store.clone(),
            detector,
        ))
    }

    /// The runtime wired to this data dir: its logs, codecs, state store and journals (outcomes
    /// and handoffs included), running `exec` under `control`.
    pub fn deps(
        &self,
        exec: crate::exec::ExecutionPlane,
        control: Arc<dyn crate::control::ControlPlane>,
    ) -> crate::runtime::Deps {
        crate::runtime::Deps::new(
            self.events.clone(),
            self.requests.clone(),
            self.codecs.clone(),
            exec,
            self.state.clone(),
        )
        .with_journals(self.journals())
        .with_control(control)
    }

    pub fn partitions(&self) -> u32 {
        self.events.partitions()
    }
}

/// Loads every writer schema stored in this data dir, registers ours, and stores them all, so
/// older and newer binaries sharing the directory can read each other's records.
pub fn load_codecs(store: &SledStore) -> Result<Codecs, EmbeddedError> {
    let tree = store.tree("schemas")?;
    let registry = SchemaRegistry::new();
    for item in tree.iter() {
        let (fp, json) = item.map_err(|e| LogError::storage(e, false))?;
        if let Err(e) = registry.register(&String::from_utf8_lossy(&json)) {
            tracing::warn!(fingerprint = %fingerprint_hex(&fp.as_ref().try_into().unwrap_or([0; 8])), error = %e, "stored schema does not parse");
        }
    }
    let codecs = Codecs::new(Arc::clone(&registry))?;
    for (fp, canonical) in registry.canonical_forms() {
        tree.insert(fp, canonical.as_bytes())
            .map_err(|e| LogError::storage(e, false))?;
    }
    Ok(codecs)
}
