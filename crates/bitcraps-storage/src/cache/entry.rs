//! What the in-memory cache holds for a document: its *stored* (compressed) bytes and what
//! decoding them takes, not the decoded JSON.
//!
//! Measured (BENCHMARKS.md): a ~0.7–1 KiB game document compresses to ~115–140 bytes with the
//! collection's zstd dictionary, and decompressing it costs ~0.5 µs, while a cache miss costs
//! tens of microseconds (a blocking thread, a pooled SQLite read, decompression and blake3).
//! Holding compressed bytes fits several times more documents in the same capacity, so the
//! hit ratio of a skewed workload rises more than each hit's decompression costs.
//!
//! Entries are verified before they are cached (a database read checks the blake3 hash; a
//! write caches what it just encoded), so a hit decompresses without hashing again.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use zstd::dict::DecoderDictionary;

use crate::codec::Codec;
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

/// Memory charged for a decoded value held beside an entry: this many bytes per byte of its
/// JSON, plus [`TYPED_FIXED_CHARGE`]. A decoded value's heap (strings, vectors, their allocator
/// headers) is not known to the cache, so it is estimated from the JSON it came from; the
/// estimate covers the game documents of the benchmark and tests
/// (`typed_values_are_charged_what_they_hold`). Documents made of many tiny strings hold
/// more per byte of JSON than this.
pub const TYPED_BYTES_PER_JSON_BYTE: usize = 2;

/// The fixed part of a decoded value's charge: the `Arc`, the value's own size and the
/// holder's bookkeeping.
pub const TYPED_FIXED_CHARGE: usize = 256;

/// A decoded value of an entry's document: the `Arc<T>` that
/// [`retrieve_shared`](crate::PersistentStorageManager::retrieve_shared) hands out, for one
/// type `T`.
struct Typed {
    type_id: TypeId,
    value: Arc<dyn Any + Send + Sync>,
}

/// A cached document in its stored form, with its cache key in the same allocation (the
/// cache is keyed by a 64-bit hash of the key, and a hit compares the full key here).
///
/// One pointer: the cache's slot for an entry is small (its ghost entries, kept for
/// admission, are as large as a resident one), and a clone taken out of the cache is a
/// reference count.
///
/// Hot entries also hold the document decoded as the type it is read as (the typed tier,
/// `cache/typed.rs`): it lives in the entry, so a reader finds it only through the current
/// entry of the key — a commit or invalidation that replaces the entry leaves it behind.
#[derive(Clone)]
pub struct CachedValue(Arc<Entry>);

/// The slot of a decoded value: made by an entry's first typed read, so the entries that
/// are never read typed (most) carry only an empty `OnceLock`.
type TypedSlot = RwLock<Option<Typed>>;

/// [`Entry::flags`]: the entry was read before (a second read may keep its JSON
/// decompressed).
const READ_BEFORE: u8 = 1;
/// [`Entry::flags`]: a hot entry re-stored decompressed ([`CachedValue::promoted`]), counted
/// in the cache's promotion budget until it leaves the cache (taken once, like
/// `prefetched`).
const PROMOTED: u8 = 2;

/// An entry, shared by its clones. Kept small: every byte of it is paid once per cached
/// document, and at the benchmark's 200,000 documents in 64 MiB the entries that fit decide
/// the misses (88 bytes, one 112-byte allocation with the `Arc`'s counts; it was 136, a
/// 160-byte one: `entry_is_small` and `examples/cache_entry_memory.rs`).
struct Entry {
    /// The cache key's bytes followed by the stored bytes (only the key's when `shared`
    /// holds them).
    bytes: Box<[u8]>,
    /// The stored bytes when they are a written value's own (a large document's, see
    /// [`CachedValue::from_encoded`]): shared with it rather than copied. Boxed: rare, and
    /// half the size inline.
    shared: Option<Box<Arc<[u8]>>>,
    dict: Option<Arc<DecoderDictionary<'static>>>,
    /// Set by a typed read, cleared when the typed tier lets the value go (the slot itself
    /// stays).
    typed: OnceLock<Box<TypedSlot>>,
    /// When the record expires (ms since the epoch), if `has_expiry`: from then on the entry
    /// is a miss, checked on every hit against the store's clock rather than by
    /// invalidation.
    expires_ms: i64,
    /// From when (ms on the cache's clock) the entry serves no more reads, when the cache
    /// has a maximum age (`u64::MAX`: never); stamped at install.
    stale_at: AtomicU64,
    raw_len: usize,
    key_len: u32,
    /// Who prefetched the entry (`prefetch` origins: 1 and the streams' 2..=65; 0: it was
    /// not prefetched), until its first read or its removal takes the mark.
    prefetched: AtomicU8,
    /// [`READ_BEFORE`] and [`PROMOTED`].
    flags: AtomicU8,
    codec: Codec,
    has_expiry: bool,
}

