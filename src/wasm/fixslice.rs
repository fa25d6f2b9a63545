//! AES-256 encryption, fixsliced over 128-bit words: eight blocks per pass
//! instead of the `aes` crate's four in 64-bit words. On wasm32 with SIMD the
//! words are `v128`, so every logic operation of the S-box and MixColumns
//! covers eight blocks, which the `aes` crate's soft backend (`u64` words
//! on wasm32) cannot do.
//!
//! The algorithm, the S-box circuit (Boyar–Peralta–Calik), the MixColumns
//! variants and the key schedule are those of the `aes` crate 0.9
//! (`src/backends/fixslice/`, Adomnicai and Peyrin's fixslicing; MIT or
//! Apache-2.0, © the RustCrypto developers), copied here with the word
//! width widened: bit index `p2 p1 p0 | r1 r0 c1 c0 b2 b1 b0` (bit of the
//! byte; row, column, block). Only encryption (CTR needs nothing else).
//! Constant-time like the original: no table, no data-dependent branch on
//! keys or data. The one table, [`Counters`]' map of counter bits, is
//! indexed by the CTR counters, which are public.
//! The tests check it against the `aes` crate.

// Only the SIMD build encrypts with it; elsewhere only the tests use it.
#![cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]

use core::ops::{BitAnd, BitOr, BitXor, Not};

/// A word of the bitsliced state: 128 bits, one bit per (row, column, block).
pub(crate) trait Slice: Copy + BitAnd<Output = Self> + BitOr<Output = Self> + BitXor<Output = Self> + Not<Output = Self> {
    fn from_u128(x: u128) -> Self;
    /// Rotates right by `n` bits, a multiple of 8.
    fn ror(self, n: u32) -> Self;
    /// Shifts left / right by `n` bits, a multiple of 8.
    fn shl(self, n: u32) -> Self;
    fn shr(self, n: u32) -> Self;
}

impl Slice for u128 {
    #[inline(always)]
    fn from_u128(x: u128) -> Self {
        x
    }
    #[inline(always)]
    fn ror(self, n: u32) -> Self {
        self.rotate_right(n)
    }
    #[inline(always)]
    fn shl(self, n: u32) -> Self {
        self << n
    }
    #[inline(always)]
    fn shr(self, n: u32) -> Self {
        self >> n
    }
}

/// Bits per row of a word (4 columns × 8 blocks).
const ROW_BITS: u32 = 32;
const HALF_ROW: u32 = ROW_BITS / 2;
const QUARTER_ROW: u32 = ROW_BITS / 4;

const fn ror_distance(rows: u32, cols: u32) -> u32 {
    rows * ROW_BITS + cols * QUARTER_ROW
}

/// Each of the 4 column bits of `b` repeated over the 8 blocks: one row.
const fn row_bits(b: u8) -> u128 {
    let mut out = 0u128;
    let mut c = 0;
    while c < 4 {
        if b >> c & 1 == 1 {
            out |= 0xff << (8 * c);
        }
        c += 1;
    }
    out
}

const fn uniform_row(b: u8) -> u128 {
    let r = row_bits(b);
    r | r << 32 | r << 64 | r << 96
}

const fn pack_rows(r0: u8, r1: u8, r2: u8, r3: u8) -> u128 {
    row_bits(r0) | row_bits(r1) << 32 | row_bits(r2) << 64 | row_bits(r3) << 96
}

#[inline(always)]
fn delta_swap_1<W: Slice>(a: &mut W, shift: u32, mask: u128) {
    let t = (*a ^ a.shr(shift)) & W::from_u128(mask);
    *a = *a ^ t ^ t.shl(shift);
}

/// ShiftRows twice.
#[inline(always)]
fn shift_rows_2<W: Slice>(state: &mut [W; 8]) {
    for x in state.iter_mut() {
        delta_swap_1(x, HALF_ROW, pack_rows(0x0, 0x3, 0x0, 0x3));
    }
}

/// ShiftRows once / three times (key schedule only).
fn shift_rows_1<W: Slice>(state: &mut [W]) {
    for x in state.iter_mut() {
        delta_swap_1(x, HALF_ROW, pack_rows(0x0, 0x1, 0x3, 0x2));
        delta_swap_1(x, QUARTER_ROW, pack_rows(0x0, 0x5, 0x0, 0x5));
    }
}

fn shift_rows_3<W: Slice>(state: &mut [W]) {
    for x in state.iter_mut() {
        delta_swap_1(x, HALF_ROW, pack_rows(0x0, 0x2, 0x3, 0x1));
        delta_swap_1(x, QUARTER_ROW, pack_rows(0x0, 0x5, 0x0, 0x5));
    }
}

