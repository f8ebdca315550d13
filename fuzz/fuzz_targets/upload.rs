//! Files (docs/contract.md §14), what comes in from outside:
//! - first byte even: a `file` key (JSON) → the file: no panic; one read
//!   is never larger than the limit, and has a name without a path and a
//!   media type;
//! - first byte odd: an upload service's answer to a slot request (XML) →
//!   the slot: no panic; its URLs are http(s) and its PUT headers only
//!   those XEP-0363 allows, without line breaks.
#![no_main]

use component_http::upload::{file, slot};
use component_http::xml;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let [pick, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if pick % 2 == 0 {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        if let Ok(file) = file::from_json(&value, MAX) {
            assert!(!file.data.is_empty() && file.data.len() <= MAX);
            assert!(!file.name.contains(['/', '\\']) && file.name != "..");
            assert!(file.content_type.contains('/'));
        }
    } else if let Ok(answer) = xml::parse(text) {
        if let Ok(slot) = slot::read(&answer) {
            for url in [&slot.put, &slot.get] {
                let lower = url.to_ascii_lowercase();
                assert!(
                    lower.starts_with("http://") || lower.starts_with("https://"),
                    "{url}"
                );
            }
            for (name, value) in &slot.headers {
                assert!(
                    ["authorization", "cookie", "expires"].contains(&name.as_str()),
                    "{name}"
                );
                assert!(!value.contains(['\r', '\n']));
            }
        }
    }
});
