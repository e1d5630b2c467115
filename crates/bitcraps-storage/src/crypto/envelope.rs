//! The AEADs, each with a fresh random nonce per message, and associated data built from
//! length-prefixed fields so two different bindings can never encode alike.
//!
//! Two suites, told apart by the format byte in front of every stored ciphertext
//! (`blob.rs`):
//! - **AES-256-GCM-SIV** (RFC 8452; 12-byte nonce) seals documents, chunks and Redis
//!   values where the CPU has AES and carry-less multiply instructions (`gcm_siv.rs`). On
//!   the benchmark's machine it seals or opens a ~170-byte payload in ~0.37 µs against
//!   ~1.9 µs for XChaCha20-Poly1305, whose Poly1305 and HChaCha20 setup is paid per
//!   message. Its nonces are random too: it
//!   derives a fresh key per nonce, and a repeated nonce reveals only that two identical
//!   messages under identical bindings are identical, which a keyed content address
//!   already shows within a collection.
//! - **XChaCha20-Poly1305** (24-byte nonce) seals everything else (wrapped data keys, the
//!   key check, dictionaries) and documents on CPUs without those instructions, where
//!   software AES would be slower and not constant-time. Both suites are always readable.
//!
//! One 32-byte key serves both: the GCM-SIV key is derived from it (blake3 `derive_key`
//! with its own context), so the two ciphers never share key material.

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::gcm_siv::GcmSiv;
use super::key::fill_random;
use super::nonce;
use crate::error::{Result, StorageError};

/// Authentication tag bytes at the end of every ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// The blake3 `derive_key` context of the AES-256-GCM-SIV key.
const SIV_KEY_CONTEXT: &str = "bitcraps-storage 2026-12-06 AES-256-GCM-SIV key from a data key";

/// Which AEAD sealed a ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite {
    /// XChaCha20-Poly1305, 24-byte nonce.
    XChaCha20Poly1305,
    /// AES-256-GCM-SIV, 12-byte nonce.
    Aes256GcmSiv,
}

impl Suite {
    /// Nonce bytes in front of this suite's ciphertexts.
    pub(crate) const fn nonce_len(self) -> usize {
        match self {
            Suite::XChaCha20Poly1305 => 24,
            Suite::Aes256GcmSiv => 12,
        }
    }