#[inline(always)]
fn add_round_key<W: Slice>(state: &mut [W; 8], rkey: &[W]) {
    for (a, b) in state.iter_mut().zip(rkey) {
        *a = *a ^ *b;
    }
}

/// NOT operations that are omitted in S-box.
fn sub_bytes_nots<W: Slice>(state: &mut [W]) {
    state[0] = !state[0];
    state[1] = !state[1];
    state[5] = !state[5];
    state[6] = !state[6];
}

#[inline(always)]
fn rotate_rows_1<W: Slice>(x: W) -> W {
    x.ror(ror_distance(1, 0))
}

#[inline(always)]
fn rotate_rows_2<W: Slice>(x: W) -> W {
    x.ror(ror_distance(2, 0))
}

#[inline(always)]
fn rotate_rows_and_columns_1_1<W: Slice>(x: W) -> W {
    (x.ror(ror_distance(1, 1)) & W::from_u128(uniform_row(0x7))) | (x.ror(ror_distance(0, 1)) & W::from_u128(uniform_row(0x8)))
}

#[inline(always)]
fn rotate_rows_and_columns_1_2<W: Slice>(x: W) -> W {
    (x.ror(ror_distance(1, 2)) & W::from_u128(uniform_row(0x3))) | (x.ror(ror_distance(0, 2)) & W::from_u128(uniform_row(0xc)))
}

#[inline(always)]
fn rotate_rows_and_columns_1_3<W: Slice>(x: W) -> W {
    (x.ror(ror_distance(1, 3)) & W::from_u128(uniform_row(0x1))) | (x.ror(ror_distance(0, 3)) & W::from_u128(uniform_row(0xe)))
}

#[inline(always)]
fn rotate_rows_and_columns_2_2<W: Slice>(x: W) -> W {
    (x.ror(ror_distance(2, 2)) & W::from_u128(uniform_row(0x3))) | (x.ror(ror_distance(1, 2)) & W::from_u128(uniform_row(0xc)))
}

