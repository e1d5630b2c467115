//! The master key: 32 bytes from a key source, zeroized on drop, never printed (its `Debug`
//! is redacted and it has no `Display`).

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, StorageError};

/// The key that wraps every data key of an encrypted store (32 bytes, usually 64 hex
/// characters in a key file). Zeroized when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// A new random key from the operating system's generator (`bitcraps-storage key
    /// generate`).
    pub fn generate() -> Result<Self> {
        let mut key = MasterKey([0; 32]);
        fill_random(&mut key.0)?;
        Ok(key)
    }

    /// Parses 64 hex characters (surrounding whitespace, such as a key file's final newline,
    /// is ignored). The error says what is wrong without repeating the text.
    pub fn from_hex(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(format!(
                "expected 64 hex characters, found {} characters",
                text.chars().count()
            ));
        }
        let mut key = MasterKey([0; 32]);
        for (slot, pair) in key.0.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            match (hex_digit(pair.first()), hex_digit(pair.get(1))) {
                (Some(hi), Some(lo)) => *slot = (hi << 4) | lo,
                _ => return Err("expected 64 hex characters, found other characters".into()),
            }
        }
        Ok(key)
    }

    /// The key as 64 lower-case hex characters, in a buffer zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        for b in self.0 {
            for nibble in [b >> 4, b & 0x0f] {
                out.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
            }
        }
        out
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_digit(c: Option<&u8>) -> Option<u8> {
    let c = *c?;
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Fills `buf` from the operating system's random generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        StorageError::Task(format!(
            "the operating system's random generator failed: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_bad_text_is_refused_without_echo() -> Result<()> {
        let key = MasterKey::generate()?;
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        let back =
            MasterKey::from_hex(&format!("{}\n", hex.as_str())).map_err(StorageError::Config)?;
        assert_eq!(back.bytes(), key.bytes());
        assert_ne!(MasterKey::generate()?.bytes(), key.bytes());
        let err = MasterKey::from_hex("secretsecret")
            .err()
            .unwrap_or_default();
        assert_eq!(err, "expected 64 hex characters, found 12 characters");
        let bad = "zz".repeat(32);
        let err = MasterKey::from_hex(&bad).err().unwrap_or_default();
        assert!(!err.contains("zz"), "{err}");
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
        Ok(())
    }
}
