//! The key file: appends, rewrites under a new KEK, crashes at each step, damage.

use super::format::{SLOT_SIZE, SlotState, decode_slot};
use super::*;

fn put(id: &str, v: u8) -> VaultRecord {
    (id.as_bytes().to_vec(), Some(vec![v; 60]))
}

fn del(id: &str) -> VaultRecord {
    (id.as_bytes().to_vec(), None)
}

fn keys_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_DIR).join(KEYS)
}

fn slots_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_DIR).join(SLOTS)
}

/// Every frame of `file` that opens with a secret found in `slots` (any slot, any state).
fn frames_opened(file: &[u8], slots: &[u8]) -> usize {
    let Ok(header) = format::decode_header(file) else {
        return 0;
    };
    let mut opened = 0;
    for s in slots.chunks(SLOT_SIZE) {
        let Some(secret) = s.get(16..48).and_then(|b| <Key>::try_from(b).ok()) else {
            continue;
        };
        let kek = format::kek(&secret, header.generation);
        let mut at = format::HEADER_LEN;
        let mut index = 0;
        while let Ok(Frame::Records(_, next)) =
            format::read_frame(&kek, header.generation, index, file, at)
        {
            opened += 1;
            at = next;
            index += 1;
        }
    }
    opened
}

#[test]
fn new_ids_are_appended_and_read_back_after_a_reopen() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    assert!(Arc::ptr_eq(&kf, &KeyFile::open(d.path()).expect("again")));
    kf.apply(&[put("k\0acme", 1), put("u\0acme\0ann", 2)])
        .expect("apply");
    kf.apply(&[put("u\0acme\0bob", 3)]).expect("apply");
    // The same value again changes nothing; a new id is one more frame.
    let len = std::fs::metadata(keys_path(d.path())).expect("len").len();
    kf.apply(&[put("u\0acme\0bob", 3)]).expect("same");
    assert_eq!(
        std::fs::metadata(keys_path(d.path())).expect("len").len(),
        len
    );
    assert_eq!(kf.stats(), (3, 1), "appends never rewrite");
    assert_eq!(
        kf.keys(b"u\0acme\0"),
        [b"u\0acme\0ann".to_vec(), b"u\0acme\0bob".to_vec()]
    );
    drop(kf);

    let kf = KeyFile::open(d.path()).expect("reopen");
    assert_eq!(kf.stats(), (3, 1));
    assert_eq!(kf.get(b"u\0acme\0bob"), Some(vec![3; 60]));
    assert_eq!(kf.get(b"u\0acme\0cat"), None);
    // Nothing of a key in clear: only frames sealed under the KEK.
    let bytes = std::fs::read(keys_path(d.path())).expect("read");
    assert!(!bytes.windows(60).any(|w| w == [2u8; 60]));
    assert!(
        !bytes.windows(10).any(|w| w == b"u\0acme\0ann"),
        "ids are sealed too"
    );
}

#[test]
fn a_removal_rewrites_under_a_new_kek_and_the_old_file_opens_with_nothing_left() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    kf.apply(&[put("k\0acme", 1), put("u\0acme\0ann", 2)])
        .expect("apply");
    kf.apply(&[put("k\0globex", 4)]).expect("apply");
    let old_file = std::fs::read(keys_path(d.path())).expect("read");
    let old_slots = std::fs::read(slots_path(d.path())).expect("read");
    assert_eq!(frames_opened(&old_file, &old_slots), 2, "the reader reads");

    kf.apply(&[del("k\0acme"), del("u\0acme\0ann")])
        .expect("forget");
    assert_eq!(kf.stats(), (1, 2), "one record left, a new generation");
    let slots = std::fs::read(slots_path(d.path())).expect("read");
    // Generation 1 lived in slot 0, now zeros; generation 2 in slot 1.
    assert_eq!(decode_slot(&slots[..SLOT_SIZE]), SlotState::Empty);
    assert!(matches!(
        decode_slot(&slots[SLOT_SIZE..]),
        SlotState::Valid { generation: 2, .. }
    ));
    // The old file, had its blocks survived: nothing on disk opens it any more.
    assert_eq!(frames_opened(&old_file, &slots), 0);
    let new_file = std::fs::read(keys_path(d.path())).expect("read");
    assert_eq!(frames_opened(&new_file, &slots), 1);
    assert!(!d.path().join(KEYS_DIR).join(TMP).exists());

    // A changed value rewrites too (a master key rotation re-wraps every tenant key).
    kf.apply(&[put("k\0globex", 5)]).expect("rewrap");
    assert_eq!(kf.stats(), (1, 3));
    drop(kf);
    let kf = KeyFile::open(d.path()).expect("reopen");
    assert_eq!(kf.get(b"k\0globex"), Some(vec![5; 60]));
    assert_eq!(kf.get(b"k\0acme"), None);
}

