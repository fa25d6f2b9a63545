//! Arbitrary bytes → `seal::inspect` and `Decryptor` push/finish with a fixed
//! passphrase and identity (small KDF limits, so each run is fast). Must never
//! panic; one push and several pushes must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = coffer_fuzz::harness::sealed_header(data);
});
