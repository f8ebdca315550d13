//! Push body (JSON or raw XML) → the stanza the component sends: no panic;
//! it is from the component's domain, has a prepared `to` elsewhere and an
//! id, and parses again.
#![no_main]

use component_http::{jid, push};
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
        let to = stanza.attr("to").unwrap_or_default();
        assert_eq!(jid::prep(to).as_deref(), Some(to), "'to' is prepared");
        assert!(
            !jid::host(to).eq_ignore_ascii_case(common::HOST),
            "never to itself"
        );
        common::reparses(&stanza);
    }
});
