//! A reply's JSON object, with the structured keys of docs/contract.md §4.1
//! (chat states, reactions, files, rooms, ...) → the reply stanza: no panic;
//! a stanza or a ReplyError; what is built parses again.
#![no_main]

use component_http::conversion::{stanza_from_object, Envelope};
use component_http::xml::Element;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let [pick, json @ ..] = data else {
        return;
    };
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(json) else {
        return;
    };
    let name = ["message", "presence", "iq"][*pick as usize % 3];
    let stanza = Element::new(name)
        .with_attr("to", format!("echo@{}", common::HOST))
        .with_attr("from", "user@localhost/res")
        .with_attr("id", "req-1");
    let envelope = Envelope::of(&stanza).expect("a well-addressed stanza");
    if let Ok(reply) = stanza_from_object(&envelope, &object) {
        common::reparses(&reply);
    }
});