impl Entry {
    fn expires_ms(&self) -> Option<i64> {
        self.has_expiry.then_some(self.expires_ms)
    }

    fn key_len(&self) -> usize {
        // A u32 always fits a usize on the targets this crate builds for (64-bit).
        usize::try_from(self.key_len).unwrap_or(usize::MAX)
    }
}

impl std::fmt::Debug for CachedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedValue")
            .field("codec", &self.0.codec)
            .field("raw_len", &self.0.raw_len)
            .field("stored_len", &self.stored().len())
            .field("dictionary", &self.0.dict.is_some())
            .finish_non_exhaustive()
    }
}

impl CachedValue {
    /// Verified stored bytes of the record under `cache_key`: `stored` in `codec`, expanding
    /// to `raw_len` bytes, needing `dict` when compressed with a dictionary.
    pub fn new(
        cache_key: &str,
        codec: Codec,
        raw_len: usize,
        stored: &[u8],
        dict: Option<Arc<DecoderDictionary<'static>>>,
    ) -> Self {
        let mut bytes = Vec::with_capacity(cache_key.len() + stored.len());
        bytes.extend_from_slice(cache_key.as_bytes());
        bytes.extend_from_slice(stored);
        Self::with_bytes(cache_key, codec, raw_len, bytes, None, dict)
    }

    /// An uncompressed document whose bytes `raw` the entry shares (no copy).
    pub fn shared(cache_key: &str, raw: Arc<[u8]>) -> Self {
        let key = cache_key.as_bytes().to_vec();
        Self::with_bytes(cache_key, Codec::None, raw.len(), key, Some(raw), None)
    }

    fn with_bytes(
        cache_key: &str,
        codec: Codec,
        raw_len: usize,
        bytes: Vec<u8>,
        shared: Option<Arc<[u8]>>,
        dict: Option<Arc<DecoderDictionary<'static>>>,
    ) -> Self {
        let (bytes, key_len) = match u32::try_from(cache_key.len()) {
            Ok(len) => (bytes, len),
            // Never for a validated key (≤ 1,153 bytes): an entry whose key does not fit is
            // made for a key no lookup matches (its length can never equal the stored one).
            Err(_) => (Vec::new(), u32::MAX),
        };
        CachedValue(Arc::new(Entry {
            bytes: bytes.into_boxed_slice(),
            shared: shared.map(Box::new),
            dict,
            typed: OnceLock::new(),
            expires_ms: 0,
            stale_at: AtomicU64::new(u64::MAX),
            raw_len,
            key_len,
            prefetched: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            codec,
            has_expiry: false,
        }))
    }

    /// The same entry for a record that expires at `expires_ms` (set as it is made, before
    /// any clone is taken).
    pub fn expiring(mut self, expires_ms: Option<i64>) -> Self {
        let (has_expiry, at) = (expires_ms.is_some(), expires_ms.unwrap_or(0));
        match Arc::get_mut(&mut self.0) {
            Some(entry) => (entry.has_expiry, entry.expires_ms) = (has_expiry, at),
            // Already shared (not done): an entry of its own, with nothing decoded or marked.
            None => {
                let e = &self.0;
                self = CachedValue(Arc::new(Entry {
                    bytes: e.bytes.clone(),
                    shared: e.shared.clone(),
                    dict: e.dict.clone(),
                    typed: OnceLock::new(),
                    expires_ms: at,
                    stale_at: AtomicU64::new(e.stale_at.load(Ordering::Relaxed)),
                    raw_len: e.raw_len,
                    key_len: e.key_len,
                    prefetched: AtomicU8::new(0),
                    flags: AtomicU8::new(0),
                    codec: e.codec,
                    has_expiry,
                }));
            }
        }
        self
    }

