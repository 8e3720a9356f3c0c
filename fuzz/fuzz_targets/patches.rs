//! The patch engines (JSON patch, merge patch, strategic merge patch with each built-in
//! kind's schema): never panic, whatever the document and the patch.
//!
//! Input: one selector byte, then the document and the patch separated by a NUL byte (a
//! document that is not JSON is replaced by a fixed object).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use syncsets_machinery::builtin;
use syncsets_machinery::patch::{StrategicSchemas, json_patch, merge_patch, strategic_merge_patch};
use syncsets_machinery::registry::Registry;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);
static KINDS: LazyLock<Vec<std::sync::Arc<syncsets_machinery::registry::KindInfo>>> =
    LazyLock::new(builtin::kinds);

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (doc, patch) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let doc: Value = serde_json::from_slice(doc).unwrap_or_else(|_| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "a", "labels": {"x": "y"}, "finalizers": ["f"]},
               "data": {"k": "v"}, "rules": [{"verbs": ["get"], "resources": ["pods"]}]})
    });
    match which % 3 {
        0 => drop(json_patch(&doc, patch)),
        1 => drop(merge_patch(&doc, patch)),
        _ => {
            let kind = &KINDS[usize::from(which / 3) % KINDS.len()];
            let schemas = StrategicSchemas {
                root: &kind.schema,
                meta: REGISTRY.meta_schema(),
                lists: kind.strategic_merge,
            };
            drop(strategic_merge_patch(&doc, patch, schemas));
        }
    }
});
