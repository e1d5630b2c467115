//! The header in front of every stored ciphertext: a format byte naming the AEAD and the
//! payload's layout, then the data key id (8 bytes, big-endian).
//!
//! ```text
//! 0xE1 | key id | XChaCha20-Poly1305, layout v1
//! 0xE2 | key id | AES-256-GCM-SIV,    layout v1
//! 0xE3 | key id | AES-256-GCM-SIV,    layout v2
//! 0xE4 | key id | XChaCha20-Poly1305, layout v2
//! ```
//!
//! A v1 document's payload starts with the blake3 hash of its JSON; a v2 document's payload
//! is the compressed bytes alone (`blob.rs`). Dictionaries and Redis values have v1 headers
//! around their own payloads.
//!
//! The key id stays 8 bytes: data key ids are random 63-bit numbers (`keyring.rs`, so nodes
//! sharing a database never pick the same one), which a varint would spend 9 bytes on.

use super::envelope::Suite;

const XCHACHA_V1: u8 = 0xE1;
const SIV_V1: u8 = 0xE2;
const SIV_V2: u8 = 0xE3;
const XCHACHA_V2: u8 = 0xE4;

/// Header bytes (where the nonce starts).
pub(crate) const LEN: usize = 9;

/// How a document's payload is laid out, which its format byte says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The plain content hash (32 bytes), then the stored bytes.
    V1,
    /// The stored bytes alone, verified against the keyed content address.
    V2,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) suite: Suite,
    pub(crate) layout: Layout,
    pub(crate) key_id: i64,
}

/// The header `sealed` starts with, if it has an encrypted format.
pub(crate) fn parse(sealed: &[u8]) -> Option<Header> {
    let (suite, layout) = match *sealed.first()? {
        XCHACHA_V1 => (Suite::XChaCha20Poly1305, Layout::V1),
        SIV_V1 => (Suite::Aes256GcmSiv, Layout::V1),
        SIV_V2 => (Suite::Aes256GcmSiv, Layout::V2),
        XCHACHA_V2 => (Suite::XChaCha20Poly1305, Layout::V2),
        _ => return None,
    };
    let id: [u8; 8] = sealed.get(1..LEN)?.try_into().ok()?;
    Some(Header {
        suite,
        layout,
        key_id: i64::from_be_bytes(id),
    })
}

/// The header of `suite`, `layout` and `key_id`.
pub(crate) fn bytes(suite: Suite, layout: Layout, key_id: i64) -> [u8; LEN] {
    let format = match (layout, suite) {
        (Layout::V1, Suite::XChaCha20Poly1305) => XCHACHA_V1,
        (Layout::V1, Suite::Aes256GcmSiv) => SIV_V1,
        (Layout::V2, Suite::Aes256GcmSiv) => SIV_V2,
        (Layout::V2, Suite::XChaCha20Poly1305) => XCHACHA_V2,
    };
    let mut out = [format; LEN];
    let (_, id) = out.split_at_mut(1);
    id.copy_from_slice(&key_id.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for layout in [Layout::V1, Layout::V2] {
            for suite in [Suite::Aes256GcmSiv, Suite::XChaCha20Poly1305] {
                let mut out = Vec::new();
                out.extend_from_slice(&bytes(suite, layout, 0x0102_0304_0506_0708));
                assert_eq!(out.len(), LEN);
                out.extend_from_slice(b"rest");
                assert_eq!(
                    parse(&out),
                    Some(Header {
                        suite,
                        layout,
                        key_id: 0x0102_0304_0506_0708
                    })
                );
            }
        }
    }

    #[test]
    fn v1_headers_are_as_before() {
        let mut out = Vec::new();
        out.extend_from_slice(&bytes(Suite::Aes256GcmSiv, Layout::V1, 7));
        assert_eq!(out, [SIV_V1, 0, 0, 0, 0, 0, 0, 0, 7]);
        let mut out = Vec::new();
        out.extend_from_slice(&bytes(Suite::XChaCha20Poly1305, Layout::V1, 7));
        assert_eq!(out.first(), Some(&XCHACHA_V1));
        assert_eq!(parse(&out[..8]), None, "short");
        assert_eq!(parse(&[0x28, 0xb5, 0x2f, 0xfd]), None, "a zstd frame");
    }
}
