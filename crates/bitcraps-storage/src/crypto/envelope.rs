//! The AEAD: XChaCha20-Poly1305 with a fresh random 24-byte nonce per message (random
//! nonces of that size never repeat in practice), and associated data built from
//! length-prefixed fields so two different bindings can never encode alike.

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::key::fill_random;
use crate::error::{Result, StorageError};

/// Nonce bytes in front of every ciphertext.
pub(crate) const NONCE_LEN: usize = 24;
/// Authentication tag bytes at the end of every ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// A cipher under one 32-byte key (the key is zeroized when the cipher is dropped).
pub(crate) fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

/// `nonce || ciphertext || tag` of `plain` under `cipher`, bound to `aad`.
pub(crate) fn seal(cipher: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let nonce = XNonce::from(nonce);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| StorageError::Task("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce.as_slice());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Seals in place, with one buffer and no copy: `buf` holds `prefix || [0; NONCE_LEN] ||
/// plaintext` with the plaintext from `at` on, and afterwards `prefix || nonce ||
/// ciphertext || tag` (the form [`seal`] makes, after the prefix).
pub(crate) fn seal_in_place(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    buf: &mut Vec<u8>,
    at: usize,
) -> Result<()> {
    let failed = || StorageError::Task("encryption failed".into());
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    at.checked_sub(NONCE_LEN)
        .and_then(|start| buf.get_mut(start..at))
        .ok_or_else(failed)?
        .copy_from_slice(&nonce);
    let plain = buf.get_mut(at..).ok_or_else(failed)?;
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), aad, plain.into())
        .map_err(|_| failed())?;
    buf.extend_from_slice(tag.as_slice());
    Ok(())
}

/// The plaintext of `sealed` (as [`seal`] made it), or `None` when it does not
/// authenticate under `cipher` and `aad` (or is too short to be a ciphertext).
pub(crate) fn open(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, Payload { msg: body, aad }).ok()
}

/// Associated data: a domain tag, then fields, each length-prefixed (u32, big-endian).
pub(crate) struct Aad(Vec<u8>);

impl Aad {
    pub(crate) fn new(tag: &str) -> Self {
        Aad(Vec::with_capacity(128)).bytes(tag.as_bytes())
    }

    pub(crate) fn bytes(mut self, field: &[u8]) -> Self {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(field);
        self
    }

    pub(crate) fn text(self, field: &str) -> Self {
        self.bytes(field.as_bytes())
    }

    pub(crate) fn number(self, n: i64) -> Self {
        self.bytes(&n.to_be_bytes())
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_and_binding() -> Result<()> {
        let (a, b) = (cipher(&[1; 32]), cipher(&[2; 32]));
        let aad = Aad::new("t").text("games").number(7).finish();
        let sealed = seal(&a, &aad, b"secret document")?;
        assert_eq!(
            open(&a, &aad, &sealed).as_deref(),
            Some(&b"secret document"[..])
        );
        assert_ne!(seal(&a, &aad, b"secret document")?, sealed, "fresh nonce");
        assert!(open(&b, &aad, &sealed).is_none());
        let other = Aad::new("t").text("games").number(8).finish();
        assert!(open(&a, &other, &sealed).is_none());
        let mut flipped = sealed.clone();
        if let Some(byte) = flipped.last_mut() {
            *byte ^= 1;
        }
        assert!(open(&a, &aad, &flipped).is_none());
        assert!(open(&a, &aad, &sealed[..10]).is_none());
        // Length prefixes: ("ab", "c") and ("a", "bc") bind differently.
        assert_ne!(
            Aad::new("t").text("ab").text("c").finish(),
            Aad::new("t").text("a").text("bc").finish()
        );
        Ok(())
    }
}
