//! Compression codecs. Each stored blob records the codec id it was written with.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use crate::error::{Result, StorageError};

/// A compression codec. The numeric id ([`Codec::id`]) is part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is.
    None,
    /// Zstandard: the best ratio for small JSON at a low CPU cost. The default.
    #[default]
    Zstd,
    /// LZ4 block format: the fastest, lower ratio.
    Lz4,
    /// gzip (DEFLATE), as in the original design; kept for compatibility.
    Gzip,
}

impl Codec {
    /// All codecs, in id order.
    pub const ALL: [Codec; 4] = [Codec::None, Codec::Zstd, Codec::Lz4, Codec::Gzip];

    /// The id stored with each blob.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
            Codec::Lz4 => 2,
            Codec::Gzip => 3,
        }
    }

    /// The codec with the stored id, if there is one.
    pub fn from_id(id: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.id() == id)
    }

    /// The lower-case name used in configuration and output.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
            Codec::Gzip => "gzip",
        }
    }

    /// Checks that `level` means something for this codec.
    pub fn check_level(self, level: i32) -> Result<()> {
        let ok = match self {
            Codec::Zstd => zstd::compression_level_range().contains(&level),
            Codec::Gzip => (0..=9).contains(&level),
            Codec::None | Codec::Lz4 => true,
        };
        if ok {
            Ok(())
        } else {
            Err(StorageError::Config(format!(
                "compression level {level} is out of range for {self}"
            )))
        }
    }

    /// Compresses `data`.
    pub fn compress(self, data: &[u8], level: i32) -> Result<Vec<u8>> {
        let fail = |source| StorageError::Compression {
            codec: self.name(),
            source,
        };
        match self {
            Codec::None => Ok(data.to_vec()),
            Codec::Zstd => crate::zstd_ctx::compress(data, level, None)
                .map_err(|e| fail(std::io::Error::other(e))),
            Codec::Lz4 => Ok(lz4_flex::block::compress(data)),
            Codec::Gzip => {
                let level = u32::try_from(level.clamp(0, 9)).unwrap_or(6);
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 2),
                    flate2::Compression::new(level),
                );
                enc.write_all(data).map_err(fail)?;
                enc.finish().map_err(fail)
            }
        }
    }

    /// Compresses `data` into a shared buffer (zstd: without a vector of the worst case's
    /// size per call, `zstd_ctx::compress_shared`).
    pub fn compress_shared(self, data: &[u8], level: i32) -> Result<std::sync::Arc<[u8]>> {
        match self {
            Codec::Zstd => {
                crate::zstd_ctx::compress_shared(data, level, None, |_| {}).map_err(|e| {
                    StorageError::Compression {
                        codec: self.name(),
                        source: std::io::Error::other(e),
                    }
                })
            }
            _ => self.compress(data, level).map(Into::into),
        }
    }

    /// Decompresses `data`, which must expand to exactly `raw_len` bytes. Any mismatch or
    /// codec error is [`StorageError::Corruption`] at `location`: stored bytes never panic and
    /// never make the decoder allocate more than `raw_len`.
    pub fn decompress(self, data: &[u8], raw_len: usize, location: &str) -> Result<Vec<u8>> {
        let corrupt = |detail: String| StorageError::corruption(location, detail);
        let out = match self {
            Codec::None => data.to_vec(),
            Codec::Zstd => crate::zstd_ctx::decompress(data, raw_len, None)
                .map_err(|e| corrupt(format!("zstd: {e}")))?,
            Codec::Lz4 => lz4_flex::block::decompress(data, raw_len)
                .map_err(|e| corrupt(format!("lz4: {e}")))?,
            Codec::Gzip => {
                let mut out = Vec::with_capacity(raw_len);
                let limit = u64::try_from(raw_len).unwrap_or(u64::MAX).saturating_add(1);
                flate2::read::GzDecoder::new(data)
                    .take(limit)
                    .read_to_end(&mut out)
                    .map_err(|e| corrupt(format!("gzip: {e}")))?;
                out
            }
        };
        if out.len() != raw_len {
            return Err(corrupt(format!(
                "{} data expands to {} bytes, expected {raw_len}",
                self.name(),
                out.len()
            )));
        }
        Ok(out)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serialized as its name (`"zstd"`), as it is displayed and parsed.
impl serde::Serialize for Codec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                StorageError::Config(format!(
                    "unknown codec {s:?} (expected none, zstd, lz4 or gzip)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        br#"{"game":"g-1","players":["a","b","c"],"bets":[1,2,3,4,5,6,7,8,9]}"#.repeat(20)
    }

    #[test]
    fn every_codec_round_trips() -> Result<()> {
        let data = sample();
        for codec in Codec::ALL {
            let packed = codec.compress(&data, 3)?;
            let unpacked = codec.decompress(&packed, data.len(), "t")?;
            assert_eq!(unpacked, data, "{codec}");
            assert_eq!(Codec::from_id(codec.id()), Some(codec));
            assert_eq!(codec.name().parse::<Codec>()?, codec);
            if codec != Codec::None {
                assert!(packed.len() < data.len(), "{codec} did not shrink");
            }
        }
        Ok(())
    }

    #[test]
    fn wrong_length_or_garbage_is_corruption() -> Result<()> {
        let data = sample();
        for codec in Codec::ALL {
            let packed = codec.compress(&data, 3)?;
            let err = codec.decompress(&packed, data.len() - 1, "c/k");
            assert!(
                matches!(err, Err(StorageError::Corruption { .. })),
                "{codec}"
            );
            let garbage = vec![0xA5; 64];
            if codec != Codec::None {
                let err = codec.decompress(&garbage, data.len(), "c/k");
                assert!(
                    matches!(err, Err(StorageError::Corruption { .. })),
                    "{codec}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn levels_are_checked() {
        assert!(Codec::Zstd.check_level(3).is_ok());
        assert!(Codec::Zstd.check_level(99).is_err());
        assert!(Codec::Gzip.check_level(10).is_err());
        assert!(Codec::Lz4.check_level(99).is_ok());
        assert_eq!(Codec::from_id(9), None);
        assert!("brotli".parse::<Codec>().is_err());
    }
}
