//! Reused zstd contexts. Creating a compression context costs more than compressing a 1 KiB
//! document (profiled: `ZSTD_createCCtx` was 14% of a bulk load), so each thread keeps one
//! compression and one decompression context and reuses them, with or without dictionary.

use std::cell::RefCell;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

thread_local! {
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

fn error(code: usize) -> String {
    zstd_safe::get_error_name(code).to_owned()
}

/// Compresses `data` at `level`, or with `cdict` (whose level it carries).
pub fn compress(data: &[u8], level: i32, cdict: Option<&CDict<'_>>) -> Result<Vec<u8>, String> {
    let run = |ctx: &mut CCtx<'static>| {
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        match cdict {
            Some(d) => ctx.compress_using_cdict(&mut out, data, d),
            None => ctx.compress(&mut out, data, level),
        }
        .map(|_| out)
        .map_err(error)
    };
    CCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = CCtx::try_create();
            }
            match slot.as_mut() {
                Some(ctx) => run(ctx),
                None => Err("cannot allocate a zstd context".to_owned()),
            }
        }
        // Not reachable without re-entrancy; a fresh context is still correct.
        Err(_) => CCtx::try_create()
            .ok_or_else(|| "cannot allocate a zstd context".to_owned())
            .and_then(|mut ctx| run(&mut ctx)),
    })
}

/// Decompresses `data` into at most `capacity` bytes, with `ddict` if the frame needs one.
pub fn decompress(
    data: &[u8],
    capacity: usize,
    ddict: Option<&DDict<'_>>,
) -> Result<Vec<u8>, String> {
    let run = |ctx: &mut DCtx<'static>| {
        let mut out = Vec::with_capacity(capacity);
        match ddict {
            Some(d) => ctx.decompress_using_ddict(&mut out, data, d),
            None => ctx.decompress(&mut out, data),
        }
        .map(|_| out)
        .map_err(error)
    };
    DCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = DCtx::try_create();
            }
            match slot.as_mut() {
                Some(ctx) => run(ctx),
                None => Err("cannot allocate a zstd context".to_owned()),
            }
        }
        Err(_) => DCtx::try_create()
            .ok_or_else(|| "cannot allocate a zstd context".to_owned())
            .and_then(|mut ctx| run(&mut ctx)),
    })
}
