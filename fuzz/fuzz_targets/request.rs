//! Stanza → request JSON (docs/contract.md §3): any stanza the parser
//! accepts gives valid JSON or a ConversionError, and the JSON's `stanza`
//! is the stanza's XML, which parses again.
#![no_main]

use component_http::{conversion, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(stanza) = xml::parse(text) else {
        return;
    };
    if let Ok(request) = conversion::request(&stanza) {
        let json: serde_json::Value =
            serde_json::from_str(&request.json).expect("the request is valid JSON");
        assert!(json.is_object());
        assert_eq!(
            json["stanza"].as_str(),
            Some(request.xml.as_str()),
            "it carries the stanza"
        );
        xml::parse(&request.xml).expect("the carried stanza parses");
    }
});
