//! Push body (JSON or raw XML) → the stanza the component sends: no panic;
//! it is from the component's domain, has a `to` and an id, and parses again.
#![no_main]

use component_http::push;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let [pick, body @ ..] = data else {
        return;
    };
    let content_type = if pick % 2 == 0 {
        "application/json"
    } else {
        "application/xmpp+xml"
    };
    if let Ok(stanza) = push::stanza(common::HOST, Some(content_type), body) {
        common::from_the_component(&stanza);
        assert!(
            stanza.attr("to").is_some_and(|to| !to.is_empty()),
            "a push names its recipient"
        );
        assert!(stanza.attr("id").is_some(), "a pushed stanza has an id");
        common::reparses(&stanza);
    }
});
