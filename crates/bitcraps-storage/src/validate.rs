//! Checks on collection names and keys, applied before anything touches the database.

use crate::error::{Result, StorageError};

/// Longest accepted collection name, in bytes of UTF-8.
pub const MAX_COLLECTION_LEN: usize = 128;
/// Longest accepted key, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

fn problem(s: &str, max: usize, too_long: &'static str) -> Option<&'static str> {
    if s.is_empty() {
        Some("must not be empty")
    } else if s.len() > max {
        Some(too_long)
    } else if s.contains('\0') {
        Some("must not contain NUL bytes")
    } else {
        None
    }
}

/// Fails unless `collection` is 1–128 bytes without NUL.
pub fn collection(collection: &str) -> Result<()> {
    match problem(collection, MAX_COLLECTION_LEN, "longer than 128 bytes") {
        None => Ok(()),
        Some(reason) => Err(StorageError::InvalidCollection {
            collection: collection.to_owned(),
            reason,
        }),
    }
}

/// Fails unless `collection` is valid and `key` is 1–1024 bytes without NUL.
pub fn key(collection_name: &str, key: &str) -> Result<()> {
    collection(collection_name)?;
    match problem(key, MAX_KEY_LEN, "longer than 1024 bytes") {
        None => Ok(()),
        Some(reason) => Err(StorageError::InvalidKey {
            collection: collection_name.to_owned(),
            key: key.chars().take(64).collect(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(collection("games").is_ok());
        assert!(collection("").is_err());
        assert!(collection(&"c".repeat(128)).is_ok());
        assert!(collection(&"c".repeat(129)).is_err());
        assert!(key("games", "g\0").is_err());
        assert!(key("games", &"k".repeat(1024)).is_ok());
        let err = key("games", &"k".repeat(1025)).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                format!(
                    "invalid key {:?} in collection \"games\": longer than 1024 bytes",
                    "k".repeat(64)
                )
                .as_str()
            )
        );
        assert!(key("", "k").is_err());
    }
}
