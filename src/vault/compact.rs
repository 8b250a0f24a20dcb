//! Rewriting a data dir's sled database into a fresh one, so that records removed from it —
//! the sealed values of a forgotten user, keys an earlier version kept in sled — leave its
//! files too. sled keeps a removed record in its segment files until it reuses the space; a
//! fresh database holds only what is live.
//!
//! `ballast forget --compact` runs it (embedded, with `serve` stopped). Steps, each durable
//! before the next: every tree copied to `sled.new`; `sled` renamed to `sled.old`; `sled.new`
//! renamed to `sled`; `sled.old` removed. [`finish_interrupted`] (run before any open of the
//! data dir) completes or undoes a compaction a crash cut short: `sled.new` exists complete
//! only once `sled` has been renamed away.

use std::path::Path;

const LIVE: &str = "sled";
const NEW: &str = "sled.new";
const OLD: &str = "sled.old";

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the database: {0}")]
    Sled(#[from] sled::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompactError + '_ {
    move |source| CompactError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), CompactError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Finishes what an interrupted compaction of `dir` left: `sled.new` complete and `sled`
/// renamed away → it becomes `sled`; a leftover `sled.old` (the old files, removed records
/// and all) or a partial `sled.new` is removed.
pub fn finish_interrupted(dir: &Path) -> Result<(), CompactError> {
    let (live, new, old) = (dir.join(LIVE), dir.join(NEW), dir.join(OLD));
    if !live.exists() && old.exists() && new.exists() {
        std::fs::rename(&new, &live).map_err(io(&new))?;
        sync_dir(dir)?;
    }
    for leftover in [old, new] {
        if leftover.exists() && live.exists() {
            tracing::warn!(path = %leftover.display(), "removing what an interrupted compaction left");
            std::fs::remove_dir_all(&leftover).map_err(io(&leftover))?;
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub trees: usize,
    pub records: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Rewrites the sled database of the data dir `dir` into a fresh one. The data dir must not
/// be open (sled's lock refuses otherwise).
pub fn compact(dir: &Path) -> Result<Compacted, CompactError> {
    finish_interrupted(dir)?;
    let (live, new, old) = (dir.join(LIVE), dir.join(NEW), dir.join(OLD));
    let bytes_before = size(&live);
    // Held open (and locked) until the new database is in place.
    let from = sled::Config::new().path(&live).open()?;
    let to = sled::Config::new().path(&new).flush_every_ms(None).open()?;
    let (mut trees, mut records) = (0, 0);
    for name in from.tree_names() {
        let (src, dst) = (from.open_tree(&name)?, to.open_tree(&name)?);
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for kv in src.iter() {
            let (k, v) = kv?;
            batch.insert(k, v);
            pending += 1;
            records += 1;
            if pending == 10_000 {
                dst.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        dst.apply_batch(batch)?;
        trees += 1;
    }
    to.flush()?;
    drop(to);
    sync_dir(&new)?;
    std::fs::rename(&live, &old).map_err(io(&live))?;
    sync_dir(dir)?;
    std::fs::rename(&new, &live).map_err(io(&new))?;
    sync_dir(dir)?;
    drop(from);
    std::fs::remove_dir_all(&old).map_err(io(&old))?;
    sync_dir(dir)?;
    Ok(Compacted {
        trees,
        records,
        bytes_before,
        bytes_after: size(&live),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_database_holds_what_was_live_and_nothing_removed() {
        let d = tempfile::tempdir().expect("tmp");
        {
            let db = sled::open(d.path().join(LIVE)).expect("db");
            db.insert(b"default", b"kept").expect("insert");
            let t = db.open_tree("vault").expect("tree");
            t.insert(b"k\0acme", vec![0xA5; 60]).expect("insert");
            t.insert(b"k\0globex", vec![0x5A; 60]).expect("insert");
            t.remove(b"k\0acme").expect("remove");
            db.flush().expect("flush");
        }
        let before: Vec<u8> = files(&d.path().join(LIVE));
        assert!(
            contains(&before, &[0xA5; 60]),
            "sled keeps the removed record"
        );

        let done = compact(d.path()).expect("compact");
        assert_eq!(done.records, 2);
        let after = files(&d.path().join(LIVE));
        assert!(!contains(&after, &[0xA5; 60]), "gone from the files");
        assert!(contains(&after, &[0x5A; 60]));
        assert!(!d.path().join(OLD).exists() && !d.path().join(NEW).exists());
        let db = sled::open(d.path().join(LIVE)).expect("reopen");
        assert_eq!(
            db.get(b"default").expect("get").as_deref(),
            Some(&b"kept"[..])
        );
        let t = db.open_tree("vault").expect("tree");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_compaction_cut_short_is_finished_or_undone() {
        let d = tempfile::tempdir().expect("tmp");
        let (live, new, old) = (d.path().join(LIVE), d.path().join(NEW), d.path().join(OLD));
        // Between the renames: the complete new database becomes the live one.
        std::fs::create_dir_all(new.join("x")).expect("new");
        std::fs::create_dir_all(&old).expect("old");
        finish_interrupted(d.path()).expect("finish");
        assert!(live.join("x").exists() && !old.exists() && !new.exists());
        // Before the first rename: a partial new database goes, the live one stays.
        std::fs::create_dir_all(&new).expect("new");
        finish_interrupted(d.path()).expect("undo");
        assert!(live.join("x").exists() && !new.exists());
    }

    fn files(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            if e.path().is_dir() {
                out.extend(files(&e.path()));
            } else {
                out.extend(std::fs::read(e.path()).expect("read"));
            }
        }
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
}
