//! How a value is made small on disk: [`CompressionConfig`].

use crate::codec::Codec;
use crate::error::Result;

/// Compression, dictionaries and deduplication of stored values (TOML `[compression]`,
/// environment `BITCRAPS_STORAGE_COMPRESSION_*`).
///
/// Deduplication lives here because it is the other half of "how little space a value
/// takes": both decide the stored form, and neither changes what a read returns.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CompressionConfig {
    /// Compress values when that makes them smaller. Default: `true`.
    pub enabled: bool,
    /// Codec used for new writes when compression is enabled. Each record remembers its own
    /// codec, so this can change at any time. Default: [`Codec::Zstd`].
    pub codec: Codec,
    /// Codec-specific level: zstd 1–22, gzip 0–9; ignored by lz4. Default: 3.
    pub level: i32,
    /// Train a zstd dictionary per collection from its first documents and compress new
    /// values with it (only with [`Codec::Zstd`]). Default: `true`.
    pub dictionaries: bool,
    /// How many documents of a collection are sampled before its dictionary is trained.
    /// Default: 1000.
    pub dictionary_training_samples: usize,
    /// Store identical values once (content-addressed by blake3, reference counted).
    /// Default: `true`.
    pub deduplication: bool,
    /// Documents whose JSON is larger than this many bytes are stored as content-defined
    /// chunks (16 KiB on average), each compressed and deduplicated on its own, so versions
    /// and documents that share most of their bytes share most of their storage; 0 stores
    /// every document whole. Default: 65536 (64 KiB).
    pub chunk_threshold: usize,
    /// An overwrite of a chunked document is stored as a zstd patch against the key's last
    /// keyframe (its chunk list) when the patch is small, for up to this many versions after
    /// the keyframe; then the next version is chunked again (a new keyframe). A read applies
    /// one patch at most. 0 turns deltas off. Default: 64.
    pub keyframe_interval: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            codec: Codec::Zstd,
            level: 3,
            dictionaries: true,
            dictionary_training_samples: 1000,
            deduplication: true,
            chunk_threshold: crate::chunk::DEFAULT_THRESHOLD,
            keyframe_interval: crate::chunk::DEFAULT_KEYFRAME_INTERVAL,
        }
    }
}

impl CompressionConfig {
    /// Sets [`enabled`](Self::enabled).
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets [`codec`](Self::codec).
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets [`level`](Self::level).
    #[must_use]
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`dictionaries`](Self::dictionaries).
    #[must_use]
    pub fn dictionaries(mut self, enabled: bool) -> Self {
        self.dictionaries = enabled;
        self
    }

    /// Sets [`dictionary_training_samples`](Self::dictionary_training_samples).
    #[must_use]
    pub fn dictionary_training_samples(mut self, samples: usize) -> Self {
        self.dictionary_training_samples = samples;
        self
    }

    /// Sets [`deduplication`](Self::deduplication).
    #[must_use]
    pub fn deduplication(mut self, enabled: bool) -> Self {
        self.deduplication = enabled;
        self
    }

    /// Sets [`chunk_threshold`](Self::chunk_threshold).
    #[must_use]
    pub fn chunk_threshold(mut self, bytes: usize) -> Self {
        self.chunk_threshold = bytes;
        self
    }

    /// Sets [`keyframe_interval`](Self::keyframe_interval).
    #[must_use]
    pub fn keyframe_interval(mut self, versions: u32) -> Self {
        self.keyframe_interval = versions;
        self
    }

    /// The codec new writes use: `codec`, or [`Codec::None`] when compression is off.
    pub(crate) fn write_codec(&self) -> Codec {
        if self.enabled {
            self.codec
        } else {
            Codec::None
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.codec.check_level(self.level)
    }
}
