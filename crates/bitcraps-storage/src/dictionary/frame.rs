//! A frame compressed with a dictionary, without the dictionary's id in its header.
//!
//! zstd writes the id of the dictionary a frame needs into the frame header (RFC 8878,
//! 3.1.1.1.3): four bytes for a trained dictionary. The blob row already names its dictionary
//! (`dict_id`), and every reader hands the decoder that dictionary, so the id in the frame
//! says nothing the row does not — four bytes of a ~100-byte document. A frame without it is
//! a valid frame that decodes with the dictionary given, by this build and by older ones;
//! frames written with the id stay readable as they are.

/// The magic number that opens a zstd frame, as stored (little-endian 0xFD2FB528).
const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Removes the dictionary id from the header of `frame` (one frame as zstd wrote it). Anything
/// that does not start like a zstd frame with a dictionary id is left as it is.
pub(super) fn drop_dict_id(frame: &mut Vec<u8>) {
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
}