/// Bitsliced implementation of the AES Sbox based on Boyar, Peralta and Calik.
///
/// See: <http://www.cs.yale.edu/homes/peralta/CircuitStuff/SLP_AES_113.txt>
///
/// Note that the 4 bitwise NOT are moved to the key schedule.
fn sub_bytes<W: Slice>(state: &mut [W]) {
    debug_assert_eq!(state.len(), 8);

    // Scheduled using https://github.com/Ko-/aes-armcortexm/tree/public/scheduler
    // Inline "stack" comments reflect suggested stores and loads (ARM Cortex-M3 and M4)

    let u7 = state[0];
    let u6 = state[1];
    let u5 = state[2];
    let u4 = state[3];
    let u3 = state[4];
    let u2 = state[5];
    let u1 = state[6];
    let u0 = state[7];

    let y14 = u3 ^ u5;
    let y13 = u0 ^ u6;
    let y12 = y13 ^ y14;
    let t1 = u4 ^ y12;
    let y15 = t1 ^ u5;
    let t2 = y12 & y15;
    let y6 = y15 ^ u7;
    let y20 = t1 ^ u1;
    // y12 -> stack
    let y9 = u0 ^ u3;
    // y20 -> stack
    let y11 = y20 ^ y9;
    // y9 -> stack
    let t12 = y9 & y11;
    // y6 -> stack
    let y7 = u7 ^ y11;
    let y8 = u0 ^ u5;
    let t0 = u1 ^ u2;
    let y10 = y15 ^ t0;
    // y15 -> stack
    let y17 = y10 ^ y11;
    // y14 -> stack
    let t13 = y14 & y17;
    let t14 = t13 ^ t12;
    // y17 -> stack
    let y19 = y10 ^ y8;
    // y10 -> stack
    let t15 = y8 & y10;
    let t16 = t15 ^ t12;
    let y16 = t0 ^ y11;
    // y11 -> stack
    let y21 = y13 ^ y16;
    // y13 -> stack
    let t7 = y13 & y16;
    // y16 -> stack
    let y18 = u0 ^ y16;
    let y1 = t0 ^ u7;
    let y4 = y1 ^ u3;
    // u7 -> stack
    let t5 = y4 & u7;
    let t6 = t5 ^ t2;
    let t18 = t6 ^ t16;
    let t22 = t18 ^ y19;
    let y2 = y1 ^ u0;
    let t10 = y2 & y7;
    let t11 = t10 ^ t7;
    let t20 = t11 ^ t16;
    let t24 = t20 ^ y18;
    let y5 = y1 ^ u6;
    let t8 = y5 & y1;
    let t9 = t8 ^ t7;
    let t19 = t9 ^ t14;
    let t23 = t19 ^ y21;
    let y3 = y5 ^ y8;
    // y6 <- stack
    let t3 = y3 & y6;
    let t4 = t3 ^ t2;
    // y20 <- stack
    let t17 = t4 ^ y20;
    let t21 = t17 ^ t14;
    let t26 = t21 & t23;
    let t27 = t24 ^ t26;
    let t31 = t22 ^ t26;
    let t25 = t21 ^ t22;
    // y4 -> stack
    let t28 = t25 & t27;
    let t29 = t28 ^ t22;
    let z14 = t29 & y2;
    let z5 = t29 & y7;
    let t30 = t23 ^ t24;
    let t32 = t31 & t30;
    let t33 = t32 ^ t24;
    let t35 = t27 ^ t33;
    let t36 = t24 & t35;
    let t38 = t27 ^ t36;
    let t39 = t29 & t38;
    let t40 = t25 ^ t39;
    let t43 = t29 ^ t40;
    // y16 <- stack
    let z3 = t43 & y16;
    let tc12 = z3 ^ z5;
    // tc12 -> stack
    // y13 <- stack
    let z12 = t43 & y13;
    let z13 = t40 & y5;
    let z4 = t40 & y1;
    let tc6 = z3 ^ z4;
    let t34 = t23 ^ t33;
    let t37 = t36 ^ t34;
    let t41 = t40 ^ t37;
    // y10 <- stack
    let z8 = t41 & y10;
    let z17 = t41 & y8;
    let t44 = t33 ^ t37;
    // y15 <- stack
    let z0 = t44 & y15;
    // z17 -> stack
    // y12 <- stack
    let z9 = t44 & y12;
    let z10 = t37 & y3;
    let z1 = t37 & y6;
    let tc5 = z1 ^ z0;
    let tc11 = tc6 ^ tc5;
    // y4 <- stack
    let z11 = t33 & y4;
    let t42 = t29 ^ t33;
    let t45 = t42 ^ t41;
    // y17 <- stack
    let z7 = t45 & y17;
    let tc8 = z7 ^ tc6;
    // y14 <- stack
    let z16 = t45 & y14;
    // y11 <- stack
    let z6 = t42 & y11;
    let tc16 = z6 ^ tc8;
    // z14 -> stack
    // y9 <- stack
    let z15 = t42 & y9;
    let tc20 = z15 ^ tc16;
    let tc1 = z15 ^ z16;
    let tc2 = z10 ^ tc1;
    let tc21 = tc2 ^ z11;
    let tc3 = z9 ^ tc2;
    let s0 = tc3 ^ tc16;
    let s3 = tc3 ^ tc11;
    let s1 = s3 ^ tc16;
    let tc13 = z13 ^ tc1;
    // u7 <- stack
    let z2 = t33 & u7;
    let tc4 = z0 ^ z2;
    let tc7 = z12 ^ tc4;
    let tc9 = z8 ^ tc7;
    let tc10 = tc8 ^ tc9;
    // z14 <- stack
    let tc17 = z14 ^ tc10;
    let s5 = tc21 ^ tc17;
    let tc26 = tc17 ^ tc20;
    // z17 <- stack
    let s2 = tc26 ^ z17;
    // tc12 <- stack
    let tc14 = tc4 ^ tc12;
    let tc18 = tc13 ^ tc14;
    let s6 = tc10 ^ tc18;
    let s7 = z12 ^ tc18;
    let s4 = tc14 ^ s3;

    state[0] = s7;
    state[1] = s6;
    state[2] = s5;
    state[3] = s4;
    state[4] = s3;
    state[5] = s2;
    state[6] = s1;
    state[7] = s0;
}

