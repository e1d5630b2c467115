//! Reused zstd contexts. Creating a compression context costs more than compressing a 1 KiB
//! document (profiled: `ZSTD_createCCtx` was 14% of a bulk load), so each thread keeps one
//! compression and one decompression context and reuses them, with or without dictionary.

use std::cell::RefCell;
use std::thread::LocalKey;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

thread_local! {
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

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

/// Compresses `data` at `level`, or with `cdict` (whose level it carries).
pub fn compress(data: &[u8], level: i32, cdict: Option<&CDict<'_>>) -> Result<Vec<u8>, String> {
    with_context(&CCTX, CCtx::try_create, |ctx| {
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        match cdict {
            Some(d) => ctx.compress_using_cdict(&mut out, data, d),
            None => ctx.compress(&mut out, data, level),
        }
        .map(|_| out)
        .map_err(error)
    })
}

/// The magic number that opens a zstd frame, as zstd writes it (little-endian 0xFD2FB528).
pub(crate) const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Decompresses `data` into at most `capacity` bytes, with `ddict` if the frame needs one.
/// A dictionary frame stored without its magic number (`dictionary/frame.rs`) gets it back
/// first.
pub fn decompress(
    data: &[u8],
    capacity: usize,
    ddict: Option<&DDict<'_>>,
) -> Result<Vec<u8>, String> {
    let framed;
    let data = if ddict.is_some() && !data.starts_with(&MAGIC) {
        framed = [&MAGIC[..], data].concat();
        &framed[..]
    } else {
        data
    };
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
