//! AES-256-GCM-SIV (RFC 8452) over the `aes` block cipher, the `polyval` hash and the `ctr`
//! mode: byte for byte what the `aes-gcm-siv` crate makes (the tests hold the two against
//! each other and against RFC 8452's vectors), so every ciphertext sealed with either opens
//! with the other.
//!
//! Why not that crate: on a CPU with AVX-512 and VAES, `aes` 0.9 broadcasts the 15 round
//! keys into zmm registers on every call, and the crate makes eight calls a message (the
//! six blocks of the per-nonce keys one at a time, the tag, the counter mode). Here the six
//! blocks are one call, and a message of up to 1 KiB is one call for its whole keystream,
//! which halves the AEAD's cost for a document-sized message on such a CPU
//! (`BENCHMARKS.md`, "AES-256-GCM-SIV in fewer calls"). Longer messages take `ctr`, which
//! encrypts 64 blocks at a time there.

use aes::Aes256;
use aes::cipher::consts::U16;
use aes::cipher::{Array, BlockCipherEncrypt, InnerIvInit, KeyInit, StreamCipherCore};
use polyval::Polyval;
use polyval::universal_hash::UniversalHash;
use zeroize::{Zeroize, Zeroizing};

/// Nonce bytes.
pub(crate) const NONCE_LEN: usize = 12;
/// Tag bytes.
pub(crate) const TAG_LEN: usize = 16;

/// Longest plaintext or associated data RFC 8452 allows (2^36 bytes).
const MAX_LEN: u64 = 1 << 36;

/// Blocks of keystream made in one call to the block cipher (1 KiB).
const BATCH: usize = 64;

type Block = Array<u8, U16>;

/// The cipher under one 32-byte key (its key schedule is zeroized when it is dropped).
pub(crate) struct GcmSiv {
    key_generating_key: Aes256,
}

/// The per-nonce keys (RFC 8452 § 4): the POLYVAL key and the message-encryption cipher.
struct MessageKeys {
    polyval: Polyval,
    cipher: Aes256,
}

impl GcmSiv {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        GcmSiv {
            key_generating_key: Aes256::new(&(*key).into()),
        }
    }

    /// Encrypts `buf` in place under `nonce`, bound to `aad`; the tag, or `None` when
    /// `buf` or `aad` is longer than RFC 8452 allows.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Option<[u8; TAG_LEN]> {
        let mut keys = self.message_keys(nonce);
        let tag = keys.tag(nonce, aad, buf)?;
        keys.apply_keystream(&tag, buf);
        Some(tag.into())
    }

    /// Decrypts `buf` in place under `nonce`; whether it authenticates under `aad` and
    /// `tag` (when it does not, `buf` holds no plaintext: it is zeroed).
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        let authentic = self.decrypt_and_check(nonce, aad, buf, tag).is_none();
        if !authentic {
            buf.zeroize();
        }
        authentic
    }

    /// [`Self::open_in_place`], except that a `buf` that does not authenticate is given back
    /// its ciphertext (the keystream applied again) rather than zeroed: no decrypted byte of
    /// it remains either way, and the caller still holds the bytes it read.
    pub(crate) fn open_in_place_keeping(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        match self.decrypt_and_check(nonce, aad, buf, tag) {
            None => true,
            Some((keys, tag)) => {
                keys.apply_keystream(&tag, buf);
                false
            }
        }
    }

    /// Decrypts `buf` in place and checks its tag: `None` when it authenticates, else the
    /// message keys and tag to undo the decryption with.
    fn decrypt_and_check(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Option<(MessageKeys, Block)> {
        let mut keys = self.message_keys(nonce);
        let tag = Block::from(*tag);
        keys.apply_keystream(&tag, buf);
        let authentic = keys
            .tag(nonce, aad, buf)
            .is_some_and(|expected| equal_in_constant_time(&expected, &tag));
        (!authentic).then_some((keys, tag))
    }

    /// RFC 8452 § 4: the first 8 bytes of each of six blocks `counter (u32 LE) || nonce`
    /// encrypted under the key-generating key; blocks 0–1 make the POLYVAL key, 2–5 the
    /// message-encryption key.
    fn message_keys(&self, nonce: &[u8; NONCE_LEN]) -> MessageKeys {
        let mut blocks = [Block::default(); 6];
        for (counter, block) in (0u32..).zip(blocks.iter_mut()) {
            let (head, tail) = block.split_at_mut(4);
            head.copy_from_slice(&counter.to_le_bytes());
            tail.copy_from_slice(nonce);
        }
        self.key_generating_key.encrypt_blocks(&mut blocks);
        let mut mac_key = Zeroizing::new([0u8; 16]);
        let mut enc_key = Zeroizing::new([0u8; 32]);
        for (half, block) in mac_key
            .chunks_mut(8)
            .chain(enc_key.chunks_mut(8))
            .zip(blocks.iter())
        {
            half.copy_from_slice(block.split_at(8).0);
        }
        for block in &mut blocks {
            block.zeroize();
        }
        MessageKeys {
            polyval: Polyval::new(&(*mac_key).into()),
            cipher: Aes256::new(&(*enc_key).into()),
        }
    }
}

