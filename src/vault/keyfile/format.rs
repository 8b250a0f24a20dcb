//! The bytes of the key file and of its slots, encoded and decoded (no I/O).
//!
//! `slots`: two slots of [`SLOT_SIZE`] bytes, each `SLOT_MAGIC ‖ generation (u64 LE) ‖ secret
//! (32) ‖ check (16)` then zeros; a wiped slot is all zeros. A slot fills a filesystem block of
//! its own, so writing one never rewrites the other, even torn.
//!
//! `keys`: a header `KEYS_MAGIC ‖ generation (u64 LE) ‖ slot (u8) ‖ 7 zero bytes ‖ verifier
//! (32)`, then frames `len (u32 LE) ‖ !len (u32 LE) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`:
//! AES-256-GCM under the generation's KEK, bound to `"ballast-keyfile" ‖ generation ‖ index`
//! so no frame can be moved to another place or file. A frame holds records `id len (u16 LE) ‖
//! id ‖ value len (u32 LE) ‖ value`; only puts of new ids are appended, anything else rewrites
//! the file.

use crate::vault::crypto::{self, Key};

pub const SLOT_SIZE: usize = 4096;
pub const SLOT_MAGIC: &[u8; 8] = b"BKSLOT01";
pub const KEYS_MAGIC: &[u8; 8] = b"BKEYS001";
pub const HEADER_LEN: usize = 56;
const FRAME_HEAD: usize = 8;
/// Most sealed bytes one frame holds; a larger append is a rewrite instead.
pub const MAX_FRAME: usize = 256 << 10;
/// Longest record id and value the key file takes (ids are tens of bytes, wrapped keys 60).
pub const MAX_ID: usize = 1024;
pub const MAX_VALUE: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a key file (bad magic)")]
    Magic,
    #[error("the key file is shorter than its header")]
    Short,
    #[error("frame {index} at byte {at} does not open: the file is damaged")]
    Frame { index: u64, at: usize },
    #[error("a record inside frame {0} is malformed")]
    Record(u64),
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// Never written, or wiped.
    Empty,
    Valid {
        generation: u64,
        secret: Key,
    },
    /// Neither: a torn write of a slot, or damage.
    Corrupt,
}

fn slot_check(generation: u64, secret: &Key) -> [u8; 16] {
    let mac = crypto::hmac(secret, &[b"slot-check", &generation.to_le_bytes()]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac[..16]);
    out
}

