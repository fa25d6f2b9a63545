//! AES-256-GCM for the segments of the pure-wasm path (`sealSync`,
//! `openSync`, the streams where WebCrypto is missing).
//!
//! The `aes-gcm` crate on wasm32 runs its portable backends: AES fixsliced
//! over 64-bit words (4 blocks per pass) and POLYVAL one block at a time,
//! with the hash key's bit-reversals and masks recomputed for every block
//! and a byte-reversal of every block to go from GHASH to POLYVAL. This
//! module does instead:
//! - AES: with WebAssembly SIMD (the pkg/ build), the same fixsliced AES
//!   over 128-bit `v128` words, 8 blocks per pass (`fixslice.rs`); without
//!   it (native tests), the `aes` crate;
//! - GHASH, in its own bit order (no per-block byte reversal), with the
//!   constant-time carry-less multiply of BearSSL's
//!   `ghash_ctmul64` (integer multiplies with "holes", no table lookups),
//!   the key-dependent halves, bit-reversals and masks of H, H², H³, H⁴
//!   computed once per key, and four blocks folded per reduction
//!   (`Y·H⁴ ⊕ X₂·H³ ⊕ X₃·H² ⊕ X₄·H`, reduced once);
//! - CTR over batches of blocks, the counter blocks bitsliced once per batch
//!   and then moved on by flipping the bits that change
//!   (`fixslice::Counters`), the keystream XORed straight from the input
//!   into the output, and the ciphertext hashed while it is in cache.
//!
//! The result is AES-256-GCM as NIST SP 800-38D defines it (12-byte nonce,
//! 16-byte tag, no associated data here): the tests check it against the
//! `aes-gcm` crate, and tests/js checks that the CLI and this path produce
//! and accept the same files.

use aes_gcm::aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_gcm::aes::{Aes256, Block};
use zeroize::Zeroize;

use crate::seal::TAG_LEN;

/// Bytes of an AES block.
const BLOCK: usize = 16;
/// Blocks of keystream made per call into the cipher (the fixslice works on
/// 8 blocks at a time in SIMD, 4 in the `aes` crate; a batch bitslices its
/// counter blocks once, see `fixslice::Counters`, and larger batches
/// amortize that and the per-call setup: 64 measured ~5 % faster than 32).
const BATCH: usize = 64;
/// Blocks folded into the hash per reduction (the powers of H kept).
const FOLD: usize = 4;

/// One 64-bit half of a hash key power, split the way [`bmul`] wants it:
/// the value ANDed with each of the four "hole" masks.
type Parts = [u64; 4];

const M0: u64 = 0x1111_1111_1111_1111;
const M1: u64 = 0x2222_2222_2222_2222;
const M2: u64 = 0x4444_4444_4444_4444;
const M3: u64 = 0x8888_8888_8888_8888;

fn parts(x: u64) -> Parts {
    [x & M0, x & M1, x & M2, x & M3]
}

/// Low 64 bits of the carry-less product of `x` (as [`parts`]) and `y`.
/// Integer multiplies of values with three zero bits between set bits: the
/// carries of each sum land in the holes and are masked off (BearSSL).
#[inline(always)]
fn bmul(x: &Parts, y: u64) -> u64 {
    let (y0, y1, y2, y3) = (y & M0, y & M1, y & M2, y & M3);
    let m = |a: u64, b: u64| a.wrapping_mul(b);
    let z0 = m(x[0], y0) ^ m(x[1], y3) ^ m(x[2], y2) ^ m(x[3], y1);
    let z1 = m(x[0], y1) ^ m(x[1], y0) ^ m(x[2], y3) ^ m(x[3], y2);
    let z2 = m(x[0], y2) ^ m(x[1], y1) ^ m(x[2], y0) ^ m(x[3], y3);
    let z3 = m(x[0], y3) ^ m(x[1], y2) ^ m(x[2], y1) ^ m(x[3], y0);
    (z0 & M0) | (z1 & M1) | (z2 & M2) | (z3 & M3)
}