    /// The suite new documents are sealed with on this machine: AES-256-GCM-SIV where the
    /// CPU has AES and carry-less multiply instructions, else XChaCha20-Poly1305.
    pub(crate) fn preferred() -> Suite {
        #[cfg(feature = "testing")]
        if let Some(forced) = forced() {
            return forced;
        }
        if hardware_aes() {
            Suite::Aes256GcmSiv
        } else {
            Suite::XChaCha20Poly1305
        }
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn hardware_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn hardware_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
fn hardware_aes() -> bool {
    false
}

#[cfg(feature = "testing")]
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

#[cfg(feature = "testing")]
fn forced() -> Option<Suite> {
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Some(Suite::XChaCha20Poly1305),
        2 => Some(Suite::Aes256GcmSiv),
        _ => None,
    }
}

/// Tests: seal new documents with XChaCha20-Poly1305 (`true`) as a CPU without AES
/// instructions would, or with the machine's own choice again (`false`). Process-wide.
#[cfg(feature = "testing")]
pub fn force_xchacha(on: bool) {
    FORCED.store(u8::from(on), std::sync::atomic::Ordering::Relaxed);
}

/// The ciphers under one 32-byte key (their keys are zeroized when they are dropped).
pub(crate) struct Cipher {
    xchacha: XChaCha20Poly1305,
    siv: GcmSiv,
}

/// The ciphers under `key`.
pub(crate) fn cipher(key: &[u8; 32]) -> Cipher {
    let siv_key = Zeroizing::new(blake3::derive_key(SIV_KEY_CONTEXT, key));
    Cipher {
        xchacha: XChaCha20Poly1305::new(&(*key).into()),
        siv: GcmSiv::new(&siv_key),
    }
}

/// `nonce || ciphertext || tag` of `plain` under `cipher` (XChaCha20-Poly1305), bound to
/// `aad`.
pub(crate) fn seal(cipher: &Cipher, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    seal_with(Suite::XChaCha20Poly1305, cipher, aad, plain)
}

/// `nonce || ciphertext || tag` of `plain` under `cipher`'s `suite`, bound to `aad`.
pub(crate) fn seal_with(
    suite: Suite,
    cipher: &Cipher,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>> {
    let at = suite.nonce_len();
    let mut out = Vec::with_capacity(at + plain.len() + TAG_LEN);
    out.resize(at, 0);
    out.extend_from_slice(plain);
    seal_in_place(suite, cipher, aad, &mut out, at)?;
    Ok(out)
}

/// Seals in place, with one buffer and no copy: `buf` holds `prefix || [0; nonce] ||
/// plaintext` with the plaintext from `at` on, and afterwards `prefix || nonce ||
/// ciphertext || tag` (the form [`seal_with`] makes, after the prefix).
pub(crate) fn seal_in_place(
    suite: Suite,
    cipher: &Cipher,
    aad: &[u8],
    buf: &mut Vec<u8>,
    at: usize,
) -> Result<()> {
    buf.resize(buf.len() + TAG_LEN, 0);
    seal_into(suite, cipher, aad, buf, at)
}

/// [`seal_in_place`] in a buffer of its final length: `buf` holds `prefix || [0; nonce] ||
/// plaintext || [0; TAG_LEN]` with the plaintext from `at` on, and afterwards `prefix ||
/// nonce || ciphertext || tag`.
pub(crate) fn seal_into(
    suite: Suite,
    cipher: &Cipher,
    aad: &[u8],
    buf: &mut [u8],
    at: usize,
) -> Result<()> {
    let failed = || StorageError::Task("encryption failed".into());
    let mut random = [0u8; 24];
    let nonce = random.get_mut(..suite.nonce_len()).ok_or_else(failed)?;
    match suite {
        Suite::XChaCha20Poly1305 => fill_random(nonce)?,
        Suite::Aes256GcmSiv => nonce::fill_siv_nonce(nonce)?,
    }
    let nonce = &*nonce;
    at.checked_sub(nonce.len())
        .and_then(|start| buf.get_mut(start..at))
        .ok_or_else(failed)?
        .copy_from_slice(nonce);
    let end = buf.len().checked_sub(TAG_LEN).ok_or_else(failed)?;
    let (plain, tag_place) = buf
        .get_mut(at..)
        .and_then(|rest| rest.split_at_mut_checked(end.checked_sub(at)?))
        .ok_or_else(failed)?;
    let tag = match suite {
        Suite::XChaCha20Poly1305 => {
            let nonce = XNonce::try_from(nonce).map_err(|_| failed())?;
            cipher
                .xchacha
                .encrypt_inout_detached(&nonce, aad, plain.into())
                .map_err(|_| failed())?
        }
        Suite::Aes256GcmSiv => {
            let nonce = nonce.try_into().map_err(|_| failed())?;
            cipher
                .siv
                .seal_in_place(nonce, aad, plain)
                .ok_or_else(failed)?
                .into()
        }
    };
    tag_place.copy_from_slice(tag.as_slice());
    Ok(())
}

/// The plaintext of `sealed` (as [`seal`] made it), or `None` when it does not
/// authenticate under `cipher` and `aad` (or is too short to be a ciphertext).
pub(crate) fn open(cipher: &Cipher, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    open_with(Suite::XChaCha20Poly1305, cipher, aad, sealed)
}

/// The plaintext of `sealed` (as [`seal_with`] made it under `suite`), or `None` when it
/// does not authenticate under `cipher` and `aad` (or is too short to be a ciphertext).
pub(crate) fn open_with(
    suite: Suite,
    cipher: &Cipher,
    aad: &[u8],
    sealed: &[u8],
) -> Option<Vec<u8>> {
    if sealed.len() < suite.nonce_len() + TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(suite.nonce_len());
    match suite {
        Suite::XChaCha20Poly1305 => {
            let nonce = XNonce::try_from(nonce).ok()?;
            cipher
                .xchacha
                .decrypt(&nonce, Payload { msg: body, aad })
                .ok()
        }
        Suite::Aes256GcmSiv => {
            let nonce = nonce.try_into().ok()?;
            let (body, tag) = body.split_at_checked(body.len().checked_sub(TAG_LEN)?)?;
            let mut plain = body.to_vec();
            let tag = tag.try_into().ok()?;
            cipher
                .siv
                .open_in_place(nonce, aad, &mut plain, tag)
                .then_some(plain)
        }
    }
}

/// Opens an AES-256-GCM-SIV ciphertext in its own buffer: `buf` holds `prefix || nonce ||
/// ciphertext || tag` with the nonce from `at` on. When it authenticates under `cipher` and
/// `aad`, `buf` becomes the plaintext alone (the prefix, nonce and tag gone) and the answer
/// is `true`; otherwise `buf` is left exactly as it was (its ciphertext restored) and the
/// answer is `false`.
pub(crate) fn open_siv_in_place(cipher: &Cipher, aad: &[u8], buf: &mut Vec<u8>, at: usize) -> bool {
    let nonce_len = Suite::Aes256GcmSiv.nonce_len();
    let Some(body_len) = buf
        .len()
        .checked_sub(at)
        .and_then(|n| n.checked_sub(nonce_len + TAG_LEN))
    else {
        return false;
    };
    let start = at + nonce_len;
    let end = start + body_len;
    let Some((nonce, rest)) = buf.get_mut(at..).map(|b| b.split_at_mut(nonce_len)) else {
        return false;
    };
    let (Ok(nonce), Some((body, tag))) = (
        <[u8; 12]>::try_from(&*nonce),
        rest.split_at_mut_checked(body_len),
    ) else {
        return false;
    };
    let Ok(tag) = <[u8; TAG_LEN]>::try_from(&*tag) else {
        return false;
    };
    if !cipher.siv.open_in_place_keeping(&nonce, aad, body, &tag) {
        return false;
    }
    buf.truncate(end);
    buf.drain(..start);
    true
}

/// Associated data: a domain tag, then fields, each length-prefixed (u32, big-endian).
pub(crate) struct Aad(Vec<u8>);

impl Aad {
    pub(crate) fn new(tag: &str) -> Self {
        // A blob's binding (eight fields, a store id and a collection name) fits without a
        // second allocation.
        Aad(Vec::with_capacity(256)).bytes(tag.as_bytes())
    }

    /// Associated data that starts with `prefix` (fields already encoded), to add more to.
    pub(crate) fn from_prefix(prefix: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(prefix.len() + 128);
        bytes.extend_from_slice(prefix);
        Aad(bytes)
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

    const SUITES: [Suite; 2] = [Suite::XChaCha20Poly1305, Suite::Aes256GcmSiv];

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_suite_and_binding() -> Result<()> {
        let (a, b) = (cipher(&[1; 32]), cipher(&[2; 32]));
        let aad = Aad::new("t").text("games").number(7).finish();
        for suite in SUITES {
            let sealed = seal_with(suite, &a, &aad, b"secret document")?;
            assert_eq!(
                sealed.len(),
                suite.nonce_len() + b"secret document".len() + TAG_LEN
            );
            assert_eq!(
                open_with(suite, &a, &aad, &sealed).as_deref(),
                Some(&b"secret document"[..]),
                "{suite:?}"
            );
            assert_ne!(
                seal_with(suite, &a, &aad, b"secret document")?,
                sealed,
                "fresh nonce"
            );
            assert!(
                open_with(suite, &b, &aad, &sealed).is_none(),
                "{suite:?}: other key"
            );
            let other = Aad::new("t").text("games").number(8).finish();
            assert!(open_with(suite, &a, &other, &sealed).is_none());
            let mut flipped = sealed.clone();
            if let Some(byte) = flipped.last_mut() {
                *byte ^= 1;
            }
            assert!(open_with(suite, &a, &aad, &flipped).is_none());
            assert!(open_with(suite, &a, &aad, &sealed[..10]).is_none());
        }
        // A ciphertext of one suite never opens as the other's (their keys differ too).
        let siv = seal_with(Suite::Aes256GcmSiv, &a, &aad, b"secret document")?;
        assert!(open_with(Suite::XChaCha20Poly1305, &a, &aad, &siv).is_none());
        let xchacha = seal(&a, &aad, b"secret document")?;
        assert!(open_with(Suite::Aes256GcmSiv, &a, &aad, &xchacha).is_none());
        assert_eq!(
            open(&a, &aad, &xchacha).as_deref(),
            Some(&b"secret document"[..])
        );
        // Length prefixes: ("ab", "c") and ("a", "bc") bind differently.
        assert_ne!(
            Aad::new("t").text("ab").text("c").finish(),
            Aad::new("t").text("a").text("bc").finish()
        );
        Ok(())
    }

    #[test]
    fn opening_in_place_leaves_the_plaintext_alone_or_the_buffer_unchanged() -> Result<()> {
        let c = cipher(&[5; 32]);
        let suite = Suite::Aes256GcmSiv;
        for len in [0, 1, 175, 2000] {
            let plain = vec![0x42u8; len];
            let at = 9 + suite.nonce_len();
            let mut sealed = vec![0xE3; 9];
            sealed.resize(at, 0);
            sealed.extend_from_slice(&plain);
            seal_in_place(suite, &c, b"aad", &mut sealed, at)?;
            let mut buf = sealed.clone();
            assert!(!open_siv_in_place(&c, b"other", &mut buf, 9));
            assert_eq!(buf, sealed, "refused: unchanged");
            assert!(!open_siv_in_place(&cipher(&[6; 32]), b"aad", &mut buf, 9));
            assert_eq!(buf, sealed);
            let mut short = sealed
                .get(..9 + 12 + 15)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            let before = short.clone();
            assert!(!open_siv_in_place(&c, b"aad", &mut short, 9));
            assert_eq!(short, before);
            assert!(open_siv_in_place(&c, b"aad", &mut buf, 9));
            assert_eq!(buf, plain, "length {len}");
        }
        Ok(())
    }

    #[test]
    fn sealing_in_place_keeps_the_prefix() -> Result<()> {
        let c = cipher(&[9; 32]);
        for suite in SUITES {
            let at = 3 + suite.nonce_len();
            let mut buf = vec![0xAB, 0xCD, 0xEF];
            buf.resize(at, 0);
            buf.extend_from_slice(b"payload");
            seal_in_place(suite, &c, b"aad", &mut buf, at)?;
            assert_eq!(&buf[..3], &[0xAB, 0xCD, 0xEF]);
            assert_eq!(
                open_with(suite, &c, b"aad", &buf[3..]).as_deref(),
                Some(&b"payload"[..])
            );
        }
        Ok(())
    }
}
