//! The vault's key file: where tenant and user keys rest, so that destroying one is real.
//!
//! sled, which holds the sealed values, is log-structured: a removed or overwritten record
//! stays in its segment files until sled happens to reuse the space, which may be never. A
//! wrapped key left there opens again with the master key, and with it every value it sealed
//! (issue #29). So keys never go to sled. They live in `DATA_DIR/vault-keys/`:
//!
//! - `keys`: every key record (`k\0TENANT` wrapped by the master key, `u\0TENANT\0USER`
//!   wrapped by the tenant key — the same bytes the store always kept), sealed in frames under
//!   a key-encryption key (KEK). A record for a new id is appended (one write and fsync);
//!   removing or replacing one — forget, a master key rotation — rewrites the file whole
//!   under a new KEK: written beside it, fsynced, renamed over it, the directory fsynced.
//! - `slots`: two 4 KiB slots, one holding the secret the current KEK is derived from. A
//!   rewrite puts the new secret in the other slot first and, once the new file is in place,
//!   overwrites the old slot with zeros where it lies (`slots.rs`). The old file's blocks may
//!   linger on the disk after the rename; without their KEK they are noise.
//!
//! The master key is still needed to use a key (tenant keys inside are wrapped by it); the KEK
//! only makes deletion stick. Forgetting needs no master key.
//!
//! Crashes: an append cut short is the file's last frame and is dropped on open (it was never
//! acknowledged, so no event names its key); a rewrite cut short leaves `keys.tmp` and a slot
//! the key file does not name, both removed on open. Damage anywhere else is an error, never a
//! silent loss of keys.

mod format;
mod slots;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use format::{Frame, SlotState};
pub use format::{MAX_ID, MAX_VALUE};
use slots::Slots;

use super::VaultRecord;
use super::crypto::{self, Key};

/// The key file's directory inside a data dir.
pub const KEYS_DIR: &str = "vault-keys";
const KEYS: &str = "keys";
const TMP: &str = "keys.tmp";
const SLOTS: &str = "slots";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    #[error(
        "a vault key record is too large for the key file: id {id} bytes (at most {MAX_ID}), \
         value {value} bytes (at most {MAX_VALUE})"
    )]
    TooLarge { id: usize, value: usize },
    #[error("sealing the key file failed")]
    Seal,
}

impl KeyFileError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        KeyFileError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn corrupt(path: &Path, message: impl std::fmt::Display) -> Self {
        KeyFileError::Corrupt {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), KeyFileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyFileError::io(dir, e))
}

pub struct KeyFile {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    slots: Slots,
    generation: u64,
    slot: u8,
    kek: Key,
    /// `keys`, open for appending.
    file: File,
    len: u64,
    frames: u64,
    /// An append failed part-way and could not be cut off: the next write rewrites the file.
    damaged_tail: bool,
    /// A retired slot whose wipe failed: every later write tries again (and the next open).
    unwiped: Option<u8>,
}

/// Key files open in this process, by directory: every handle on a data dir shares one.
static OPEN: Mutex<Vec<(PathBuf, Weak<KeyFile>)>> = Mutex::new(Vec::new());

/// A new generation of the key file, written and renamed in; the caller wipes the old slot.
struct Written {
    file: File,
    len: u64,
    frames: u64,
    kek: Key,
    /// Whether the rename is durable.
    synced: Result<(), KeyFileError>,
}

/// Records into frames no larger than `MAX_FRAME`.
fn frames_of(records: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk: Vec<(&[u8], &[u8])> = Vec::new();
    let mut size = 0;
    for (id, value) in records {
        let n = format::record_len(id, value);
        if !chunk.is_empty() && format::frame_len(size + n) > format::MAX_FRAME {
            out.push(format::encode_records(chunk.drain(..)));
            size = 0;
        }
        chunk.push((id, value));
        size += n;
    }
    if !chunk.is_empty() {
        out.push(format::encode_records(chunk));
    }
    out
}