macro_rules! define_mix_columns {
    (
        $name:ident,
                $first_rotate:path,
        $second_rotate:path
    ) => {
#[rustfmt::skip]
        fn $name<W: Slice>(state: &mut [W; 8]) {
            let (a0, a1, a2, a3, a4, a5, a6, a7) = (
                state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7]
            );
            let (b0, b1, b2, b3, b4, b5, b6, b7) = (
                $first_rotate(a0),
                $first_rotate(a1),
                $first_rotate(a2),
                $first_rotate(a3),
                $first_rotate(a4),
                $first_rotate(a5),
                $first_rotate(a6),
                $first_rotate(a7),
            );
            let (c0, c1, c2, c3, c4, c5, c6, c7) = (
                a0 ^ b0,
                a1 ^ b1,
                a2 ^ b2,
                a3 ^ b3,
                a4 ^ b4,
                a5 ^ b5,
                a6 ^ b6,
                a7 ^ b7,
            );
            state[0] = b0      ^ c7 ^ $second_rotate(c0);
            state[1] = b1 ^ c0 ^ c7 ^ $second_rotate(c1);
            state[2] = b2 ^ c1      ^ $second_rotate(c2);
            state[3] = b3 ^ c2 ^ c7 ^ $second_rotate(c3);
            state[4] = b4 ^ c3 ^ c7 ^ $second_rotate(c4);
            state[5] = b5 ^ c4      ^ $second_rotate(c5);
            state[6] = b6 ^ c5      ^ $second_rotate(c6);
            state[7] = b7 ^ c6      ^ $second_rotate(c7);
        }
    };
}

define_mix_columns!(mix_columns_0, rotate_rows_1, rotate_rows_2);
define_mix_columns!(mix_columns_1, rotate_rows_and_columns_1_1, rotate_rows_and_columns_2_2);
define_mix_columns!(mix_columns_2, rotate_rows_and_columns_1_2, rotate_rows_2);
define_mix_columns!(mix_columns_3, rotate_rows_and_columns_1_3, rotate_rows_and_columns_2_2);

// ---------------------------------------------------------------- packing

/// Bytes of one block ordered for [`bitslice64`] (as the `aes` crate's `u64` word).
fn read_reordered(input: &[u8]) -> u64 {
    u64::from(input[0x0])
        | (u64::from(input[0x1]) << 0x10)
        | (u64::from(input[0x2]) << 0x20)
        | (u64::from(input[0x3]) << 0x30)
        | (u64::from(input[0x8]) << 0x08)
        | (u64::from(input[0x9]) << 0x18)
        | (u64::from(input[0xa]) << 0x28)
        | (u64::from(input[0xb]) << 0x38)
}

fn write_reordered(columns: u64, output: &mut [u8]) {
    output[0x0] = columns as u8;
    output[0x1] = (columns >> 0x10) as u8;
    output[0x2] = (columns >> 0x20) as u8;
    output[0x3] = (columns >> 0x30) as u8;
    output[0x8] = (columns >> 0x08) as u8;
    output[0x9] = (columns >> 0x18) as u8;
    output[0xa] = (columns >> 0x28) as u8;
    output[0xb] = (columns >> 0x38) as u8;
}

#[inline(always)]
fn delta_swap_2(a: &mut u64, b: &mut u64, shift: u32, mask: u64) {
    let t = (*a ^ (*b >> shift)) & mask;
    *a ^= t;
    *b ^= t << shift;
}

/// The `aes` crate's delta swaps (they invert themselves).
fn bitslice_swaps(t: &mut [u64; 8]) {
    let [t0, t1, t2, t3, t4, t5, t6, t7] = t;
    let m0 = 0x5555_5555_5555_5555;
    delta_swap_2(t1, t0, 1, m0);
    delta_swap_2(t3, t2, 1, m0);
    delta_swap_2(t5, t4, 1, m0);
    delta_swap_2(t7, t6, 1, m0);
    let m1 = 0x3333_3333_3333_3333;
    delta_swap_2(t2, t0, 2, m1);
    delta_swap_2(t3, t1, 2, m1);
    delta_swap_2(t6, t4, 2, m1);
    delta_swap_2(t7, t5, 2, m1);
    let m2 = 0x0f0f_0f0f_0f0f_0f0f;
    delta_swap_2(t4, t0, 4, m2);
    delta_swap_2(t5, t1, 4, m2);
    delta_swap_2(t6, t2, 4, m2);
    delta_swap_2(t7, t3, 4, m2);
}

/// Four blocks into eight 64-bit words, index `r1 r0 c1 c0 b1 b0` (the `aes` crate's `u64` layout).
fn bitslice64(blocks: &[[u8; 16]]) -> [u64; 8] {
    let mut t = [
        read_reordered(&blocks[0][0x00..0x0c]),
        read_reordered(&blocks[1][0x00..0x0c]),
        read_reordered(&blocks[2][0x00..0x0c]),
        read_reordered(&blocks[3][0x00..0x0c]),
        read_reordered(&blocks[0][0x04..0x10]),
        read_reordered(&blocks[1][0x04..0x10]),
        read_reordered(&blocks[2][0x04..0x10]),
        read_reordered(&blocks[3][0x04..0x10]),
    ];
    bitslice_swaps(&mut t);
    t
}

