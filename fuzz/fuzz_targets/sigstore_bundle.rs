//! Sigstore bundle JSON against a fixed trusted root: no panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    srediag::plugins::trust::sigstore::fuzz_one(data);
});