/// Reverses the bits inside each byte (not the byte order).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn reverse_bits_in_bytes(x: u64) -> u64 {
    let x = ((x >> 1) & 0x5555_5555_5555_5555) | ((x & 0x5555_5555_5555_5555) << 1);
    let x = ((x >> 2) & 0x3333_3333_3333_3333) | ((x & 0x3333_3333_3333_3333) << 2);
    ((x >> 4) & 0x0f0f_0f0f_0f0f_0f0f) | ((x & 0x0f0f_0f0f_0f0f_0f0f) << 4)
}

/// A power of the hash key, prepared for Karatsuba: the low half, the high
/// half, their XOR, and the bit-reversals of the three.
#[derive(Clone, Copy, Default)]
struct KeyPower {
    lo: Parts,
    hi: Parts,
    mid: Parts,
    lo_r: Parts,
    hi_r: Parts,
    mid_r: Parts,
}

impl KeyPower {
    /// `h` as (high, low): the big-endian halves of its 16 bytes.
    fn new((h1, h0): (u64, u64)) -> Self {
        let (h0r, h1r) = (h0.reverse_bits(), h1.reverse_bits());
        KeyPower { lo: parts(h0), hi: parts(h1), mid: parts(h0 ^ h1), lo_r: parts(h0r), hi_r: parts(h1r), mid_r: parts(h0r ^ h1r) }
    }

    fn wipe(&mut self) {
        for p in [&mut self.lo, &mut self.hi, &mut self.mid, &mut self.lo_r, &mut self.hi_r, &mut self.mid_r] {
            p.zeroize();
        }
    }
}

/// The six 64-bit Karatsuba products of one or more multiplications, summed
/// (everything up to the reduction is linear, so products are added first).
#[derive(Default)]
struct Product {
    z0: u64,
    z1: u64,
    z2: u64,
    z0h: u64,
    z1h: u64,
    z2h: u64,
}

impl Product {
    /// Adds `y · h`, `y` as [`lanes::load`] gives it.
    #[inline(always)]
    fn add(&mut self, h: &KeyPower, y: lanes::Lanes) {
        let [y1, y0, y1r, y0r] = lanes::split(y);
        self.z0 ^= bmul(&h.lo, y0);
        self.z1 ^= bmul(&h.hi, y1);
        self.z2 ^= bmul(&h.mid, y0 ^ y1);
        self.z0h ^= bmul(&h.lo_r, y0r);
        self.z1h ^= bmul(&h.hi_r, y1r);
        self.z2h ^= bmul(&h.mid_r, y0r ^ y1r);
    }

    /// Recombines, shifts (GHASH's bit order) and reduces modulo
    /// x¹²⁸ + x⁷ + x² + x + 1: the element as (high, low).
    fn reduce(self) -> (u64, u64) {
        let Product { z0, z1, z2, z0h, z1h, z2h } = self;
        let z2 = z2 ^ z0 ^ z1;
        let z2h = z2h ^ z0h ^ z1h;
        let z0h = z0h.reverse_bits() >> 1;
        let z1h = z1h.reverse_bits() >> 1;
        let z2h = z2h.reverse_bits() >> 1;
        let (v0, v1, v2, v3) = (z0, z0h ^ z2, z1 ^ z2h, z1h);
        let v3 = (v3 << 1) | (v2 >> 63);
        let v2 = (v2 << 1) | (v1 >> 63);
        let v1 = (v1 << 1) | (v0 >> 63);
        let v0 = v0 << 1;
        let v2 = v2 ^ v0 ^ (v0 >> 1) ^ (v0 >> 2) ^ (v0 >> 7);
        let v1 = v1 ^ (v0 << 63) ^ (v0 << 62) ^ (v0 << 57);
        let v3 = v3 ^ v1 ^ (v1 >> 1) ^ (v1 >> 2) ^ (v1 >> 7);
        let v2 = v2 ^ (v1 << 63) ^ (v1 << 62) ^ (v1 << 57);
        (v3, v2)
    }
}

