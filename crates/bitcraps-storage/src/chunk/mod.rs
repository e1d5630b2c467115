//! Chunked blobs: a large document stored as an ordered list of content-defined chunks, each
//! compressed, content-addressed and reference-counted on its own, so documents and versions
//! that share most of their bytes share most of their stored chunks.
//!
//! - `cut.rs` cuts a serialized document with FastCDC and encodes each chunk through the
//!   same pipeline as a whole document (codec, dictionary, "only when smaller").
//! - `assemble.rs` turns a chunk list read back into the document, verifying every chunk
//!   against its own hash and the whole against the document's hash.
//!
//! A chunked document is still one row of `blobs`, addressed by the whole document's hash
//! (so equal documents share it like any blob), with the codec id [`CHUNKED`] and no bytes
//! of its own (in an encrypted store: the sealed plain hash). Its chunks are rows of
//! `chunks` listed in order by `blob_chunks`; a chunk's reference count is the number of
//! `blob_chunks` rows naming it. See `docs/design.md`.

mod assemble;
mod cut;
pub(crate) mod delta;
pub(crate) mod keyframes;
pub(crate) mod latest;
pub(crate) mod prefix_hash;
mod splice;

pub(crate) use assemble::assemble_with;
pub(crate) use cut::{cut, cut_resumed};
pub use delta::{DEFAULT_KEYFRAME_INTERVAL, DELTA};
pub(crate) use splice::common_prefix;

/// The codec id of a blob that is a chunk list (not a [`Codec`](crate::Codec): it names the
/// blob's kind, and the chunks carry their own codecs). Permanent, like every codec id.
pub const CHUNKED: i64 = 16;

/// Whether a stored blob with codec id `codec_id` has a chunk list: a chunked document, or a
/// delta (whose list is its keyframe's chunks).
pub(crate) fn is_chunked(codec_id: i64) -> bool {
    codec_id == CHUNKED || codec_id == DELTA
}

/// The default size above which a document is stored in chunks: 64 KiB.
pub const DEFAULT_THRESHOLD: usize = 64 * 1024;

/// FastCDC's sizes: 16 KiB on average, between 4 and 64 KiB.
pub(crate) const MIN_SIZE: usize = 4 * 1024;
pub(crate) const AVG_SIZE: usize = 16 * 1024;
pub(crate) const MAX_SIZE: usize = 64 * 1024;
