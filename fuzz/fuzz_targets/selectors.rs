//! Label and field selector parsers: never panic, and a parsed label selector printed and
//! parsed again is the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncsets_types::Selector;
use syncsets_types::fields::FieldSelector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = Selector::parse(text) {
        let printed = selector.to_string();
        let again = Selector::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e:?}"));
        assert_eq!(again.to_string(), printed, "{text:?}");
    }
    let _ = FieldSelector::parse(text);
});