fn inv_bitslice64(mut t: [u64; 8], blocks: &mut [[u8; 16]]) {
    bitslice_swaps(&mut t);
    write_reordered(t[0], &mut blocks[0][0x00..0x0c]);
    write_reordered(t[4], &mut blocks[0][0x04..0x10]);
    write_reordered(t[1], &mut blocks[1][0x00..0x0c]);
    write_reordered(t[5], &mut blocks[1][0x04..0x10]);
    write_reordered(t[2], &mut blocks[2][0x00..0x0c]);
    write_reordered(t[6], &mut blocks[2][0x04..0x10]);
    write_reordered(t[3], &mut blocks[3][0x00..0x0c]);
    write_reordered(t[7], &mut blocks[3][0x04..0x10]);
}

const NIBBLES: u128 = 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;

/// The nibbles of `x` into the low nibbles of the 16 bytes of a u128.
fn spread(x: u64) -> u128 {
    let x = x as u128;
    let x = (x | x << 32) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    let x = (x | x << 16) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    let x = (x | x << 8) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    (x | x << 4) & NIBBLES
}

/// The inverse of [`spread`] (high nibbles of each byte ignored).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))] // the SIMD build uses `simd::inv_bitslice`
fn gather(x: u128) -> u64 {
    let x = x & NIBBLES;
    let x = (x | x >> 4) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    let x = (x | x >> 8) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    let x = (x | x >> 16) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    (x | x >> 32) as u64
}

/// Eight blocks into the 128-bit state: blocks 0–3 in the low nibble of
/// each byte (b2 = 0), blocks 4–7 in the high one.
pub(crate) fn bitslice(blocks: &[[u8; 16]; 8]) -> [u128; 8] {
    let lo = bitslice64(&blocks[..4]);
    let hi = bitslice64(&blocks[4..]);
    core::array::from_fn(|i| spread(lo[i]) | spread(hi[i]) << 4)
}

#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))] // the SIMD build uses `simd::inv_bitslice`
pub(crate) fn inv_bitslice(state: &[u128; 8], blocks: &mut [[u8; 16]; 8]) {
    let (lo, hi) = blocks.split_at_mut(4);
    inv_bitslice64(core::array::from_fn(|i| gather(state[i])), lo);
    inv_bitslice64(core::array::from_fn(|i| gather(state[i] >> 4)), hi);
}

// ---------------------------------------------------------------- CTR counters

/// Where bit `j` (0 = least significant) of the big-endian 32-bit counter in
/// bytes 12..16 of block `i` lands in the bitsliced state: the word, and
/// that word with only this bit set. Bitslicing moves bits without
/// combining them, so each input bit is one bit of the state.
fn counter_bits() -> &'static [[(u8, u128); 32]; 8] {
    static BITS: std::sync::OnceLock<[[(u8, u128); 32]; 8]> = std::sync::OnceLock::new();
    BITS.get_or_init(|| {
        core::array::from_fn(|i| {
            core::array::from_fn(|j| {
                let mut blocks = [[0u8; 16]; 8];
                blocks[i][15 - j / 8] = 1 << (j % 8);
                let state = bitslice(&blocks);
                let word = state.iter().position(|w| *w != 0).unwrap_or_default();
                (word as u8, state[word])
            })
        })
    })
}

/// Eight consecutive counter blocks `nonce ‖ c`, …, `nonce ‖ c+7` (GCM's
/// 32-bit big-endian counter, wrapping), bitsliced: CTR bitslices them once
/// and then moves them on eight blocks at a time by flipping the state bits
/// of the counter bits that change (about two per block), instead of
/// bitslicing every eight counter blocks anew (a quarter of the AES time
/// in wasm). The counters are public, so indexing by them leaks nothing.
pub(crate) struct Counters<W> {
    /// The bitsliced blocks of counters `first`..`first + 8`.
    pub(crate) state: [W; 8],
    first: u32,
}

impl<W: Slice> Counters<W> {
    /// The eight counter blocks from `first` on, given `bitslice` (the
    /// function of the word type at hand).
    pub(crate) fn new(nonce: &[u8; 12], first: u32, bitslice: impl Fn(&[[u8; 16]; 8]) -> [W; 8]) -> Self {
        let blocks: [[u8; 16]; 8] = core::array::from_fn(|i| {
            let mut block = [0u8; 16];
            block[..12].copy_from_slice(nonce);
            block[12..].copy_from_slice(&first.wrapping_add(i as u32).to_be_bytes());
            block
        });
        Counters { state: bitslice(&blocks), first }
    }

