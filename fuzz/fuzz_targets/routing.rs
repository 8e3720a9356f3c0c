//! Request routing (path and query, parsed once for every layer): never panic, and what
//! authorization checks is what the handlers serve.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncsets_api::request::{Parsed, Route};

fuzz_target!(|data: (u8, &str)| {
    let (method, target) = data;
    let method = match method % 6 {
        0 => axum::http::Method::GET,
        1 => axum::http::Method::POST,
        2 => axum::http::Method::PUT,
        3 => axum::http::Method::PATCH,
        4 => axum::http::Method::DELETE,
        _ => axum::http::Method::OPTIONS,
    };
    let Ok(uri) = target.parse::<axum::http::Uri>() else {
        return;
    };
    let parsed = Parsed::new(&method, &uri);
    let attrs = &parsed.attributes;
    match &parsed.route {
        Ok(Route::Resource(info)) if attrs.path.is_none() => {
            assert_eq!(attrs.api_group, info.group);
            assert_eq!(attrs.resource, info.resource);
            assert_eq!(attrs.subresource, info.subresource.clone().unwrap_or_default());
            if let Some(ns) = &info.namespace {
                assert_eq!(&attrs.namespace, ns);
            }
            if let Some(name) = &info.name {
                assert_eq!(&attrs.name, name);
            }
        }
        // Anything else is a non-resource request to authorization: checked by its path.
        _ => assert!(attrs.path.is_some()),
    }
});
