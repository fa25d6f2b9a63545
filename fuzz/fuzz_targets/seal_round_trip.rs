//! Arbitrary data → seal (small KDF, 16 KiB segments) → open → equal;
//! streaming ≡ one-shot; a flipped bit or a truncation never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coffer_fuzz::harness::seal_round_trip(data);
});
