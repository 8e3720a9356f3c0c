//! Body decoding (JSON and YAML): never panic, and nesting is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncsets_machinery::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::json(data);
    let _ = decode::yaml(data);
});