/// The product of two field elements given as (high, low).
fn gf_mul(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    let mut p = Product::default();
    p.add(&KeyPower::new(b), lanes::element(a));
    p.reduce()
}

fn load(bytes: &[u8]) -> (u64, u64) {
    let (hi, lo) = bytes.split_at(8);
    (u64::from_le_bytes(hi.try_into().unwrap_or_default()), u64::from_le_bytes(lo.try_into().unwrap_or_default()))
}

/// A block as loaded from memory, and the halves [`Product::add`] needs:
/// plain integer code, or WebAssembly SIMD where the build enables it (one
/// shuffle for the byte swaps, two swizzles for the bit-reversals).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod lanes {
    pub(super) type Lanes = (u64, u64);

    /// The 16 bytes of a block as two little-endian loads.
    #[inline(always)]
    pub(super) fn load(block: &[u8]) -> Lanes {
        super::load(block)
    }

    /// A field element (high, low) as [`load`] would give its bytes.
    #[inline(always)]
    pub(super) fn element((hi, lo): (u64, u64)) -> Lanes {
        (hi.swap_bytes(), lo.swap_bytes())
    }

    #[inline(always)]
    pub(super) fn xor(a: Lanes, b: Lanes) -> Lanes {
        (a.0 ^ b.0, a.1 ^ b.1)
    }

    /// (high, low, high reversed, low reversed): GHASH is big-endian, so the
    /// byte swap and the bit-reversal both come from the same load.
    #[inline(always)]
    pub(super) fn split((a, b): Lanes) -> [u64; 4] {
        [a.swap_bytes(), b.swap_bytes(), super::reverse_bits_in_bytes(a), super::reverse_bits_in_bytes(b)]
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use core::arch::wasm32::{i8x16_shuffle, i8x16_swizzle, u64x2, u64x2_extract_lane, u8x16, u8x16_shr, u8x16_splat, v128, v128_and, v128_or, v128_xor};

    pub(super) type Lanes = v128;

    /// Each nibble bit-reversed, in the high / low half of a byte.
    const REV_HIGH: v128 = u8x16(0x00, 0x80, 0x40, 0xc0, 0x20, 0xa0, 0x60, 0xe0, 0x10, 0x90, 0x50, 0xd0, 0x30, 0xb0, 0x70, 0xf0);
    const REV_LOW: v128 = u8x16(0x0, 0x8, 0x4, 0xc, 0x2, 0xa, 0x6, 0xe, 0x1, 0x9, 0x5, 0xd, 0x3, 0xb, 0x7, 0xf);

    #[inline(always)]
    pub(super) fn load(block: &[u8]) -> Lanes {
        let (a, b) = super::load(block);
        u64x2(a, b)
    }

    #[inline(always)]
    fn swap_bytes(v: v128) -> v128 {
        i8x16_shuffle::<7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8>(v, v)
    }

    #[inline(always)]
    pub(super) fn element((hi, lo): (u64, u64)) -> Lanes {
        swap_bytes(u64x2(hi, lo))
    }

    #[inline(always)]
    pub(super) fn xor(a: Lanes, b: Lanes) -> Lanes {
        v128_xor(a, b)
    }

    #[inline(always)]
    pub(super) fn split(v: Lanes) -> [u64; 4] {
        let swapped = swap_bytes(v);
        let low = v128_and(v, u8x16_splat(0x0f));
        let high = u8x16_shr(v, 4);
        let reversed = v128_or(i8x16_swizzle(REV_HIGH, low), i8x16_swizzle(REV_LOW, high));
        [u64x2_extract_lane::<0>(swapped), u64x2_extract_lane::<1>(swapped), u64x2_extract_lane::<0>(reversed), u64x2_extract_lane::<1>(reversed)]
    }
}

