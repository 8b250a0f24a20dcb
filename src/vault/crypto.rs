//! The cryptography of the vault, from well-kept crates: AES-256-GCM (`aes-gcm`) seals values
//! and wraps keys, HMAC-SHA-256 (`hmac`) makes tokens and nonces.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type Key = [u8; 32];

/// HMAC-SHA-256 of the parts, each length-prefixed (no two part lists collide).
pub fn hmac(key: &Key, parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        mac.update(&(p.len() as u64).to_le_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// A fresh random key.
pub fn random_key() -> Key {
    rand::random()
}

/// `nonce ‖ ciphertext+tag` of `plain` under `key`, bound to `aad`.
pub fn seal(key: &Key, nonce: [u8; 12], plain: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Some(out)
}

/// The plaintext of a sealed value, if `key` and `aad` are the ones it was sealed with.
pub fn open(key: &Key, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(12);
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

/// Seals a key under another, with a random nonce.
pub fn wrap(wrapping: &Key, key: &Key, aad: &[u8]) -> Option<Vec<u8>> {
    seal(wrapping, rand::random(), key, aad)
}

pub fn unwrap(wrapping: &Key, sealed: &[u8], aad: &[u8]) -> Option<Key> {
    open(wrapping, sealed, aad).and_then(|k| k.try_into().ok())
}

/// A master key from its file: 32 bytes, hex-encoded (whitespace ignored).
pub fn parse_master(text: &str) -> Result<Key, String> {
    let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&hex).map_err(|e| format!("not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, a master key is 32", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_their_key_and_aad_only() {
        let k = random_key();
        let sealed = seal(&k, [7; 12], b"jane@example.com", b"t1").expect("seal");
        assert_eq!(
            open(&k, &sealed, b"t1").as_deref(),
            Some(&b"jane@example.com"[..])
        );
        assert!(open(&k, &sealed, b"t2").is_none());
        assert!(open(&random_key(), &sealed, b"t1").is_none());
        let inner = random_key();
        let w = wrap(&k, &inner, b"k").expect("wrap");
        assert_eq!(unwrap(&k, &w, b"k"), Some(inner));
        assert_eq!(hmac(&k, &[b"a", b"bc"]), hmac(&k, &[b"a", b"bc"]));
        assert_ne!(hmac(&k, &[b"ab", b"c"]), hmac(&k, &[b"a", b"bc"]));
        assert!(parse_master(&"ab".repeat(32)).is_ok());
        assert!(parse_master("abcd").is_err());
    }
}
