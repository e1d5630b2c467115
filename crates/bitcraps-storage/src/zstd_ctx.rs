//! Reused zstd contexts. Creating a compression context costs more than compressing a 1 KiB
//! document (profiled: `ZSTD_createCCtx` was 14% of a bulk load), so each thread keeps one
//! compression and one decompression context and reuses them, with or without dictionary.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

thread_local! {
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    /// The frame `compress_shared` writes before copying it out.
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A dictionary frame with its magic number put back (`decompress`).
    static FRAMED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A thread's `OUT` and `FRAMED` buffers are let go after a frame larger than this (a chunk of a large
/// document), so a thread does not hold it.
const MAX_FRAMED: usize = 64 * 1024;

fn error(code: usize) -> String {
    zstd_safe::get_error_name(code).to_owned()
}

/// Runs `f` with this thread's context from `slot`, creating it on first use.
fn with_context<C, T>(
    slot: &'static LocalKey<RefCell<Option<C>>>,
    create: fn() -> Option<C>,
    f: impl FnOnce(&mut C) -> Result<T, String>,
) -> Result<T, String> {
    let unavailable = || "cannot allocate a zstd context".to_owned();
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut ctx) => {
            if ctx.is_none() {
                *ctx = create();
            }
            ctx.as_mut().ok_or_else(unavailable).and_then(f)
        }
        // Only reachable through re-entrancy; a fresh context is still correct.
        Err(_) => create().ok_or_else(unavailable).and_then(|mut c| f(&mut c)),
    })
}

/// Runs `f` with this thread's buffer from `slot` (a fresh one on re-entrancy), and lets the
/// buffer go afterwards if it grew past [`MAX_FRAMED`].
fn with_buffer<T>(
    slot: &'static LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> T,
) -> T {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            let result = f(&mut buffer);
            if buffer.capacity() > MAX_FRAMED {
                *buffer = Vec::new();
            }
            result
        }
        // Only reachable through re-entrancy.
        Err(_) => f(&mut Vec::new()),
    })
}

/// Writes the frame of `data` into `out` (emptied first), at `level` or with `cdict`.
fn compress_into(
    ctx: &mut CCtx<'static>,
    out: &mut Vec<u8>,
    data: &[u8],
    level: i32,
    cdict: Option<&CDict<'_>>,
) -> Result<(), String> {
    out.clear();
    out.reserve(zstd_safe::compress_bound(data.len()));
    match cdict {
        Some(d) => ctx.compress_using_cdict(out, data, d),
        None => ctx.compress(out, data, level),
    }
    .map(|_| ())
    .map_err(error)
}

/// Compresses `data` at `level`, or with `cdict` (whose level it carries).
pub fn compress(data: &[u8], level: i32, cdict: Option<&CDict<'_>>) -> Result<Vec<u8>, String> {
    with_context(&CCTX, CCtx::try_create, |ctx| {
        let mut out = Vec::new();
        compress_into(ctx, &mut out, data, level, cdict).map(|()| out)
    })
}

/// Compresses `data` like [`compress`] into a buffer this thread keeps, lets `finish` edit
/// the frame there (`dictionary/frame.rs` strips its header), and returns it in one shared
/// allocation of its final size (no `compress_bound`-sized vector per call to copy from).
pub fn compress_shared(
    data: &[u8],
    level: i32,
    cdict: Option<&CDict<'_>>,
    finish: impl FnOnce(&mut Vec<u8>),
) -> Result<Arc<[u8]>, String> {
    with_context(&CCTX, CCtx::try_create, |ctx| {
        with_buffer(&OUT, |out| {
            compress_into(ctx, out, data, level, cdict)?;
            finish(out);
            Ok(Arc::from(&out[..]))
        })
    })
}

/// The magic number that opens a zstd frame, as zstd writes it (little-endian 0xFD2FB528).
pub(crate) const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Decompresses `data` into at most `capacity` bytes, with `ddict` if the frame needs one.
/// A dictionary frame stored without its magic number (`dictionary/frame.rs`) gets it back
/// first, in a buffer this thread keeps (no allocation per read).
pub fn decompress(
    data: &[u8],
    capacity: usize,
    ddict: Option<&DDict<'_>>,
) -> Result<Vec<u8>, String> {
    if ddict.is_some() && !data.starts_with(&MAGIC) {
        return with_buffer(&FRAMED, |framed| {
            framed.clear();
            framed.extend_from_slice(&MAGIC);
            framed.extend_from_slice(data);
            decompress_frame(framed, capacity, ddict)
        });
    }
    decompress_frame(data, capacity, ddict)
}

/// A frame as zstd wrote it (with its magic number), decompressed into at most `capacity`
/// bytes.
fn decompress_frame(
    data: &[u8],
    capacity: usize,
    ddict: Option<&DDict<'_>>,
) -> Result<Vec<u8>, String> {
    with_context(&DCTX, DCtx::try_create, |ctx| {
        let mut out = Vec::with_capacity(capacity);
        match ddict {
            Some(d) => ctx.decompress_using_ddict(&mut out, data, d),
            None => ctx.decompress(&mut out, data),
        }
        .map(|_| out)
        .map_err(error)
    })
}