    /// The same entry, serving reads until `stale_at` on the cache's clock (stamped as it is
    /// installed).
    pub(super) fn stale_from(self, stale_at: u64) -> Self {
        self.0.stale_at.store(stale_at, Ordering::Relaxed);
        self
    }

    /// From when the entry serves no more reads (see [`stale_from`](Self::stale_from)).
    pub(super) fn stale_at(&self) -> u64 {
        self.0.stale_at.load(Ordering::Relaxed)
    }

    /// Whether the record is still live (not expired) at `now_ms`.
    pub fn live_at(&self, now_ms: i64) -> bool {
        !crate::backend::is_expired(self.0.expires_ms(), now_ms)
    }

    /// An uncompressed document (from the Redis tier, or stored without compression).
    pub fn plain(cache_key: &str, raw: &[u8]) -> Self {
        CachedValue::new(cache_key, Codec::None, raw.len(), raw, None)
    }

    /// What a write just encoded. `dict` is the decoder of `value.dict_id`; when the value
    /// names a dictionary that is not at hand, the decoded bytes are cached instead. A
    /// chunked document (a keyframe or a delta) is cached as its bytes, shared with `value`:
    /// the writer thread copies no large document between its commit and the
    /// acknowledgement.
    pub fn from_encoded(
        cache_key: &str,
        value: &EncodedValue,
        dict: Option<Arc<DecoderDictionary<'static>>>,
    ) -> Self {
        if value.is_chunked() {
            return CachedValue::shared(cache_key, Arc::clone(&value.raw));
        }
        match (value.dict_id, dict) {
            (Some(_), None) => CachedValue::plain(cache_key, &value.raw),
            (_, dict) => {
                CachedValue::new(cache_key, value.codec, value.raw_len(), &value.stored, dict)
            }
        }
    }

    /// Whether this is the entry of `cache_key` (and not of another key with the same hash).
    #[cfg(test)]
    pub fn is_for(&self, cache_key: &str) -> bool {
        self.0.bytes.get(..self.0.key_len()) == Some(cache_key.as_bytes())
    }

    /// Whether this is the entry of `doc` (and not of another key with the same hash), with
    /// no joined key built.
    pub fn is_for_doc(&self, doc: &super::DocKey<'_>) -> bool {
        self.0
            .bytes
            .get(..self.0.key_len())
            .is_some_and(|k| doc.matches(k))
    }

    fn stored(&self) -> &[u8] {
        match &self.0.shared {
            Some(shared) => shared,
            None => self.0.bytes.get(self.0.key_len()..).unwrap_or_default(),
        }
    }

    /// Bytes held (key and stored form), for the cache's weigher. A decoded value is charged
    /// separately, to the typed tier ([`typed_charge`](Self::typed_charge)).
    pub fn len(&self) -> usize {
        let shared = self.0.shared.as_deref().map_or(0, |s| s.len());
        self.0.bytes.len().saturating_add(shared)
    }

    /// The length of the entry's cache key.
    pub fn key_len(&self) -> usize {
        self.0.key_len()
    }

    /// What a decoded value of this document is charged.
    pub fn typed_charge(&self) -> usize {
        self.0
            .raw_len
            .saturating_mul(TYPED_BYTES_PER_JSON_BYTE)
            .saturating_add(TYPED_FIXED_CHARGE)
    }

    /// This entry's identity: the address of its shared state (the typed tier's holds name
    /// their entry by it, without keeping it alive).
    pub fn address(&self) -> usize {
        Arc::as_ptr(&self.0).addr()
    }

    /// Whether `other` is a clone of this very entry (not just an equal document).
    pub fn same_entry(&self, other: &CachedValue) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn slot(&self) -> std::sync::RwLockWriteGuard<'_, Option<Typed>> {
        // A panic while the slot was held cannot leave it half-written: it is one assignment.
        let slot = self.0.typed.get_or_init(Box::default);
        slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot, read (readers of a hot entry share it without waiting on each other);
    /// `None` when no typed read ever made it.
    fn slot_read(&self) -> Option<std::sync::RwLockReadGuard<'_, Option<Typed>>> {
        let slot = self.0.typed.get()?;
        Some(slot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The document decoded as `T`, if a typed read left it here.
    pub fn typed<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slot = self.slot_read()?;
        let value = match &*slot {
            Some(typed) if typed.type_id == TypeId::of::<T>() => Arc::clone(&typed.value),
            _ => return None,
        };
        drop(slot);
        value.downcast::<T>().ok()
    }