    /// Moves on to the next eight counters.
    #[inline(always)]
    pub(crate) fn advance(&mut self) {
        for (i, bits) in counter_bits().iter().enumerate() {
            let counter = self.first.wrapping_add(i as u32);
            let mut flips = counter ^ counter.wrapping_add(8);
            while flips != 0 {
                let (word, bit) = bits[flips.trailing_zeros() as usize];
                self.state[usize::from(word)] = self.state[usize::from(word)] ^ W::from_u128(bit);
                flips &= flips - 1;
            }
        }
        self.first = self.first.wrapping_add(8);
    }
}

// ---------------------------------------------------------------- AES-256

/// AES-256 round keys in the fixsliced representation.
pub(crate) type RoundKeys<W> = [W; 120];

/// XOR the columns after the S-box during the key schedule round function.
fn xor_columns<W: Slice>(rkeys: &mut [W], offset: usize, idx_xor: usize, idx_ror: u32) {
    let row = |b| W::from_u128(uniform_row(b));
    for i in 0..8 {
        let off_i = offset + i;
        let rk = rkeys[off_i - idx_xor] ^ (row(0x1) & rkeys[off_i].ror(idx_ror));
        rkeys[off_i] = rk ^ (row(0xe) & rk.shl(QUARTER_ROW)) ^ (row(0xc) & rk.shl(HALF_ROW)) ^ (row(0x8) & rk.shl(3 * QUARTER_ROW));
    }
}

fn memshift32<W: Slice>(buffer: &mut [W], src_offset: usize) {
    let dst_offset = src_offset + 8;
    for i in (0..8).rev() {
        buffer[dst_offset + i] = buffer[src_offset + i];
    }
}

/// The fully fixsliced AES-256 key schedule (the `aes` crate's, on 128-bit
/// words; generic so that the SIMD build has one S-box, over `v128`).
pub(crate) fn key_schedule<W: Slice>(key: &[u8; 32]) -> RoundKeys<W> {
    let mut rkeys = [W::from_u128(0); 120];
    let half = |h: &[u8]| -> [[u8; 16]; 8] { core::array::from_fn(|_| h.try_into().unwrap_or_default()) };
    rkeys[..8].copy_from_slice(&bitslice(&half(&key[..16])).map(W::from_u128));
    rkeys[8..16].copy_from_slice(&bitslice(&half(&key[16..])).map(W::from_u128));
    let mut rk_off = 8;
    let mut rcon = 0;
    loop {
        memshift32(&mut rkeys, rk_off);
        rk_off += 8;
        sub_bytes(&mut rkeys[rk_off..(rk_off + 8)]);
        sub_bytes_nots(&mut rkeys[rk_off..(rk_off + 8)]);
        rkeys[rk_off + rcon] = rkeys[rk_off + rcon] ^ W::from_u128(pack_rows(0x0, 0x8, 0x0, 0x0));
        xor_columns(&mut rkeys, rk_off, 16, ror_distance(1, 3));
        rcon += 1;
        if rcon == 7 {
            break;
        }
        memshift32(&mut rkeys, rk_off);
        rk_off += 8;
        sub_bytes(&mut rkeys[rk_off..(rk_off + 8)]);
        sub_bytes_nots(&mut rkeys[rk_off..(rk_off + 8)]);
        xor_columns(&mut rkeys, rk_off, 16, ror_distance(0, 3));
    }
    for i in (8..104).step_by(32) {
        shift_rows_3(&mut rkeys[i..(i + 8)]);
        shift_rows_2_slice(&mut rkeys[(i + 8)..(i + 16)]);
        shift_rows_1(&mut rkeys[(i + 16)..(i + 24)]);
    }
    shift_rows_3(&mut rkeys[104..112]);
    for i in 1..15 {
        sub_bytes_nots(&mut rkeys[(i * 8)..(i * 8 + 8)]);
    }
    rkeys
}

fn shift_rows_2_slice<W: Slice>(state: &mut [W]) {
    for x in state.iter_mut() {
        delta_swap_1(x, HALF_ROW, pack_rows(0x0, 0x3, 0x0, 0x3));
    }
}

