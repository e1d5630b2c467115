//! A bulk batch's new blob rows by `COPY … FROM STDIN (FORMAT binary)` instead of an
//! `INSERT … SELECT FROM unnest(…)` (`group.rs`).
//!
//! `COPY` inserts its rows a page at a time (one WAL record per heap page instead of one per
//! row) and skips the executor's per-row work. The `COPY` is started at the tail of the
//! group's first round trip, so the server's answer that it is ready for data comes with the
//! reads; the rows are sent with the group's other writes and its `COMMIT`: no round trip
//! more. The driver's connection sends nothing else while a `COPY` is open, so a group that
//! declines drops the sink first (which fails the `COPY` and with it the transaction), then
//! rolls back.

use std::io::Cursor;
use std::pin::Pin;

use futures_util::SinkExt;
use tokio_postgres::CopyInSink;

use super::write::Fail;
use crate::error::StorageError;
use crate::value::EncodedValue;

/// The statement; the columns in the order [`blob_rows`] writes them.
pub(super) const COPY_BLOBS: &str =
    "COPY blobs (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
     FROM STDIN (FORMAT binary)";

/// An open `COPY`: the server waits for its rows.
pub(super) type Sink = Pin<Box<CopyInSink<Cursor<Vec<u8>>>>>;

/// The binary format's signature, flags and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Fields per row.
const FIELDS: i16 = 8;

/// `rows` (blob id, value, reference count) in `COPY`'s binary format, trailer included.
pub(super) fn blob_rows(rows: &[(i64, &EncodedValue, i64)]) -> Result<Vec<u8>, Fail> {
    let size: usize = rows
        .iter()
        .map(|(_, v, _)| 2 + 8 * 4 + 6 * 8 + v.hash.len() + v.stored.len())
        .sum();
    let mut out = Vec::with_capacity(HEADER.len() + size + 2);
    out.extend_from_slice(HEADER);
    for (id, value, refs) in rows {
        out.extend_from_slice(&FIELDS.to_be_bytes());
        int8(&mut out, *id);
        bytea(&mut out, &value.hash[..])?;
        int8(&mut out, value.codec_id());
        int8(&mut out, i64::try_from(value.raw_len()).unwrap_or(i64::MAX));
        int8(
            &mut out,
            i64::try_from(value.stored.len()).unwrap_or(i64::MAX),
        );
        int8(&mut out, *refs);
        bytea(&mut out, &value.stored[..])?;
        match value.dict_id {
            Some(dict) => int8(&mut out, dict),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out)
}

fn int8(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

fn bytea(out: &mut Vec<u8>, value: &[u8]) -> Result<(), Fail> {
    let len = i32::try_from(value.len()).map_err(|_| {
        Fail::Final(StorageError::Config(format!(
            "a value of {} bytes is too large for one PostgreSQL field",
            value.len()
        )))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Sends `rows` (from [`blob_rows`]) and ends the `COPY`; answers once the server has
/// inserted them.
pub(super) async fn finish(mut sink: Sink, rows: Vec<u8>) -> Result<u64, tokio_postgres::Error> {
    sink.send(Cursor::new(rows)).await?;
    sink.as_mut().finish().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A value whose stored form is `stored` (any bytes: the layout does not look inside).
    fn value(stored: &[u8], dict_id: Option<i64>) -> EncodedValue {
        let raw: Arc<[u8]> = Arc::from(b"{\"raw\":true}".as_slice());
        EncodedValue {
            hash: [7; 32],
            codec: crate::Codec::Zstd,
            raw,
            stored: Arc::from(stored),
            dict_id,
            chunks: Arc::from(Vec::new()),
            delta: false,
            sealed: None,
        }
    }

    /// The layout PostgreSQL's binary `COPY` reads: signature, then per row the field count
    /// and each field's length and big-endian bytes (-1 for NULL), then -1.
    #[test]
    fn rows_are_in_the_binary_copy_layout() -> crate::error::Result<()> {
        let a = value(b"xyz", Some(7));
        let b = value(b"", None);
        let out = blob_rows(&[(5, &a, 1), (6, &b, 2)]).map_err(Fail::into_error)?;
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0; 8]);
        for (id, v, refs, dict) in [(5i64, &a, 1i64, Some(7i64)), (6, &b, 2, None)] {
            want.extend_from_slice(&8i16.to_be_bytes());
            want.extend_from_slice(&8i32.to_be_bytes());
            want.extend_from_slice(&id.to_be_bytes());
            want.extend_from_slice(&32i32.to_be_bytes());
            want.extend_from_slice(&v.hash[..]);
            let raw = i64::try_from(v.raw_len()).unwrap_or_default();
            let stored = i64::try_from(v.stored.len()).unwrap_or_default();
            for n in [v.codec_id(), raw, stored, refs] {
                want.extend_from_slice(&8i32.to_be_bytes());
                want.extend_from_slice(&n.to_be_bytes());
            }
            want.extend_from_slice(
                &i32::try_from(v.stored.len())
                    .unwrap_or_default()
                    .to_be_bytes(),
            );
            want.extend_from_slice(&v.stored);
            match dict {
                Some(d) => {
                    want.extend_from_slice(&8i32.to_be_bytes());
                    want.extend_from_slice(&d.to_be_bytes());
                }
                None => want.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(out, want);
        Ok(())
    }
}