pub fn encode_slot(generation: u64, secret: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_SIZE);
    out.extend_from_slice(SLOT_MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(secret);
    out.extend_from_slice(&slot_check(generation, secret));
    out.resize(SLOT_SIZE, 0);
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

pub fn decode_slot(bytes: &[u8]) -> SlotState {
    if bytes.iter().all(|b| *b == 0) {
        return SlotState::Empty;
    }
    let (Some(magic), Some(generation), Some(secret), Some(check)) = (
        bytes.get(..8),
        bytes.get(8..16).and_then(|b| b.try_into().ok()),
        bytes.get(16..48).and_then(|b| <Key>::try_from(b).ok()),
        bytes.get(48..64),
    ) else {
        return SlotState::Corrupt;
    };
    let generation = u64::from_le_bytes(generation);
    if magic != SLOT_MAGIC || check != slot_check(generation, &secret) {
        return SlotState::Corrupt;
    }
    SlotState::Valid { generation, secret }
}

/// The key-encryption key of a generation: from its slot's secret.
pub fn kek(secret: &Key, generation: u64) -> Key {
    crypto::hmac(secret, &[b"kek", &generation.to_le_bytes()])
}

fn verifier(kek: &Key, generation: u64) -> Key {
    crypto::hmac(kek, &[b"verify", &generation.to_le_bytes()])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub generation: u64,
    pub slot: u8,
    verifier: Key,
}

impl Header {
    /// Whether `kek` is this file's key (a slot of another generation, or damage, is not).
    pub fn opens_with(&self, kek: &Key) -> bool {
        verifier(kek, self.generation) == self.verifier
    }
}

pub fn encode_header(generation: u64, slot: u8, kek: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(KEYS_MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.push(slot);
    out.extend_from_slice(&[0u8; 7]);
    out.extend_from_slice(&verifier(kek, generation));
    out
}

pub fn decode_header(bytes: &[u8]) -> Result<Header, FormatError> {
    let h = bytes.get(..HEADER_LEN).ok_or(FormatError::Short)?;
    if h.get(..8) != Some(KEYS_MAGIC.as_slice()) {
        return Err(FormatError::Magic);
    }
    let (Some(generation), Some(slot), Some(verifier)) = (
        u64_at(h, 8),
        h.get(16).copied(),
        h.get(24..56).and_then(|b| <Key>::try_from(b).ok()),
    ) else {
        return Err(FormatError::Short);
    };
    Ok(Header {
        generation,
        slot,
        verifier,
    })
}

/// The records' bytes inside a frame.
pub fn encode_records<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in records {
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Bytes one record takes inside a frame.
pub fn record_len(id: &[u8], value: &[u8]) -> usize {
    2 + id.len() + 4 + value.len()
}

/// Sealed bytes of a frame with `plain` inside.
pub fn frame_len(plain: usize) -> usize {
    FRAME_HEAD + 12 + plain + 16
}

/// Records as `(id, value)` pairs.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

pub fn decode_records(plain: &[u8], index: u64) -> Result<Records, FormatError> {
    let mut out = Vec::new();
    let mut r = plain;
    while !r.is_empty() {
        let bad = || FormatError::Record(index);
        let il = r
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
            .ok_or_else(bad)? as usize;
        let id = r.get(2..2 + il).ok_or_else(bad)?;
        let vl = u32_at(r, 2 + il).ok_or_else(bad)? as usize;
        let value = r.get(6 + il..6 + il + vl).ok_or_else(bad)?;
        out.push((id.to_vec(), value.to_vec()));
        r = r.get(6 + il + vl..).ok_or_else(bad)?;
    }
    Ok(out)
}

fn frame_aad(generation: u64, index: u64) -> Vec<u8> {
    [
        b"ballast-keyfile".as_slice(),
        &generation.to_le_bytes(),
        &index.to_le_bytes(),
    ]
    .concat()
}

/// One frame: its length twice (the second inverted, so a damaged length is seen), then
/// `plain` sealed under `kek` in its place.
pub fn seal_frame(kek: &Key, generation: u64, index: u64, plain: &[u8]) -> Option<Vec<u8>> {
    let sealed = crypto::seal(kek, rand::random(), plain, &frame_aad(generation, index))?;
    let len = u32::try_from(sealed.len()).ok()?;
    let mut out = Vec::with_capacity(FRAME_HEAD + sealed.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(&sealed);
    Some(out)
}

/// What is at a position of the key file.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A frame's records, and where the next frame starts.
    Records(Records, usize),
    /// The end of the file.
    End,
    /// The rest of the file is an append that did not finish (a crash before it returned):
    /// never acknowledged, so nothing depends on it.
    Torn,
}

/// Reads the frame at `at` of `file` (the whole key file).
///
/// A frame that does not open is a torn append only if it is the last thing in the file: an
/// incomplete frame, a complete one ending exactly at the end, or a damaged length with no
/// more than one frame's worth of bytes after it. Anything else is damage, and an error: a
/// key file never drops keys silently.
pub fn read_frame(
    kek: &Key,
    generation: u64,
    index: u64,
    file: &[u8],
    at: usize,
) -> Result<Frame, FormatError> {
    let rest = file.get(at..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(Frame::End);
    }
    let damaged = FormatError::Frame { index, at };
    let (Some(len), Some(check)) = (u32_at(rest, 0), u32_at(rest, 4)) else {
        return Ok(Frame::Torn);
    };
    if len != !check || len as usize > MAX_FRAME {
        return if rest.len() <= FRAME_HEAD + MAX_FRAME {
            Ok(Frame::Torn)
        } else {
            Err(damaged)
        };
    }
    let end = FRAME_HEAD + len as usize;
    let Some(sealed) = rest.get(FRAME_HEAD..end) else {
        return Ok(Frame::Torn);
    };
    match crypto::open(kek, sealed, &frame_aad(generation, index)) {
        Some(plain) => Ok(Frame::Records(decode_records(&plain, index)?, at + end)),
        None if end == rest.len() => Ok(Frame::Torn),
        None => Err(damaged),
    }
}