#[test]
fn a_torn_append_is_cut_off_and_damage_before_the_end_is_an_error() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    for i in 0..4u8 {
        kf.apply(&[put(&format!("u\0acme\0{i}"), i)])
            .expect("apply");
    }
    drop(kf);
    let path = keys_path(d.path());
    let whole = std::fs::read(&path).expect("read");
    let frame = (whole.len() - format::HEADER_LEN) / 4;

    // A crash half-way through the last append: the three before it are there.
    std::fs::write(&path, &whole[..whole.len() - frame / 2]).expect("cut");
    let kf = KeyFile::open(d.path()).expect("open a torn file");
    assert_eq!(kf.stats().0, 3);
    // The torn bytes are gone, so the next append follows the last good frame.
    kf.apply(&[put("u\0acme\0new", 9)]).expect("apply");
    drop(kf);
    let kf = KeyFile::open(d.path()).expect("reopen");
    assert_eq!(kf.stats().0, 4);
    assert_eq!(kf.get(b"u\0acme\0new"), Some(vec![9; 60]));
    drop(kf);

    // A complete last frame of garbage (its pages never written) is torn too.
    let mut zeros = std::fs::read(&path).expect("read");
    let n = zeros.len();
    zeros[n - frame + 8..].fill(0);
    std::fs::write(&path, &zeros).expect("write");
    assert_eq!(KeyFile::open(d.path()).expect("open").stats().0, 3);

    // One flipped bit in a frame with another after it: damage, refused, nothing dropped.
    let mut bad = std::fs::read(&path).expect("read");
    bad[format::HEADER_LEN + 20] ^= 1;
    std::fs::write(&path, &bad).expect("write");
    let err = KeyFile::open(d.path()).err().expect("refused");
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[test]
fn a_rewrite_cut_short_at_any_step_leaves_one_key_file_and_one_live_slot() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    kf.apply(&[put("k\0acme", 1), put("k\0globex", 2)])
        .expect("apply");
    drop(kf);
    let dir = d.path().join(KEYS_DIR);

    // Crashed after writing the next slot and keys.tmp, before the rename: the old file
    // stands, and what the rewrite left is removed.
    {
        let slots = Slots::open(&dir.join(SLOTS)).expect("slots");
        slots.write(1, 2, &crypto::random_key()).expect("slot");
    }
    std::fs::write(dir.join(TMP), b"half a key file").expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    assert_eq!(kf.stats(), (2, 1));
    assert!(!dir.join(TMP).exists());
    let slots = std::fs::read(dir.join(SLOTS)).expect("slots");
    assert_eq!(decode_slot(&slots[SLOT_SIZE..]), SlotState::Empty);
    kf.apply(&[del("k\0acme")]).expect("forget");
    drop(kf);

    // Crashed after the rename, before the old slot was wiped: the open wipes it.
    let live = std::fs::read(dir.join(SLOTS)).expect("slots");
    assert_eq!(decode_slot(&live[..SLOT_SIZE]), SlotState::Empty);
    {
        let slots = Slots::open(&dir.join(SLOTS)).expect("slots");
        slots.write(0, 1, &crypto::random_key()).expect("slot");
    }
    let kf = KeyFile::open(d.path()).expect("open");
    assert_eq!(kf.stats(), (1, 2));
    let slots = std::fs::read(dir.join(SLOTS)).expect("slots");
    assert_eq!(decode_slot(&slots[..SLOT_SIZE]), SlotState::Empty);
}

#[test]
fn a_lost_key_file_or_slot_is_an_error_not_an_empty_vault() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    kf.apply(&[put("k\0acme", 1)]).expect("apply");
    kf.apply(&[put("k\0acme", 2)]).expect("rewrite");
    drop(kf);
    let dir = d.path().join(KEYS_DIR);
    let keys = std::fs::read(dir.join(KEYS)).expect("keys");

    std::fs::remove_file(dir.join(KEYS)).expect("rm");
    let err = KeyFile::open(d.path()).err().expect("refused");
    assert!(err.to_string().contains("lost"), "{err}");

    std::fs::write(dir.join(KEYS), &keys).expect("restore");
    let mut slots = std::fs::read(dir.join(SLOTS)).expect("slots");
    slots[SLOT_SIZE + 20] ^= 1;
    std::fs::write(dir.join(SLOTS), &slots).expect("damage");
    let err = KeyFile::open(d.path()).err().expect("refused");
    assert!(err.to_string().contains("cannot be read"), "{err}");
}

#[test]
fn records_are_bounded() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    let big = (b"k\0acme".to_vec(), Some(vec![0; MAX_VALUE + 1]));
    assert!(matches!(
        kf.apply(&[big]),
        Err(KeyFileError::TooLarge { .. })
    ));
    assert_eq!(kf.stats(), (0, 1), "nothing applied");
}

#[test]
fn many_records_span_frames_and_a_batch_too_large_for_one_is_a_rewrite() {
    let d = tempfile::tempdir().expect("tmp");
    let kf = KeyFile::open(d.path()).expect("open");
    let batch: Vec<VaultRecord> = (0..6000)
        .map(|i| put(&format!("u\0acme\0user{i:05}"), (i % 251) as u8))
        .collect();
    kf.apply(&batch).expect("apply");
    assert_eq!(kf.stats(), (6000, 2), "written whole, in frames");
    drop(kf);
    let kf = KeyFile::open(d.path()).expect("reopen");
    assert_eq!(kf.stats().0, 6000);
    assert_eq!(
        kf.get(b"u\0acme\0user05999"),
        Some(vec![(5999 % 251) as u8; 60])
    );
}
