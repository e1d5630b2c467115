//! Sealing in the caller's encode step, ahead of the writer thread: the writer is the one
//! thread every durable write passes through, so the AEAD's work moves to the callers (and,
//! for large batches, to the threads that compress them). The writer uses the sealed form
//! when it was made under the collection's current data key and seals again otherwise (a
//! rotation, a shred or a key created in between): `backend.rs`, `seal_op`.

use std::sync::Arc;

use super::Keyring;
use super::blob;
use crate::error::Result;
use crate::value::{EncodedValue, Presealed};

/// `value`, with its sealed form under `collection`'s current data key attached, when the
/// store is encrypted and the collection has a key already (its first write creates the key
/// on the writer thread, which then seals).
pub(crate) fn preseal(
    ring: Option<&Keyring>,
    collection: &str,
    mut value: EncodedValue,
) -> Result<EncodedValue> {
    let Some(ring) = ring else {
        return Ok(value);
    };
    // A shredded collection has no current key (`Keyring::forget`, `Keyring::load`).
    let Some(key) = ring.current(collection) else {
        return Ok(value);
    };
    let sealed = blob::seal_value(ring, &key, &value)?;
    value.sealed = Some(Arc::new(Presealed {
        key_id: key.id,
        value: sealed,
    }));
    Ok(value)
}
