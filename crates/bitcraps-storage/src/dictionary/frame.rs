//! A frame compressed with a dictionary, without the dictionary's id in its header and,
//! since schema version 14, without the frame's magic number.
//!
//! zstd writes the id of the dictionary a frame needs into the frame header (RFC 8878,
//! 3.1.1.1.3): four bytes for a trained dictionary. The blob row already names its dictionary
//! (`dict_id`), and every reader hands the decoder that dictionary, so the id in the frame
//! says nothing the row does not — four bytes of a ~100-byte document. A frame without it is
//! a valid frame that decodes with the dictionary given, by this build and by older ones;
//! frames written with the id stay readable as they are.
//!
//! The four bytes of the magic number (RFC 8878, 3.1.1) say only "a zstd frame follows",
//! which the blob's codec already says: they are not stored either (issue #15, footprint).
//! The decoder puts them back (`zstd_ctx::decompress`) when the stored bytes do not open
//! with them. That is unambiguous: a frame without its magic opens with its
//! Frame_Header_Descriptor, whose bit 3 is reserved and must be zero, and the magic's first
//! byte, 0x28, has it set. Frames stored with their magic (before schema version 14) stay
//! readable as they are; older builds refuse a store at version 14, so they never meet a
//! frame without it.

use crate::zstd_ctx::MAGIC;

/// Removes the dictionary id and the magic number from the header of `frame` (one frame as
/// zstd wrote it). Anything that does not start like a zstd frame is left as it is.
pub(super) fn strip_header(frame: &mut Vec<u8>) {
    drop_dict_id(frame);
    if frame.get(..4) == Some(&MAGIC[..]) && frame.len() > 4 {
        frame.drain(..4);
    }
}

/// Removes the dictionary id from the header of `frame` (one frame as zstd wrote it). Anything
/// that does not start like a zstd frame with a dictionary id is left as it is.
fn drop_dict_id(frame: &mut Vec<u8>) {
    if frame.get(..4) != Some(&MAGIC[..]) {
        return;
    }
    let Some(&descriptor) = frame.get(4) else {
        return;
    };
    // Frame_Header_Descriptor: bits 1–0 the Dictionary_ID field's size, bit 5 the
    // Single_Segment flag (set: no Window_Descriptor byte before the id).
    let id_len = match descriptor & 0b11 {
        0 => return,
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let start = if descriptor & 0x20 != 0 { 5 } else { 6 };
    let end = start + id_len;
    if frame.len() < end {
        return;
    }
    frame.drain(start..end);
    if let Some(d) = frame.get_mut(4) {
        *d = descriptor & !0b11;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zstd::dict::{DecoderDictionary, EncoderDictionary};
    use zstd::zstd_safe;

    use super::*;
    use crate::error::{Result, StorageError};

    fn samples() -> Vec<Arc<[u8]>> {
        (0..300)
            .map(|i| {
                Arc::from(
                    format!(
                        r#"{{"id":"game-{i:06}","table":{},"state":"come_out","players":[{{"name":"p{}","balance":{}}}]}}"#,
                        i % 64,
                        i % 7,
                        i * 37 % 1000
                    )
                    .into_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn a_frame_without_its_dictionary_id_decodes_with_the_dictionary() -> Result<()> {
        let samples = samples();
        let dict = crate::dictionary::train(&samples)?;
        let cdict = EncoderDictionary::copy(&dict, 3);
        let ddict = DecoderDictionary::copy(&dict);
        let doc = br#"{"id":"game-999999","table":7,"state":"point_on","players":[{"name":"p3","balance":12345}]}"#;
        let task = |e: String| StorageError::Task(e);
        let with_id = crate::zstd_ctx::compress(doc, 0, Some(cdict.as_cdict())).map_err(task)?;
        let id = zstd_safe::get_dict_id_from_frame(&with_id);
        assert!(id.is_some(), "zstd wrote the id");
        let mut frame = with_id.clone();
        drop_dict_id(&mut frame);
        assert_eq!(zstd_safe::get_dict_id_from_frame(&frame), None);
        assert!(
            frame.len() + 4 <= with_id.len(),
            "{} {}",
            frame.len(),
            with_id.len()
        );
        for f in [&frame, &with_id] {
            let back =
                crate::zstd_ctx::decompress(f, doc.len(), Some(ddict.as_ddict())).map_err(task)?;
            assert_eq!(&back[..], &doc[..]);
        }
        // Without an id to drop, or not a frame: untouched.
        let again = frame.clone();
        drop_dict_id(&mut frame);
        assert_eq!(frame, again);
        let mut short = vec![0x28, 0xB5, 0x2F, 0xFD, 0x03, 1];
        drop_dict_id(&mut short);
        assert_eq!(short, [0x28, 0xB5, 0x2F, 0xFD, 0x03, 1]);
        let mut other = b"not a frame".to_vec();
        drop_dict_id(&mut other);
        assert_eq!(&other[..], b"not a frame");
        Ok(())
    }

    /// Since schema version 14 a dictionary frame is stored without its magic number: four
    /// bytes fewer, and it decodes (the decoder puts the magic back), as do frames stored
    /// with it before.
    #[test]
    fn a_frame_without_its_magic_decodes_with_the_dictionary() -> Result<()> {
        let samples = samples();
        let dict = crate::dictionary::train(&samples)?;
        let cdict = EncoderDictionary::copy(&dict, 3);
        let ddict = DecoderDictionary::copy(&dict);
        let doc = br#"{"id":"game-999999","table":7,"state":"point_on","players":[{"name":"p3","balance":12345}]}"#;
        let task = |e: String| StorageError::Task(e);
        let whole = crate::zstd_ctx::compress(doc, 0, Some(cdict.as_cdict())).map_err(task)?;
        let mut with_magic = whole.clone();
        drop_dict_id(&mut with_magic);
        let mut stored = whole.clone();
        strip_header(&mut stored);
        assert_eq!(stored.len() + 4, with_magic.len());
        assert_ne!(stored.get(..4), Some(&MAGIC[..]));
        assert_eq!(
            stored.first().map(|d| d & 0b1000),
            Some(0),
            "reserved bit clear"
        );
        for f in [&stored, &with_magic, &whole] {
            let back =
                crate::zstd_ctx::decompress(f, doc.len(), Some(ddict.as_ddict())).map_err(task)?;
            assert_eq!(&back[..], &doc[..]);
        }
        // Damage still fails to decode.
        let mut damaged = stored.clone();
        if let Some(b) = damaged.first_mut() {
            *b |= 0b1000;
        }
        assert!(crate::zstd_ctx::decompress(&damaged, doc.len(), Some(ddict.as_ddict())).is_err());
        // Not a frame: untouched.
        let mut other = b"not a frame".to_vec();
        strip_header(&mut other);
        assert_eq!(&other[..], b"not a frame");
        Ok(())
    }
}
