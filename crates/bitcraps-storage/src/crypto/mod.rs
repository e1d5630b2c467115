//! Encryption at rest: envelope encryption per collection.
//!
//! - [`MasterKey`] (`key.rs`): 32 bytes from a [`KeyProvider`] (`provider.rs`: a key file,
//!   an environment variable, a command, or the application's own provider); zeroized on
//!   drop, never printed.
//! - `keyring.rs`: the master key wraps one data key per collection (and key version),
//!   stored in the `data_keys` table; the `key_check` row of `meta` tells a wrong master key
//!   at open.
//! - `envelope.rs`: the AEADs (AES-256-GCM-SIV where the CPU has AES instructions,
//!   XChaCha20-Poly1305 elsewhere and for key wrapping), random nonces, length-prefixed
//!   associated data; `gcm_siv.rs`: AES-256-GCM-SIV with its per-message work batched;
//!   `nonce.rs`: its nonces, from a per-thread pool of random bytes.
//! - `blob.rs`: the stored form of encrypted documents and dictionaries and what each
//!   ciphertext is bound to; `header.rs`: the format byte and key id in front of each.
//! - `l2.rs`: the Redis tier's values, sealed per record.
//! - `backend.rs`: the wrapper at the backend seam that seals on the way down and opens on
//!   the way up (a large group on more than one core: `parallel.rs`; values sealed ahead in
//!   the caller's encode step: `preseal.rs`); `attach.rs`: the
//!   open-time decisions, failing closed; `enable.rs`: encrypting a plaintext store in place
//!   (`key enable`), resumably.

mod attach;
mod backend;
mod blob;
mod enable;
mod envelope;
mod gcm_siv;
mod header;
mod key;
mod keyring;
pub(crate) mod l2;
mod nonce;
mod parallel;
mod preseal;
mod provider;

pub(crate) use attach::{Attached, attach};
pub(crate) use backend::{open_dictionaries, open_stored_blob};
#[cfg(feature = "testing")]
pub use blob::seal_documents_v1;
pub(crate) use blob::{key_id as sealed_key_id, reseal_blob};
pub use enable::EncryptionReport;
pub(crate) use enable::enable;
#[cfg(feature = "testing")]
pub use envelope::force_xchacha;
pub use key::MasterKey;
pub(crate) use keyring::{ContentKey, DataKey, Keyring};
pub(crate) use preseal::preseal;
pub use provider::{KeyProvider, KeySource};
