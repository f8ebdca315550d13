//! Menus (docs/contract.md §13), the two ways bytes come in:
//! - first byte even: the web service's answer to a command step (status,
//!   content type, body) → the command's result: no panic; a result is one
//!   IQ result with the step's id, from the component, that parses again,
//!   holding one <command/> with the step's node and session and a status
//!   of XEP-0050's (canceled for a cancel), and the session is closed
//!   exactly when the status is not executing;
//! - first byte odd: a data form from a client (XML) → JSON and back: no
//!   panic; `data` names only fields the form has; JSON that can be written
//!   once is written the same way again (a fixpoint after one round).
#![no_main]

use component_http::commands::{self, Action, Settled, Step};
use component_http::conversion::{Envelope, HttpAnswer};
use component_http::forms::{self, FieldTypes};
use component_http::xml::{self, Element};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const STATUSES: [u16; 6] = [200, 200, 200, 204, 400, 503];
const TYPES: [Option<&str>; 3] = [Some("application/json"), Some("text/plain"), None];
const ACTIONS: [Action; 5] = [
    Action::Execute,
    Action::Next,
    Action::Prev,
    Action::Complete,
    Action::Cancel,
];

fn answer(pick: u8, status: u8, body: &[u8]) {
    let action = ACTIONS[pick as usize / 2 % ACTIONS.len()];
    let stanza = Element::new("iq")
        .with_attr("to", format!("echo@{}", common::HOST))
        .with_attr("from", "user@localhost/res")
        .with_attr("type", "set")
        .with_attr("id", "step-1");
    let envelope = Envelope::of(&stanza).expect("a well-addressed stanza");
    let step = Step {
        node: "weather".into(),
        sessionid: "s1".into(),
        action,
        json: serde_json::Value::Null,
    };
    let answer = HttpAnswer {
        status: STATUSES[status as usize % STATUSES.len()],
        content_type: TYPES[status as usize / 8 % TYPES.len()].map(str::to_owned),
        retry_after: None,
        body: body.to_vec(),
    };
    let Ok((result, settled)) = commands::answer(&envelope, &step, &answer) else {
        return;
    };
    common::from_the_component(&result);
    common::reparses(&result);
    assert_eq!(
        (result.attr("type"), result.attr("id")),
        (Some("result"), Some("step-1"))
    );
    let command: Vec<&Element> = result.elements().collect();
    assert_eq!(command.len(), 1, "one <command/>");
    let command = command[0];
    assert_eq!(
        (command.attr("node"), command.attr("sessionid")),
        (Some("weather"), Some("s1"))
    );
    let status = command.attr("status").unwrap_or_default();
    assert!(["executing", "completed", "canceled"].contains(&status));
    if action == Action::Cancel {
        assert_eq!(status, "canceled");
    }
    assert_eq!(
        matches!(settled, Settled::Close(_)),
        status != "executing",
        "{settled:?} for {status}"
    );
}

fn form(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(x) = xml::parse(text) else {
        return;
    };
    let json = forms::to_json(&x);
    let data = forms::data(&x, &FieldTypes::of(&x));
    let vars: Vec<&str> = x.elements().filter_map(|f| f.attr("var")).collect();
    assert!(data.keys().all(|k| vars.contains(&k.as_str())));
    let Ok(written) = forms::from_json(&json, "form") else {
        return;
    };
    common::reparses(&written);
    let once = forms::to_json(&written);
    let again = forms::from_json(&once, "form").expect("what was written once is written again");
    assert_eq!(forms::to_json(&again), once, "a round more changes nothing");
}

fuzz_target!(|data: &[u8]| {
    let [pick, status, rest @ ..] = data else {
        return;
    };
    if pick % 2 == 0 {
        answer(*pick, *status, rest);
    } else {
        form(&data[1..]);
    }
});
