//! The slot file: where the key file's KEK secret lives, overwritten in place.
//!
//! Why in place: a file replaced by rename leaves its old blocks on the disk, free but
//! unerased, and the key file is replaced on every forget. Its KEK is derived from a secret
//! kept here instead; the new secret goes to the other slot before the new key file is
//! renamed in, and the old slot is then overwritten with zeros where it lies. Without that
//! secret, every earlier version of the key file — wherever its blocks linger — is noise.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::KeyFileError;
use super::format::{SLOT_SIZE, SlotState, decode_slot, encode_slot};
use crate::vault::crypto::Key;

pub struct Slots {
    path: PathBuf,
    file: File,
}

impl Slots {
    /// Opens the slot file, creating it (two empty slots) if missing. One process at a time:
    /// the one holding the data dir's sled lock, which whoever opens its vault holds.
    pub fn open(path: &Path) -> Result<Slots, KeyFileError> {
        let io = |e| KeyFileError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < (2 * SLOT_SIZE) as u64 {
            // New (or cut short by a crash while being made): both slots empty, in full blocks.
            file.set_len((2 * SLOT_SIZE) as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent() {
                super::sync_dir(dir)?;
            }
        }
        Ok(Slots {
            path: path.to_path_buf(),
            file,
        })
    }

    fn offset(slot: u8) -> u64 {
        u64::from(slot & 1) * SLOT_SIZE as u64
    }

    pub fn read(&self, slot: u8) -> Result<SlotState, KeyFileError> {
        let mut buf = vec![0u8; SLOT_SIZE];
        self.file
            .read_exact_at(&mut buf, Self::offset(slot))
            .map_err(|e| KeyFileError::io(&self.path, e))?;
        Ok(decode_slot(&buf))
    }

    /// Writes `secret` for `generation` into `slot`, in place, durably.
    pub fn write(&self, slot: u8, generation: u64, secret: &Key) -> Result<(), KeyFileError> {
        self.put(slot, &encode_slot(generation, secret))
    }

    /// Overwrites `slot` with zeros, in place, durably.
    pub fn wipe(&self, slot: u8) -> Result<(), KeyFileError> {
        self.put(slot, &[0u8; SLOT_SIZE])
    }

    fn put(&self, slot: u8, bytes: &[u8]) -> Result<(), KeyFileError> {
        let io = |e| KeyFileError::io(&self.path, e);
        self.file
            .write_all_at(bytes, Self::offset(slot))
            .map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}
