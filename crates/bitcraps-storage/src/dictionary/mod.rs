//! Per-collection zstd dictionaries.
//!
//! Small JSON documents compress poorly on their own (~1.6×) because each one must teach the
//! compressor its field names again; a dictionary trained on the collection's own documents
//! carries them once (~3–4×). The first `training_samples` documents written to a collection
//! are sampled; a dictionary is then trained off the async runtime, committed through the
//! writer like any other write, and used for that collection's new values from then on.
//! Every blob records the id of the dictionary it needs; dictionaries are never changed in
//! place, so old blobs stay readable.
//!
//! `registry` holds the loaded dictionaries and the sampling; `trainer` the lifecycle;
//! `frame` the frames written with a dictionary (without its id: the blob row names it).

mod frame;
mod registry;
mod trainer;

pub use registry::*;
#[cfg(test)]
pub(crate) use trainer::train;
