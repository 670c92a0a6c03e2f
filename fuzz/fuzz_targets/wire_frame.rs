//! The data path's frame decoder (`srediag_plugin_sdk::wire::decode`): whatever a plugin writes
//! into a frame, verification and decoding never panic, never read out of bounds, and whatever
//! decodes encodes again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    srediag_plugin_sdk::wire::fuzz_one(data);
});
