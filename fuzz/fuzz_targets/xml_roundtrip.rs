//! The XML parser and serialiser: parse ∘ serialise is the identity on
//! whatever the parser accepts, and nothing panics.
#![no_main]

use component_http::xml;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(element) = xml::parse(text) {
        // What the parser accepts comes back the same through serialising.
        let xml = element.to_xml();
        let again = xml::parse(&xml).unwrap_or_else(|e| panic!("{xml:?} does not re-parse: {e}"));
        assert_eq!(again, element, "{xml:?} re-parses to another element");
        common::reparses(&element);
    }
});
