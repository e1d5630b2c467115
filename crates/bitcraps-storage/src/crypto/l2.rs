//! The Redis tier's values in an encrypted store: the document's JSON sealed under its
//! collection's current data key, bound to the store, collection, record key and data key
//! (the entry around it keeps its MAC, `remote/auth.rs`). Redis then holds no plaintext, and
//! an entry moved to another key does not open. A value that does not open is a miss.

use super::blob::{key_id, open_with_header, seal_with_header};
use super::envelope::{Aad, Suite};
use super::keyring::{DataKey, Keyring};
use crate::error::Result;

const L2_TAG: &str = "bitcraps-storage l2 v1";

fn aad(ring: &Keyring, key: &DataKey, record_key: &str) -> Vec<u8> {
    Aad::new(L2_TAG)
        .text(ring.store_id())
        .text(&key.collection)
        .text(record_key)
        .number(key.id)
        .number(key.version)
        .finish()
}

/// `json` sealed for the Redis tier, or `None` when the collection has no data key here yet
/// (then nothing is cached in Redis).
pub(crate) fn seal(
    ring: &Keyring,
    collection: &str,
    record_key: &str,
    json: &[u8],
) -> Result<Option<Vec<u8>>> {
    let Some(key) = ring.current(collection) else {
        return Ok(None);
    };
    let aad = aad(ring, &key, record_key);
    seal_with_header(Suite::preferred(), &key, &aad, json).map(Some)
}

/// The JSON of a Redis value sealed by [`seal`] for this record, or `None`.
pub(crate) fn open(
    ring: &Keyring,
    collection: &str,
    record_key: &str,
    sealed: &[u8],
) -> Option<Vec<u8>> {
    let key = ring.by_id(key_id(sealed)?)?;
    if key.collection != collection {
        return None;
    }
    open_with_header(&key, &aad(ring, &key, record_key), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn l2_values_open_only_for_their_record() -> Result<()> {
        let ring = Keyring::new(&MasterKey::generate()?, "t".into(), "s".into());
        assert_eq!(seal(&ring, "bank", "alice", b"{}")?, None, "no key yet");
        ring.load(&[
            ring.new_key("bank", 1, None)?,
            ring.new_key("games", 1, None)?,
        ])?;
        let sealed = seal(&ring, "bank", "alice", br#"{"chips":5}"#)?.unwrap_or_default();
        assert!(!sealed.windows(5).any(|w| w == b"chips"));
        assert_eq!(
            open(&ring, "bank", "alice", &sealed).as_deref(),
            Some(&br#"{"chips":5}"#[..])
        );
        assert_eq!(open(&ring, "bank", "bob", &sealed), None);
        assert_eq!(open(&ring, "games", "alice", &sealed), None);
        assert_eq!(open(&ring, "bank", "alice", b"junk"), None);
        Ok(())
    }
}