impl MessageKeys {
    /// RFC 8452 § 4: POLYVAL over the padded `aad`, the padded plaintext and their bit
    /// lengths, the nonce XORed in, the top bit cleared, encrypted. `None` past the limits.
    fn tag(&mut self, nonce: &[u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Option<Block> {
        let bits = |len: usize| {
            u64::try_from(len)
                .ok()
                .filter(|&n| n <= MAX_LEN)
                .map(|n| n * 8)
        };
        let mut lengths = Block::default();
        let (a, p) = lengths.split_at_mut(8);
        a.copy_from_slice(&bits(aad.len())?.to_le_bytes());
        p.copy_from_slice(&bits(plain.len())?.to_le_bytes());
        self.polyval.update_padded(aad);
        self.polyval.update_padded(plain);
        self.polyval.update(&[lengths]);
        let mut tag = self.polyval.finalize_reset();
        for (byte, n) in tag.iter_mut().zip(nonce) {
            *byte ^= n;
        }
        if let Some(last) = tag.last_mut() {
            *last &= 0x7f;
        }
        let mut tag = Block::from(<[u8; TAG_LEN]>::from(tag));
        self.cipher.encrypt_block(&mut tag);
        Some(tag)
    }

    /// XORs `buf` with the keystream: AES-CTR with a 32-bit little-endian counter, starting
    /// from the tag with its top bit set.
    fn apply_keystream(&self, tag: &Block, buf: &mut [u8]) {
        let mut start = *tag;
        if let Some(last) = start.last_mut() {
            *last |= 0x80;
        }
        if buf.len() > BATCH * TAG_LEN {
            ctr::CtrCore::<&Aes256, ctr::flavors::Ctr32LE>::inner_iv_init(&self.cipher, &start)
                .apply_keystream_partial(buf.into());
            return;
        }
        let (counter, nonce) = start.split_at(4);
        let mut counter = u32::from_le_bytes(counter.try_into().unwrap_or_default());
        let mut keystream = [Block::default(); BATCH];
        let blocks = buf.len().div_ceil(TAG_LEN);
        for block in keystream.iter_mut().take(blocks) {
            let (c, n) = block.split_at_mut(4);
            c.copy_from_slice(&counter.to_le_bytes());
            n.copy_from_slice(nonce);
            counter = counter.wrapping_add(1);
        }
        let keystream = keystream.get_mut(..blocks).unwrap_or_default();
        self.cipher.encrypt_blocks(keystream);
        // Sixteen bytes at a time, then the tail.
        let mut whole = buf.chunks_exact_mut(TAG_LEN);
        let mut keys = keystream.iter();
        for (chunk, k) in whole.by_ref().zip(keys.by_ref()) {
            let c = u128::from_le_bytes(<[u8; TAG_LEN]>::try_from(&*chunk).unwrap_or_default());
            let k = u128::from_le_bytes((*k).into());
            chunk.copy_from_slice(&(c ^ k).to_le_bytes());
        }
        if let Some(k) = keys.next() {
            for (byte, k) in whole.into_remainder().iter_mut().zip(k.iter()) {
                *byte ^= k;
            }
        }
        // The keystream XORed with the ciphertext is the plaintext: leave none on the stack.
        for block in keystream.iter_mut() {
            block.zeroize();
        }
    }
}

/// Whether two tags are equal, looking at every byte whatever the first difference.
fn equal_in_constant_time(a: &Block, b: &Block) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm_siv::Aes256GcmSiv;
    use aes_gcm_siv::aead::{Aead, Payload};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn seal(c: &GcmSiv, nonce: &[u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = plain.to_vec();
        let tag = c.seal_in_place(nonce, aad, &mut out).unwrap();
        out.extend_from_slice(&tag);
        out
    }

    fn open(c: &GcmSiv, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut out = body.to_vec();
        c.open_in_place(nonce, aad, &mut out, tag.try_into().unwrap())
            .then_some(out)
    }

    /// RFC 8452 Appendix C.2 (AEAD_AES_256_GCM_SIV): key, nonce, aad, plaintext, result.
    const RFC_8452_C2: [(&str, &str, &str, &str, &str); 6] = [
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "",
            "",
            "07f5f4169bbf55a8400cd47ea6fd400f",
        ),
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "",
            "0100000000000000",
            "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28",
        ),
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "01",
            "0200000000000000",
            "1de22967237a813291213f267e3b452f02d01ae33e4ec854",
        ),
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "0100000000000000000000000000000002000000",
            "030000000000000000000000000000000400",
            "462401724b5ce6588d5a54aae5375513a075cfcdf5042112aa29685c912fc2056543",
        ),
        (
            "e66021d5eb8e4f4066d4adb9c33560e4f46e44bb3da0015c94f7088736864200",
            "e0eaf5284d884a0e77d31646",
            "",
            "",
            "169fbb2fbf389a995f6390af22228a62",
        ),
        (
            "3c535de192eaed3822a2fbbe2ca9dfc88255e14a661b8aa82cc54236093bbc23",
            "688089e55540db1872504e1c",
            "734320ccc9d9bbbb19cb81b2af4ecbc3e72834321f7aa0f70b7282b4f33df23f167541",
            "ced532ce4159b035277d4dfbb7db62968b13cd4eec",
            "626660c26ea6612fb17ad91e8e767639edd6c9faee9d6c7029675b89eaf4ba1ded1a286594",
        ),
    ];

    #[test]
    fn rfc_8452_vectors() {
        for (key, nonce, aad, plain, result) in RFC_8452_C2 {
            let c = GcmSiv::new(&hex(key).try_into().unwrap());
            let nonce: [u8; 12] = hex(nonce).try_into().unwrap();
            let sealed = seal(&c, &nonce, &hex(aad), &hex(plain));
            assert_eq!(sealed, hex(result), "{key} {plain}");
            assert_eq!(open(&c, &nonce, &hex(aad), &sealed), Some(hex(plain)));
        }
    }

    /// Every length up to past two keystream batches (one batch, then `ctr`), each
    /// padding of the associated data: the same bytes as the `aes-gcm-siv` crate, opened
    /// both ways, and a flipped bit anywhere refused with the buffer zeroed.
    #[test]
    fn same_bytes_as_the_aes_gcm_siv_crate() {
        let key = [0x5a; 32];
        let ours = GcmSiv::new(&key);
        let theirs = Aes256GcmSiv::new(&key.into());
        let nonce = [7u8; 12];
        let plain: Vec<u8> = (0..2200u32)
            .map(|i| u8::try_from(i * 31 % 251).unwrap())
            .collect();
        let lengths = (0..=70).chain([1023, 1024, 1025, 2048, 2200]);
        for len in lengths {
            for aad_len in [0, 1, 15, 16, 17, 150] {
                let aad = vec![0xA5; aad_len];
                let msg = &plain[..len];
                let sealed = seal(&ours, &nonce, &aad, msg);
                let expected = theirs
                    .encrypt(&nonce.into(), Payload { msg, aad: &aad })
                    .unwrap();
                assert_eq!(sealed, expected, "length {len}, aad {aad_len}");
                assert_eq!(open(&ours, &nonce, &aad, &expected).as_deref(), Some(msg));
                let mut flipped = sealed.clone();
                flipped[len / 2] ^= 0x10;
                let (body, tag) = flipped.split_at(len);
                let mut buf = body.to_vec();
                assert!(!ours.open_in_place(&nonce, &aad, &mut buf, tag.try_into().unwrap()));
                assert!(buf.iter().all(|&b| b == 0), "refused plaintext zeroed");
            }
        }
    }

    #[test]
    fn a_refused_buffer_kept_gets_its_ciphertext_back() {
        let c = GcmSiv::new(&[3; 32]);
        for len in [0, 1, 16, 175, 1024, 1500] {
            let plain: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let sealed = seal(&c, &[4; 12], b"aad", &plain);
            let (body, tag) = sealed.split_at(len);
            let tag: [u8; 16] = tag.try_into().unwrap();
            let mut buf = body.to_vec();
            assert!(!c.open_in_place_keeping(&[4; 12], b"aaD", &mut buf, &tag));
            assert_eq!(buf, body, "length {len}: the ciphertext restored");
            let mut wrong_tag = tag;
            wrong_tag[0] ^= 1;
            assert!(!c.open_in_place_keeping(&[4; 12], b"aad", &mut buf, &wrong_tag));
            assert_eq!(buf, body);
            assert!(c.open_in_place_keeping(&[4; 12], b"aad", &mut buf, &tag));
            assert_eq!(buf, plain);
        }
    }

    #[test]
    fn other_nonce_or_binding_does_not_open() {
        let c = GcmSiv::new(&[1; 32]);
        let sealed = seal(&c, &[1; 12], b"aad", b"secret");
        assert_eq!(
            open(&c, &[1; 12], b"aad", &sealed).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(open(&c, &[2; 12], b"aad", &sealed), None);
        assert_eq!(open(&c, &[1; 12], b"aaD", &sealed), None);
        assert_eq!(
            open(&GcmSiv::new(&[2; 32]), &[1; 12], b"aad", &sealed),
            None
        );
    }
}