/// GHASH state: the accumulator and H⁴, H³, H², H (in that order).
struct Ghash<'k> {
    powers: &'k [KeyPower; FOLD],
    y: (u64, u64),
}

impl Ghash<'_> {
    /// Hashes whole blocks (`data.len()` a multiple of 16), four at a time.
    fn blocks(&mut self, data: &[u8]) {
        let mut quads = data.chunks_exact(FOLD * BLOCK);
        for quad in &mut quads {
            let mut p = Product::default();
            for (i, (block, h)) in quad.chunks_exact(BLOCK).zip(self.powers).enumerate() {
                let mut y = lanes::load(block);
                if i == 0 {
                    y = lanes::xor(y, lanes::element(self.y));
                }
                p.add(h, y);
            }
            self.y = p.reduce();
        }
        for block in quads.remainder().chunks_exact(BLOCK) {
            let mut p = Product::default();
            p.add(&self.powers[FOLD - 1], lanes::xor(lanes::load(block), lanes::element(self.y)));
            self.y = p.reduce();
        }
    }

    /// Hashes `data`, the last block zero-padded.
    fn padded(&mut self, data: &[u8]) {
        let whole = data.len() / BLOCK * BLOCK;
        self.blocks(&data[..whole]);
        if whole < data.len() {
            let mut last = [0u8; BLOCK];
            last[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.blocks(&last);
        }
    }

    /// Hashes the lengths block (no associated data; `len` bytes of
    /// ciphertext) and returns the hash as bytes.
    fn finish(mut self, len: usize) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[8..].copy_from_slice(&((len as u64) * 8).to_be_bytes());
        self.blocks(&block);
        let mut out = [0u8; BLOCK];
        out[..8].copy_from_slice(&self.y.0.to_be_bytes());
        out[8..].copy_from_slice(&self.y.1.to_be_bytes());
        out
    }
}

/// AES-256-GCM under one key.
pub(crate) struct Gcm {
    cipher: Aes256,
    /// H⁴, H³, H², H.
    powers: Box<[KeyPower; FOLD]>,
    /// The round keys for the SIMD fixslice (see `fixslice.rs`).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    rk: Box<[super::fixslice::simd::V; 120]>,
}

impl Drop for Gcm {
    fn drop(&mut self) {
        for p in self.powers.iter_mut() {
            p.wipe();
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            use super::fixslice::Slice;
            self.rk.fill(super::fixslice::simd::V::from_u128(0));
        }
    }
}