impl KeyFile {
    /// The key file of `data_dir`, created if missing; the one this process has open already,
    /// if it has.
    pub fn open(data_dir: &Path) -> Result<Arc<KeyFile>, KeyFileError> {
        let dir = data_dir.join(KEYS_DIR);
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| KeyFileError::io(&dir, e))?;
            sync_dir(data_dir)?;
        }
        let canonical = std::fs::canonicalize(&dir).map_err(|e| KeyFileError::io(&dir, e))?;
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(kf) = open
            .iter()
            .find(|(d, _)| *d == canonical)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(kf);
        }
        let kf = Arc::new(KeyFile::load(&canonical)?);
        open.push((canonical, Arc::downgrade(&kf)));
        Ok(kf)
    }

    fn load(dir: &Path) -> Result<KeyFile, KeyFileError> {
        let slots = Slots::open(&dir.join(SLOTS))?;
        let path = dir.join(KEYS);
        let bytes = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(KeyFileError::io(&path, e)),
        };
        let inner = match bytes {
            None => Self::create(dir, slots)?,
            Some(bytes) => Self::recover(dir, slots, &bytes)?,
        };
        // A rewrite that did not finish: its file and its slot go (the file is noise without
        // the slot, but needs no keeping).
        let tmp = dir.join(TMP);
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| KeyFileError::io(&tmp, e))?;
            sync_dir(dir)?;
        }
        let other = 1 - inner.slot;
        if inner.slots.read(other)? != SlotState::Empty {
            inner.slots.wipe(other)?;
        }
        Ok(KeyFile {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
        })
    }

    /// A new, empty key file (generation 1, slot 0).
    fn create(dir: &Path, slots: Slots) -> Result<Inner, KeyFileError> {
        for s in 0..2 {
            if let SlotState::Valid { generation, .. } = slots.read(s)?
                && generation > 1
            {
                return Err(KeyFileError::corrupt(
                    &dir.join(KEYS),
                    format!(
                        "missing, though slot {s} holds the secret of its generation \
                         {generation}: the key file was lost, and with it every key; restore \
                         {} whole from the backup the rest of the data dir came from",
                        dir.display()
                    ),
                ));
            }
        }
        let w = Self::write_generation(dir, &slots, 1, 0, &BTreeMap::new())?;
        w.synced?;
        Ok(Inner {
            records: BTreeMap::new(),
            slots,
            generation: 1,
            slot: 0,
            kek: w.kek,
            file: w.file,
            len: w.len,
            frames: w.frames,
            damaged_tail: false,
            unwiped: None,
        })
    }

    /// The key file as it is on disk, a torn last append cut off.
    fn recover(dir: &Path, slots: Slots, bytes: &[u8]) -> Result<Inner, KeyFileError> {
        let path = dir.join(KEYS);
        let header = format::decode_header(bytes).map_err(|e| KeyFileError::corrupt(&path, e))?;
        let secret = match slots.read(header.slot)? {
            SlotState::Valid { generation, secret } if generation == header.generation => secret,
            _ => {
                return Err(KeyFileError::corrupt(
                    &path,
                    format!(
                        "its key slot ({} of {}/{SLOTS}, generation {}) is missing or damaged: \
                         the vault's keys cannot be read",
                        header.slot,
                        dir.display(),
                        header.generation
                    ),
                ));
            }
        };
        let kek = format::kek(&secret, header.generation);
        if !header.opens_with(&kek) {
            return Err(KeyFileError::corrupt(
                &path,
                "the slot's secret does not open this key file",
            ));
        }
        let mut records = BTreeMap::new();
        let mut at = format::HEADER_LEN;
        let mut frames = 0u64;
        let torn = loop {
            match format::read_frame(&kek, header.generation, frames, bytes, at)
                .map_err(|e| KeyFileError::corrupt(&path, e))?
            {
                Frame::Records(rs, next) => {
                    records.extend(rs);
                    at = next;
                    frames += 1;
                }
                Frame::End => break false,
                Frame::Torn => break true,
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| KeyFileError::io(&path, e))?;
        if torn {
            tracing::warn!(
                file = %path.display(), dropped = bytes.len() - at,
                "vault key file: an append that never finished (a crash) is cut off"
            );
            file.set_len(at as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| KeyFileError::io(&path, e))?;
        }
        Ok(Inner {
            records,
            slots,
            generation: header.generation,
            slot: header.slot & 1,
            kek,
            file,
            len: at as u64,
            frames,
            damaged_tail: false,
            unwiped: None,
        })
    }

    /// Writes generation `generation` of the key file holding `records`, its secret in `slot`,
    /// and renames it in place. Once renamed, the new file is the key file whatever follows:
    /// a failure to make the rename durable comes back in `Written::synced`.
    fn write_generation(
        dir: &Path,
        slots: &Slots,
        generation: u64,
        slot: u8,
        records: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<Written, KeyFileError> {
        let secret = crypto::random_key();
        slots.write(slot, generation, &secret)?;
        let kek = format::kek(&secret, generation);
        let tmp = dir.join(TMP);
        let written = (|| {
            let mut bytes = format::encode_header(generation, slot, &kek);
            let frames = frames_of(records);
            for (i, plain) in frames.iter().enumerate() {
                let frame = format::seal_frame(&kek, generation, i as u64, plain)
                    .ok_or(KeyFileError::Seal)?;
                bytes.extend_from_slice(&frame);
            }
            // Opened for appending: after the rename this handle is the key file's. (A file
            // left by an earlier failure goes first: append and truncate do not mix.)
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(KeyFileError::io(&tmp, e));
                }
                _ => {}
            }
            let mut f = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| KeyFileError::io(&tmp, e))?;
            f.write_all(&bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| KeyFileError::io(&tmp, e))?;
            Ok::<_, KeyFileError>((f, bytes.len() as u64, frames.len() as u64))
        })();
        let path = dir.join(KEYS);
        let renamed = written.and_then(|w| {
            std::fs::rename(&tmp, &path)
                .map(|_| w)
                .map_err(|e| KeyFileError::io(&path, e))
        });
        let (file, len, frames) = match renamed {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                let _ = slots.wipe(slot);
                return Err(e);
            }
        };
        Ok(Written {
            file,
            len,
            frames,
            kek,
            synced: sync_dir(dir),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lock().records.get(id).cloned()
    }

    /// Ids starting with `prefix`, in order.
    pub fn keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.lock()
            .records
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// How many records the file holds, and its generation (each rewrite makes a new one).
    pub fn stats(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.records.len(), inner.generation)
    }

    /// Applies the records in order; durable when it returns. New ids are appended; a removal
    /// or a changed value rewrites the file under a new KEK and wipes the old one's slot.
    pub fn apply(&self, records: &[VaultRecord]) -> Result<(), KeyFileError> {
        for (id, v) in records {
            let value = v.as_ref().map_or(0, Vec::len);
            if id.len() > MAX_ID || value > MAX_VALUE {
                return Err(KeyFileError::TooLarge {
                    id: id.len(),
                    value,
                });
            }
        }
        // The net effect per id: only the last record of each counts.
        let mut net: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for (id, v) in records {
            net.insert(id, v.as_deref());
        }
        let mut inner = self.lock();
        if let Some(slot) = inner.unwiped {
            // The rename that retired it must be durable first, or a crash could bring back
            // a key file whose slot is gone.
            sync_dir(&self.dir)?;
            inner.slots.wipe(slot)?;
            inner.unwiped = None;
        }
        let mut rewrite = inner.damaged_tail;
        let mut appends: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (id, v) in &net {
            match (v, inner.records.get(*id)) {
                (Some(v), None) => {
                    appends.insert(id.to_vec(), v.to_vec());
                }
                (Some(v), Some(cur)) if cur.as_slice() == *v => {}
                (None, None) => {}
                (Some(_), Some(_)) | (None, Some(_)) => rewrite = true,
            }
        }
        let plain: usize = appends.iter().map(|(k, v)| format::record_len(k, v)).sum();
        if rewrite || format::frame_len(plain) > format::MAX_FRAME {
            let mut next = inner.records.clone();
            for (id, v) in net {
                match v {
                    Some(v) => next.insert(id.to_vec(), v.to_vec()),
                    None => next.remove(id),
                };
            }
            return self.rewrite(&mut inner, next);
        }
        if appends.is_empty() {
            return Ok(());
        }
        self.append(&mut inner, appends)
    }

    fn append(
        &self,
        inner: &mut Inner,
        appends: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), KeyFileError> {
        let path = self.dir.join(KEYS);
        let plain = format::encode_records(appends.iter().map(|(k, v)| (&k[..], &v[..])));
        let frame = format::seal_frame(&inner.kek, inner.generation, inner.frames, &plain)
            .ok_or(KeyFileError::Seal)?;
        let done = inner
            .file
            .write_all(&frame)
            .and_then(|_| inner.file.sync_data());
        if let Err(e) = done {
            // Undo a partial frame, so later appends do not follow garbage; if even that
            // fails, the next write starts a new file.
            if inner
                .file
                .set_len(inner.len)
                .and_then(|_| inner.file.sync_data())
                .is_err()
            {
                inner.damaged_tail = true;
            }
            return Err(KeyFileError::io(&path, e));
        }
        inner.len += frame.len() as u64;
        inner.frames += 1;
        inner.records.extend(appends);
        Ok(())
    }

    fn rewrite(
        &self,
        inner: &mut Inner,
        records: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), KeyFileError> {
        let (old, slot, generation) = (inner.slot, 1 - inner.slot, inner.generation + 1);
        let w = Self::write_generation(&self.dir, &inner.slots, generation, slot, &records)?;
        inner.records = records;
        inner.generation = generation;
        inner.slot = slot;
        inner.kek = w.kek;
        inner.file = w.file;
        inner.len = w.len;
        inner.frames = w.frames;
        inner.damaged_tail = false;
        // Only now is the old KEK gone: until the wipe succeeds the keys it sealed are not
        // destroyed, and a failure says so (the next write, or open, tries again).
        inner.unwiped = Some(old);
        w.synced?;
        inner.slots.wipe(old)?;
        inner.unwiped = None;
        Ok(())
    }
}
