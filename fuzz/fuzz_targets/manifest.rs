//! `manifest.yaml` parser: no panic, bounded work, and whatever parses is valid and signs
//! deterministically (see `srediag::plugins::trust::manifest::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    srediag::plugins::trust::manifest::fuzz_one(data);
});