impl Gcm {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let cipher = Aes256::new(key.into());
        let mut h = Block::default();
        cipher.encrypt_block(&mut h);
        let loaded = load(&h);
        h.as_mut_slice().zeroize();
        let h = loaded;
        let h = (h.0.swap_bytes(), h.1.swap_bytes());
        let h2 = gf_mul(h, h);
        let h3 = gf_mul(h2, h);
        let h4 = gf_mul(h3, h);
        let powers = Box::new([KeyPower::new(h4), KeyPower::new(h3), KeyPower::new(h2), KeyPower::new(h)]);
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let rk = Box::new(super::fixslice::key_schedule::<super::fixslice::simd::V>(key));
        Gcm {
            cipher,
            powers,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            rk,
        }
    }

    /// XORs the keystream for `nonce` (counter blocks from 2 up, wrapping in
    /// the low 32 bits) into `input`, writing `output`, and hashes the
    /// ciphertext (`output` when sealing, `input` when opening) as it goes.
    fn ctr_hash(&self, nonce: &[u8; 12], input: &[u8], output: &mut [u8], sealing: bool) -> Ghash<'_> {
        let mut ghash = Ghash { powers: &self.powers, y: (0, 0) };
        let mut counter = 2u32;
        let mut keystream = [0u8; BATCH * BLOCK];
        let mut pos = 0;
        while pos < input.len() {
            let n = (input.len() - pos).min(BATCH * BLOCK);
            let blocks = n.div_ceil(BLOCK);
            self.keystream(nonce, counter, &mut keystream[..blocks * BLOCK]);
            counter = counter.wrapping_add(blocks as u32);
            let (src, dst) = (&input[pos..pos + n], &mut output[pos..pos + n]);
            let whole = n / BLOCK * BLOCK;
            for ((s, d), k) in src[..whole].chunks_exact(BLOCK).zip(dst[..whole].chunks_exact_mut(BLOCK)).zip(keystream.chunks_exact(BLOCK)) {
                let (s0, s1) = load(s);
                let (k0, k1) = load(k);
                d[..8].copy_from_slice(&(s0 ^ k0).to_le_bytes());
                d[8..].copy_from_slice(&(s1 ^ k1).to_le_bytes());
            }
            for ((s, d), k) in src[whole..].iter().zip(&mut dst[whole..]).zip(&keystream[whole..]) {
                *d = s ^ k;
            }
            ghash.padded(if sealing { &dst[..] } else { src });
            pos += n;
        }
        keystream.zeroize();
        ghash
    }

    /// Fills `out` (whole blocks) with the keystream from counter block
    /// `counter` on: the `aes` crate's cipher, four blocks per pass.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    fn keystream(&self, nonce: &[u8; 12], counter: u32, out: &mut [u8]) {
        let mut blocks = [Block::default(); BATCH];
        let n = out.len() / BLOCK;
        for (i, block) in blocks[..n].iter_mut().enumerate() {
            block[..12].copy_from_slice(nonce);
            block[12..].copy_from_slice(&counter.wrapping_add(i as u32).to_be_bytes());
        }
        self.cipher.encrypt_blocks(&mut blocks[..n]);
        for (o, b) in out.chunks_exact_mut(BLOCK).zip(&mut blocks) {
            o.copy_from_slice(b);
            b.as_mut_slice().zeroize();
        }
    }

    /// As above with SIMD: the 128-bit fixslice, eight blocks per pass.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn keystream(&self, nonce: &[u8; 12], counter: u32, out: &mut [u8]) {
        use super::fixslice::simd::{bitslice, inv_bitslice};
        use super::fixslice::{encrypt, Counters};
        let mut blocks = [[0u8; BLOCK]; 8];
        let mut counters = Counters::new(nonce, counter, bitslice);
        for (pass, chunk) in out.chunks_mut(8 * BLOCK).enumerate() {
            if pass > 0 {
                counters.advance();
            }
            let mut state = counters.state;
            encrypt(&self.rk, &mut state);
            inv_bitslice(&state, &mut blocks);
            for (o, b) in chunk.chunks_exact_mut(BLOCK).zip(&blocks) {
                o.copy_from_slice(b);
            }
        }
        blocks.zeroize();
    }

    /// The tag of the ciphertext hashed by `ghash`: GHASH ⊕ E(K, J₀).
    fn tag(&self, nonce: &[u8; 12], ghash: Ghash<'_>, len: usize) -> [u8; TAG_LEN] {
        let mut j0 = Block::default();
        j0[..12].copy_from_slice(nonce);
        j0[15] = 1;
        self.cipher.encrypt_block(&mut j0);
        let mut tag = ghash.finish(len);
        for (t, m) in tag.iter_mut().zip(j0.iter()) {
            *t ^= m;
        }
        tag
    }

    /// Encrypts `plaintext` into `out` (`plaintext.len() + 16` bytes:
    /// ciphertext then tag).
    pub(crate) fn seal(&self, nonce: &[u8; 12], plaintext: &[u8], out: &mut [u8]) {
        let len = plaintext.len();
        let (ct, tag) = out.split_at_mut(len);
        let ghash = self.ctr_hash(nonce, plaintext, ct, true);
        tag.copy_from_slice(&self.tag(nonce, ghash, len));
    }

    /// Decrypts `sealed` (ciphertext then tag) into `out` (`sealed.len() -
    /// 16` bytes) and checks the tag in constant time. On failure `out` is
    /// zeroed and false returned.
    pub(crate) fn open(&self, nonce: &[u8; 12], sealed: &[u8], out: &mut [u8]) -> bool {
        let Some(len) = sealed.len().checked_sub(TAG_LEN) else {
            return false;
        };
        let (ct, tag) = sealed.split_at(len);
        let out = &mut out[..len];
        let ghash = self.ctr_hash(nonce, ct, out, false);
        let expected = self.tag(nonce, ghash, len);
        let diff = expected.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            out.zeroize();
            return false;
        }
        true
    }
}

