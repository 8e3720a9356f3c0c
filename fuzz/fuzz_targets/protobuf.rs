//! Kubernetes protobuf bodies (the decoder driven by upstream's layout table): never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = syncsets_machinery::protobuf::decode(data);
});