    /// Keeps `value`, the document decoded as `T`, beside the entry. `false` when the entry
    /// already holds a decoded value (of this or another type): that one stays.
    pub fn set_typed<T: Any + Send + Sync>(&self, value: Arc<T>) -> bool {
        let mut slot = self.slot();
        if slot.is_some() {
            return false;
        }
        *slot = Some(Typed {
            type_id: TypeId::of::<T>(),
            value,
        });
        true
    }

    /// This entry's document re-stored uncompressed: `raw`, its JSON (decoded from this
    /// entry), with the same key, expiry and maximum age, marked promoted. A hot entry is
    /// replaced by it so that its reads decompress nothing.
    pub fn promoted(&self, raw: &[u8]) -> Self {
        let e = &self.0;
        let key = e.bytes.get(..e.key_len()).unwrap_or_default();
        let mut bytes = Vec::with_capacity(key.len() + raw.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(raw);
        CachedValue(Arc::new(Entry {
            bytes: bytes.into_boxed_slice(),
            shared: None,
            dict: None,
            typed: OnceLock::new(),
            expires_ms: e.expires_ms,
            stale_at: AtomicU64::new(e.stale_at.load(Ordering::Relaxed)),
            raw_len: raw.len(),
            key_len: e.key_len,
            prefetched: AtomicU8::new(0),
            flags: AtomicU8::new(READ_BEFORE | PROMOTED),
            codec: Codec::None,
            has_expiry: e.has_expiry,
        }))
    }

    /// Takes the promotion mark: `true` once for an entry made by
    /// [`promoted`](Self::promoted), when it leaves the cache (or is refused).
    pub fn take_promoted(&self) -> bool {
        let flags = &self.0.flags;
        flags.load(Ordering::Relaxed) & PROMOTED != 0
            && flags.fetch_and(!PROMOTED, Ordering::AcqRel) & PROMOTED != 0
    }

    /// Whether a typed read left a decoded value here.
    pub fn has_typed(&self) -> bool {
        self.slot_read().is_some_and(|slot| slot.is_some())
    }

    /// Whether the stored form is compressed (decoding it costs a decompression).
    pub fn is_compressed(&self) -> bool {
        self.0.codec != Codec::None
    }

    /// Notes a read of the entry: `true` when it was read before. A load first, so the common
    /// case writes nothing to a line every reader of a hot entry shares.
    pub fn read_again(&self) -> bool {
        let flags = &self.0.flags;
        if flags.load(Ordering::Relaxed) & READ_BEFORE != 0 {
            return true;
        }
        flags.fetch_or(READ_BEFORE, Ordering::Relaxed);
        false
    }

    /// Notes the read that filled the entry (a cache miss read from L2 or the database), so
    /// that its next read counts as its second.
    pub fn mark_read(&self) {
        self.0.flags.fetch_or(READ_BEFORE, Ordering::Relaxed);
    }

    /// Marks the entry as prefetched by `origin` (non-zero, and at most 255: the prefetch
    /// origins are 1 and 2..=65), before it is installed.
    pub fn mark_prefetched(&self, origin: u32) {
        // An origin past u8 (none exists) is kept as the largest, still "prefetched".
        let origin = u8::try_from(origin).unwrap_or(u8::MAX);
        self.0.prefetched.store(origin, Ordering::Relaxed);
    }

    /// Takes the prefetch mark: the origin that prefetched the entry, if no read or removal
    /// took it before (each prefetched entry is counted used or wasted exactly once).
    pub fn take_prefetched(&self) -> Option<u32> {
        // A load first: the common case (not prefetched, or already taken) writes nothing
        // to a line that every reader of a hot entry shares.
        if self.0.prefetched.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.0.prefetched.swap(0, Ordering::AcqRel) {
            0 => None,
            origin => Some(u32::from(origin)),
        }
    }

    /// Lets the decoded value go (the typed tier evicted it).
    pub fn clear_typed(&self) {
        let Some(slot) = self.0.typed.get() else {
            return;
        };
        let dropped = slot.write().unwrap_or_else(PoisonError::into_inner).take();
        // Dropped outside the lock: a value's destructor may take time.
        drop(dropped);
    }

    /// The serialized document: borrowed when stored uncompressed, else decompressed.
    /// `location` names the record in the (never expected) error.
    pub fn decode(&self, location: impl FnOnce() -> String) -> Result<Cow<'_, [u8]>> {
        let stored = self.stored();
        let decoded = match (self.0.codec, &self.0.dict) {
            (Codec::None, _) => return Ok(Cow::Borrowed(stored)),
            (Codec::Zstd, Some(d)) => {
                crate::zstd_ctx::decompress(stored, self.0.raw_len, Some(d.as_ddict()))
                    .map_err(|e| format!("zstd with dictionary: {e}"))
            }
            (codec, _) => codec
                .decompress(stored, self.0.raw_len, "")
                .map_err(|e| match e {
                    StorageError::Corruption { detail, .. } => detail,
                    other => other.to_string(),
                }),
        };
        match decoded {
            Ok(raw) if raw.len() == self.0.raw_len => Ok(Cow::Owned(raw)),
            Ok(raw) => Err(StorageError::corruption(
                location(),
                format!(
                    "cached data expands to {} bytes, expected {}",
                    raw.len(),
                    self.0.raw_len
                ),
            )),
            Err(detail) => Err(StorageError::corruption(location(), detail)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Pipeline;

    fn doc() -> Vec<u8> {
        br#"{"game":"g-1","rolls":[[3,4],[6,6]],"notes":"seven out, line away seven out, line away"}"#
            .to_vec()
    }

    #[test]
    fn every_codec_decodes_to_the_document() -> Result<()> {
        for codec in Codec::ALL {
            let pipeline = Pipeline {
                codec,
                level: 3,
                max_value_size: 1 << 20,
                chunk_threshold: 0,
                keyframe_interval: 0,
            };
            let encoded = pipeline.encode_raw("games", "g-1", doc().repeat(4))?;
            let cached = CachedValue::from_encoded("games\0g-1", &encoded, None);
            assert_eq!(
                cached.decode(|| "games/g-1".into())?.as_ref(),
                &*encoded.raw
            );
            assert_eq!(
                cached.len(),
                "games\0g-1".len() + encoded.stored.len(),
                "{codec}"
            );
            assert!(cached.is_for("games\0g-1"));
            assert!(!cached.is_for("games\0g-2") && !cached.is_for("games\0g-"));
        }
        Ok(())
    }

    /// A chunked document (a large one, a keyframe or a delta) is cached sharing the
    /// written value's bytes: the writer thread copies nothing between its commit and the
    /// acknowledgement. The entry reads, weighs and expires like a copied one.
    #[test]
    fn a_chunked_value_is_cached_sharing_its_bytes() -> Result<()> {
        let pipeline = Pipeline {
            codec: Codec::Zstd,
            level: 3,
            max_value_size: 1 << 20,
            chunk_threshold: 1024,
            keyframe_interval: 0,
        };
        let encoded = pipeline.encode_raw("games", "g-1", doc().repeat(64))?;
        assert!(encoded.is_chunked());
        let cached = CachedValue::from_encoded("games\0g-1", &encoded, None);
        assert!(
            std::ptr::eq(cached.stored().as_ptr(), encoded.raw.as_ptr()),
            "the document was copied"
        );
        assert_eq!(
            cached.decode(|| "games/g-1".into())?.as_ref(),
            &*encoded.raw
        );
        assert_eq!(cached.len(), "games\0g-1".len() + encoded.raw_len());
        assert!(cached.is_for("games\0g-1") && !cached.is_for("games\0g-2"));
        assert!(!cached.is_compressed());
        // An expiry set after a clone was taken makes an entry of its own, still whole.
        let clone = cached.clone();
        let expiring = cached.expiring(Some(5));
        assert!(!expiring.live_at(5) && clone.live_at(5));
        assert_eq!(
            expiring.decode(|| "games/g-1".into())?.as_ref(),
            &*encoded.raw
        );
        assert!(expiring.is_for("games\0g-1"));
        Ok(())
    }

    #[test]
    fn a_value_whose_dictionary_is_missing_is_cached_decoded() -> Result<()> {
        let pipeline = Pipeline {
            codec: Codec::Zstd,
            level: 3,
            max_value_size: 1 << 20,
            chunk_threshold: 0,
            keyframe_interval: 0,
        };
        let mut encoded = pipeline.encode_raw("games", "g-1", doc().repeat(4))?;
        encoded.dict_id = Some(7);
        let cached = CachedValue::from_encoded("k", &encoded, None);
        assert_eq!(cached.len(), 1 + encoded.raw_len());
        assert!(matches!(cached.decode(|| "x".into())?, Cow::Borrowed(_)));
        Ok(())
    }

    /// The entry's own allocation (its fields and the `Arc`'s two counts) fits glibc's
    /// 112-byte chunk: every cached document pays it, and the bytes per entry decide how
    /// many of the benchmark's 200,000 documents fit 64 MiB. Fails if a field grows it.
    #[test]
    fn entry_is_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 88,
            "{} bytes",
            std::mem::size_of::<Entry>()
        );
        assert_eq!(std::mem::size_of::<CachedValue>(), 8);
    }

    /// The compact fields keep what they replaced: a prefetch origin (up to the last
    /// stream's, 65), the read and promotion marks taken once, an expiry of any value
    /// (zero and negative included) and none, and a decoded value set and cleared.
    #[test]
    fn compact_fields_keep_their_values() {
        let v = CachedValue::plain("games\0g-1", b"{}");
        for origin in [1, 2, 65] {
            v.mark_prefetched(origin);
            assert_eq!(v.take_prefetched(), Some(origin));
            assert_eq!(v.take_prefetched(), None);
        }
        assert!(!v.read_again() && v.read_again());
        assert!(!v.take_promoted());
        let p = v.promoted(b"{}");
        assert!(p.read_again() && p.take_promoted() && !p.take_promoted());
        for at in [None, Some(0), Some(-5), Some(1_000), Some(i64::MAX)] {
            let e = CachedValue::plain("k", b"{}").expiring(at);
            for now in [-10, 0, 999, 1_000, i64::MAX] {
                assert_eq!(
                    e.live_at(now),
                    !crate::backend::is_expired(at, now),
                    "{at:?} at {now}"
                );
                assert_eq!(
                    e.promoted(b"{}").live_at(now),
                    e.live_at(now),
                    "a promotion keeps the expiry"
                );
            }
        }
        assert!(!v.has_typed() && v.typed::<u8>().is_none());
        assert!(v.set_typed(Arc::new(7u8)) && !v.set_typed(Arc::new(8u8)));
        assert!(v.has_typed() && v.typed::<u8>().as_deref() == Some(&7));
        assert!(v.typed::<u16>().is_none());
        v.clear_typed();
        assert!(!v.has_typed() && v.typed::<u8>().is_none());
        assert!(v.set_typed(Arc::new(9u8)));
    }

    /// The decoded-value slot read by other threads while one thread sets and clears it:
    /// a value cleared before a read began is never returned by it, and a set while a value
    /// is held keeps the held one. Fails if a read could see a value its clear had let go
    /// (what the typed tier relies on when it evicts a value).
    #[test]
    fn a_cleared_typed_value_is_never_read_again() {
        use std::sync::atomic::AtomicBool;
        let v = CachedValue::plain("games\0g-1", b"{}");
        // Values 1..=ROUNDS are set in turn; `cleared` is the last one cleared.
        const ROUNDS: u64 = 20_000;
        let cleared = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::Acquire) {
                        let floor = cleared.load(Ordering::Acquire);
                        if let Some(n) = v.typed::<u64>() {
                            assert!(*n > floor, "read {n}, cleared up to {floor}");
                        }
                    }
                });
            }
            for n in 1..=ROUNDS {
                assert!(v.set_typed(Arc::new(n)));
                assert!(!v.set_typed(Arc::new(0u64)), "a held value was replaced");
                v.clear_typed();
                cleared.store(n, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        });
        assert!(!v.has_typed());
    }

    #[test]
    fn damaged_bytes_are_corruption_naming_the_record() {
        let cached = CachedValue::new("k", Codec::Lz4, 500, b"\xff\xff\xff", None);
        let err = cached.decode(|| "games/g-9".into()).err();
        assert!(
            matches!(&err, Some(StorageError::Corruption { location, .. }) if location == "games/g-9"),
            "{err:?}"
        );
    }
}
