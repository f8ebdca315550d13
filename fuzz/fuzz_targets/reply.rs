//! HTTP answer (status, content type, body) → the outcome the sender gets:
//! no panic; every stanza sent is from the component's domain and parses
//! again; an IQ request gets exactly one answer, with its id; a stanza
//! that must not be answered (an error) gets none.
#![no_main]

use component_http::conversion::{Envelope, HttpAnswer};
use component_http::delivery::decide;
use component_http::xml::Element;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const STATUSES: [u16; 8] = [200, 200, 200, 202, 204, 400, 503, 302];
const TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

fn request(pick: u8) -> Element {
    let (name, kind) = match pick % 5 {
        0 => ("message", "chat"),
        1 => ("iq", "get"),
        2 => ("iq", "set"),
        3 => ("presence", "subscribe"),
        _ => ("message", "error"),
    };
    Element::new(name)
        .with_attr("to", format!("echo@{}", common::HOST))
        .with_attr("from", "user@localhost/res")
        .with_attr("type", kind)
        .with_attr("id", "req-1")
}

fuzz_target!(|data: &[u8]| {
    let [pick, status, content_type, body @ ..] = data else {
        return;
    };
    let stanza = request(*pick);
    let envelope = Envelope::of(&stanza).expect("a well-addressed stanza");
    let answer = HttpAnswer {
        status: STATUSES[*status as usize % STATUSES.len()],
        content_type: TYPES[*content_type as usize % TYPES.len()].map(str::to_owned),
        retry_after: None,
        body: body.to_vec(),
    };
    let outcome = decide(&envelope, common::HOST, Ok(answer));
    for sent in &outcome.stanzas {
        common::from_the_component(sent);
        common::reparses(sent);
    }
    if !envelope.may_be_answered() {
        assert!(outcome.stanzas.is_empty(), "an error is never answered");
    }
    if envelope.is_iq_request() {
        let answers: Vec<&Element> = outcome.stanzas.iter().filter(|s| s.name == "iq").collect();
        assert_eq!(
            answers.len(),
            1,
            "exactly one answer to an IQ: {:?}",
            outcome.stanzas
        );
        assert_eq!(answers[0].attr("id"), Some("req-1"));
        assert!(matches!(answers[0].attr("type"), Some("result" | "error")));
    }
});
