//! Splicing a resourceVersion into stored JSON text without parsing it: never panic on any
//! text, and for every valid JSON object with a metadata object (what the store holds:
//! serde_json's output) the result is that object with `metadata.resourceVersion` set,
//! exactly as serde_json would make it. (Text that is not JSON is not validated: the
//! splice stops reading once it has found `metadata`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use syncsets_store::rawjson::with_resource_version;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spliced = with_resource_version(text, 42);
    let Ok(mut want) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let has_metadata = want.get("metadata").is_some_and(Value::is_object);
    let Some(spliced) = spliced else {
        assert!(!has_metadata, "refused an object with metadata: {text:?}");
        return;
    };
    assert!(has_metadata, "accepted an object without metadata: {text:?}");
    want["metadata"]["resourceVersion"] = Value::String("42".into());
    let got: Value = serde_json::from_str(&spliced).expect("the spliced text is JSON");
    assert_eq!(got, want);
});
