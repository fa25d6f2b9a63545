//! Arbitrary bytes → `BundleReader::new` + `next_item` to the end, then
//! `read_toc` and `read_collection` over a `Cursor`. Must never panic, hang
//! or allocate without bound; readers must agree on a valid bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = coffer_fuzz::harness::bundle_reader(data);
});