/// Benchmark reference for scripts/bench-js.mjs, only in the bench build
/// (feature `bench`, `scripts/build-wasm.sh --bench`; never in pkg/):
/// seals one `size`-byte buffer in wasm memory `rounds` times with this module (`aes_gcm_crate` false) or with the `aes-gcm` crate (true),
/// nothing crossing the JS boundary: the ceiling of `sealSync`. Returns a
/// byte of the last tag, so the work cannot be optimized away.
#[cfg(feature = "bench")]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = gcmReference)]
pub fn gcm_reference(size: usize, rounds: u32, aes_gcm_crate: bool) -> u8 {
    use aes_gcm::aead::AeadInOut;
    let key = [7u8; 32];
    let nonce = [0u8; 12];
    let plaintext = vec![0x5au8; size];
    let mut out = vec![0u8; size + TAG_LEN];
    if aes_gcm_crate {
        let cipher = aes_gcm::Aes256Gcm::new(&key.into());
        for _ in 0..rounds {
            out[..size].copy_from_slice(&plaintext);
            if let Ok(tag) = cipher.encrypt_inout_detached(&nonce.into(), &[], (&mut out[..size]).into()) {
                out[size..].copy_from_slice(&tag);
            }
        }
    } else {
        let gcm = Gcm::new(&key);
        for _ in 0..rounds {
            gcm.seal(&nonce, &plaintext, &mut out);
        }
    }
    out[size]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadInOut;
    use aes_gcm::Aes256Gcm;

    fn reference(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(key.into());
        let mut buf = plaintext.to_vec();
        let tag = cipher.encrypt_inout_detached(nonce.into(), &[], buf.as_mut_slice().into()).unwrap();
        buf.extend_from_slice(&tag);
        buf
    }

    #[test]
    fn matches_the_aes_gcm_crate() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let lengths = [0usize, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 511, 512, 513, 1000, 4096, 16384 + 7];
        for (round, &len) in lengths.iter().cycle().take(lengths.len() * 3).enumerate() {
            let key: [u8; 32] = std::array::from_fn(|_| next() as u8);
            let mut nonce: [u8; 12] = std::array::from_fn(|_| next() as u8);
            if round % 3 == 2 {
                // The counter wraps in its low 32 bits.
                nonce = [0; 12];
            }
            let plaintext: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let gcm = Gcm::new(&key);
            let mut sealed = vec![0u8; len + TAG_LEN];
            gcm.seal(&nonce, &plaintext, &mut sealed);
            assert_eq!(sealed, reference(&key, &nonce, &plaintext), "length {len}");
            let mut opened = vec![0u8; len];
            assert!(gcm.open(&nonce, &sealed, &mut opened));
            assert_eq!(opened, plaintext);
            for flip in [0, len / 2, len + TAG_LEN - 1] {
                let mut bad = sealed.clone();
                bad[flip] ^= 0x40;
                assert!(!gcm.open(&nonce, &bad, &mut opened), "flipped byte {flip} of {len}");
                assert!(opened.iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn field_multiplication_is_ghash() {
        // gf_mul(a, 1) = a, where 1 is the bit string 1000…0 in GHASH's order.
        let one = (1u64 << 63, 0);
        let a = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        assert_eq!(gf_mul(a, one), a);
        assert_eq!(gf_mul(one, a), a);
    }
}