/// Fully fixsliced AES-256 encryption of a bitsliced state (eight blocks).
#[inline(always)]
pub(crate) fn encrypt<W: Slice>(rkeys: &[W; 120], state: &mut [W; 8]) {
    add_round_key(state, &rkeys[..8]);
    let mut rk_off = 8;
    loop {
        sub_bytes(state);
        mix_columns_1(state);
        add_round_key(state, &rkeys[rk_off..(rk_off + 8)]);
        rk_off += 8;
        if rk_off == 112 {
            break;
        }
        sub_bytes(state);
        mix_columns_2(state);
        add_round_key(state, &rkeys[rk_off..(rk_off + 8)]);
        rk_off += 8;
        sub_bytes(state);
        mix_columns_3(state);
        add_round_key(state, &rkeys[rk_off..(rk_off + 8)]);
        rk_off += 8;
        sub_bytes(state);
        mix_columns_0(state);
        add_round_key(state, &rkeys[rk_off..(rk_off + 8)]);
        rk_off += 8;
    }
    shift_rows_2(state);
    sub_bytes(state);
    add_round_key(state, &rkeys[112..]);
}

/// The 128-bit word as a WebAssembly SIMD vector (the layout of a
/// little-endian `u128`: byte `i` of the vector is bits `8i..8i+8`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod simd {
    use core::arch::wasm32::{i8x16_shuffle, u64x2, u64x2_extract_lane, u8x16_shl, u8x16_shr, u8x16_splat, v128, v128_and, v128_not, v128_or, v128_xor};
    use core::ops::{BitAnd, BitOr, BitXor, Not};

    #[derive(Clone, Copy)]
    pub(crate) struct V(v128);

    impl BitAnd for V {
        type Output = V;
        #[inline(always)]
        fn bitand(self, o: V) -> V {
            V(v128_and(self.0, o.0))
        }
    }
    impl BitOr for V {
        type Output = V;
        #[inline(always)]
        fn bitor(self, o: V) -> V {
            V(v128_or(self.0, o.0))
        }
    }
    impl BitXor for V {
        type Output = V;
        #[inline(always)]
        fn bitxor(self, o: V) -> V {
            V(v128_xor(self.0, o.0))
        }
    }
    impl Not for V {
        type Output = V;
        #[inline(always)]
        fn not(self) -> V {
            V(v128_not(self.0))
        }
    }

    impl V {
        /// `spread(lo) | spread(hi) << 4` (see [`super::spread`]) with shuffles:
        /// nibble `k` of `lo` / `hi` into the low / high nibble of byte `k`.
        #[inline(always)]
        pub(crate) fn interleave(lo: u64, hi: u64) -> V {
            let v = u64x2(lo, hi);
            let low = v128_and(v, u8x16_splat(0x0f));
            let high = u8x16_shr(v, 4);
            let lo = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(low, high);
            let hi = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(low, high);
            V(v128_or(lo, u8x16_shl(hi, 4)))
        }

        /// The inverse of [`V::interleave`]: (lo, hi).
        #[inline(always)]
        pub(crate) fn deinterleave(self) -> (u64, u64) {
            let low = v128_and(self.0, u8x16_splat(0x0f));
            let high = u8x16_shr(self.0, 4);
            let even = i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30>(low, high);
            let odd = i8x16_shuffle::<1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31>(low, high);
            let v = v128_or(even, u8x16_shl(odd, 4));
            (u64x2_extract_lane::<0>(v), u64x2_extract_lane::<1>(v))
        }
    }

    /// [`super::bitslice`] with the interleave in SIMD.
    pub(crate) fn bitslice(blocks: &[[u8; 16]; 8]) -> [V; 8] {
        let lo = super::bitslice64(&blocks[..4]);
        let hi = super::bitslice64(&blocks[4..]);
        core::array::from_fn(|i| V::interleave(lo[i], hi[i]))
    }

    /// [`super::inv_bitslice`] with the de-interleave in SIMD.
    pub(crate) fn inv_bitslice(state: &[V; 8], blocks: &mut [[u8; 16]; 8]) {
        let halves = state.map(V::deinterleave);
        let (lo, hi) = blocks.split_at_mut(4);
        super::inv_bitslice64(halves.map(|h| h.0), lo);
        super::inv_bitslice64(halves.map(|h| h.1), hi);
    }

    impl super::Slice for V {
        #[inline(always)]
        fn from_u128(x: u128) -> V {
            V(u64x2(x as u64, (x >> 64) as u64))
        }

        #[inline(always)]
        fn ror(self, n: u32) -> V {
            let (v, z) = (self.0, self.0);
            V(match (n / 8) & 15 {
                0 => i8x16_shuffle::<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>(v, z),
                1 => i8x16_shuffle::<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0>(v, z),
                2 => i8x16_shuffle::<2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1>(v, z),
                3 => i8x16_shuffle::<3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2>(v, z),
                4 => i8x16_shuffle::<4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3>(v, z),
                5 => i8x16_shuffle::<5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4>(v, z),
                6 => i8x16_shuffle::<6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5>(v, z),
                7 => i8x16_shuffle::<7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6>(v, z),
                8 => i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7>(v, z),
                9 => i8x16_shuffle::<9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8>(v, z),
                10 => i8x16_shuffle::<10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9>(v, z),
                11 => i8x16_shuffle::<11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10>(v, z),
                12 => i8x16_shuffle::<12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11>(v, z),
                13 => i8x16_shuffle::<13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12>(v, z),
                14 => i8x16_shuffle::<14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13>(v, z),
                15 => i8x16_shuffle::<15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14>(v, z),
                _ => v,
            })
        }

        #[inline(always)]
        fn shr(self, n: u32) -> V {
            let (v, z) = (self.0, u8x16_splat(0));
            V(match n / 8 {
                0 => i8x16_shuffle::<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>(v, z),
                1 => i8x16_shuffle::<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16>(v, z),
                2 => i8x16_shuffle::<2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16>(v, z),
                3 => i8x16_shuffle::<3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16>(v, z),
                4 => i8x16_shuffle::<4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16>(v, z),
                5 => i8x16_shuffle::<5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16>(v, z),
                6 => i8x16_shuffle::<6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16>(v, z),
                7 => i8x16_shuffle::<7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16>(v, z),
                8 => i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                9 => i8x16_shuffle::<9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                10 => i8x16_shuffle::<10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                11 => i8x16_shuffle::<11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                12 => i8x16_shuffle::<12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                13 => i8x16_shuffle::<13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                14 => i8x16_shuffle::<14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                15 => i8x16_shuffle::<15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>(v, z),
                _ => z,
            })
        }

        #[inline(always)]
        fn shl(self, n: u32) -> V {
            let (v, z) = (self.0, u8x16_splat(0));
            V(match n / 8 {
                0 => i8x16_shuffle::<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>(v, z),
                1 => i8x16_shuffle::<16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14>(v, z),
                2 => i8x16_shuffle::<16, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13>(v, z),
                3 => i8x16_shuffle::<16, 16, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12>(v, z),
                4 => i8x16_shuffle::<16, 16, 16, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11>(v, z),
                5 => i8x16_shuffle::<16, 16, 16, 16, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10>(v, z),
                6 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9>(v, z),
                7 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8>(v, z),
                8 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 2, 3, 4, 5, 6, 7>(v, z),
                9 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 2, 3, 4, 5, 6>(v, z),
                10 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 2, 3, 4, 5>(v, z),
                11 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 2, 3, 4>(v, z),
                12 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 2, 3>(v, z),
                13 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 2>(v, z),
                14 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1>(v, z),
                15 => i8x16_shuffle::<16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0>(v, z),
                _ => z,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aes::cipher::{BlockCipherEncrypt, KeyInit};
    use aes_gcm::aes::{Aes256, Block};

    #[test]
    fn counters_moved_on_are_the_counter_blocks_bitsliced() {
        let nonce: [u8; 12] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(5));
        // From GCM's first keystream counter, and across the 32-bit wrap.
        for first in [2u32, 0xffff_ff00, 0xffff_fff3, u32::MAX] {
            let mut counters = Counters::<u128>::new(&nonce, first, bitslice);
            for step in 0..64u32 {
                let fresh = Counters::<u128>::new(&nonce, first.wrapping_add(8 * step), bitslice);
                assert_eq!(counters.state, fresh.state, "from {first:#x}, step {step}");
                counters.advance();
            }
        }
        // Every counter bit is exactly one bit of the state.
        for bits in counter_bits() {
            for &(word, bit) in bits {
                assert!(word < 8);
                assert_eq!(bit.count_ones(), 1);
            }
        }
    }

    #[test]
    fn matches_the_aes_crate() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        };
        for _ in 0..20 {
            let key: [u8; 32] = core::array::from_fn(|_| next());
            let blocks: [[u8; 16]; 8] = core::array::from_fn(|_| core::array::from_fn(|_| next()));
            let mut back = [[0u8; 16]; 8];
            inv_bitslice(&bitslice(&blocks), &mut back);
            assert_eq!(back, blocks, "bitslice round trip");
            let rk = key_schedule::<u128>(&key);
            let mut state = bitslice(&blocks);
            encrypt(&rk, &mut state);
            let mut out = [[0u8; 16]; 8];
            inv_bitslice(&state, &mut out);
            let reference = Aes256::new(&key.into());
            for (i, b) in blocks.iter().enumerate() {
                let mut r = Block::from(*b);
                reference.encrypt_block(&mut r);
                assert_eq!(out[i], r.as_slice(), "block {i}");
            }
        }
    }
}
