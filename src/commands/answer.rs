//! A command step's HTTP answer → its IQ result (docs/contract.md §13.2):
//! `{"command": {status?, note?, actions?, form?}}`, or just `{"body": …}`
//! (a note), or nothing usable (completed). A key of the wrong type
//! refuses the whole answer, naming the key.

use serde_json::{Map, Value};

use super::{Action, Settled, Step, XMLNS};
use crate::conversion::{error_text, json_object, Envelope, HttpAnswer, ReplyError};
use crate::forms::{self, FieldTypes};
use crate::json;
use crate::xml::Element;

const STATUSES: [&str; 3] = ["executing", "completed", "canceled"];
const NOTE_TYPES: [&str; 3] = ["info", "warn", "error"];
const NEXT_ACTIONS: [&str; 3] = ["next", "prev", "complete"];

fn invalid(key: &str, why: &str) -> ReplyError {
    ReplyError::Invalid(format!("'{key}' {why}"))
}

/// The IQ result that answers `step` (sent as `envelope`), and what it does
/// to the session; or why the answer cannot be used.
pub fn answer(
    envelope: &Envelope,
    step: &Step,
    answer: &HttpAnswer,
) -> Result<(Element, Settled), ReplyError> {
    if !(200..300).contains(&answer.status) {
        return Err(ReplyError::Status {
            status: answer.status,
            text: error_text(answer.content_type.as_deref(), &answer.body),
        });
    }
    let object = json_object(answer)?.unwrap_or_default();
    let command = match object.get("command") {
        None | Some(Value::Null) => &Map::new(),
        Some(Value::Object(command)) => command,
        Some(_) => return Err(invalid("command", "must be an object")),
    };
    let form = match command.get("form").filter(|v| !v.is_null()) {
        None => None,
        Some(form) => Some(
            forms::from_json(form, "command.form")
                .map_err(|e| ReplyError::Invalid(e.to_string()))?,
        ),
    };
    let status = match command.get("status").filter(|v| !v.is_null()) {
        Some(status) => one_of(status, "command.status", &STATUSES)?,
        None if form.as_ref().and_then(|x| x.attr("type")) == Some("form") => "executing",
        None => "completed",
    };
    // A cancel is canceled, whatever the service says (XEP-0050 §3.4.5).
    let status = if step.action == Action::Cancel {
        "canceled"
    } else {
        status
    };
    let actions = actions(command.get("actions"))?;
    let note = match (
        command.get("note").filter(|v| !v.is_null()),
        object.get("body"),
    ) {
        (Some(note), _) => Some(note_of(note)?),
        (None, None | Some(Value::Null)) => None,
        (None, Some(Value::String(body))) => Some(("info", body.as_str())),
        (None, Some(_)) => return Err(invalid("body", "must be a string")),
    };
    let mut element = Element::new("command")
        .with_attr("xmlns", XMLNS)
        .with_attr("node", step.node.as_str())
        .with_attr("sessionid", step.sessionid.as_str())
        .with_attr("status", status);
    // Children in XEP-0050's order: actions, note, the form.
    if let Some(actions) = actions.filter(|_| status == "executing") {
        element = element.with_child(actions);
    }
    if let Some((kind, text)) = note {
        element = element.with_child(Element::new("note").with_attr("type", kind).with_text(text));
    }
    let settled = if status == "executing" {
        Settled::Keep {
            sessionid: step.sessionid.clone(),
            sent: form.as_ref().map(FieldTypes::of),
        }
    } else {
        Settled::Close(step.sessionid.clone())
    };
    if let Some(form) = form {
        element = element.with_child(form);
    }
    let result = envelope.iq_result().with_child(element);
    // JSON strings may hold what XML cannot (a NUL, say).
    result
        .check()
        .map_err(|e| ReplyError::Invalid(e.to_string()))?;
    Ok((result, settled))
}

/// `note`: a string (an `info` note), or `{"type"?, "text"}`.
fn note_of(note: &Value) -> Result<(&'static str, &str), ReplyError> {
    match note {
        Value::String(text) => Ok(("info", text)),
        Value::Object(note) => {
            let kind = match note.get("type").filter(|v| !v.is_null()) {
                None => "info",
                Some(kind) => one_of(kind, "command.note.type", &NOTE_TYPES)?,
            };
            match note.get("text") {
                Some(Value::String(text)) => Ok((kind, text)),
                _ => Err(invalid("command.note.text", "must be a string")),
            }
        }
        _ => Err(invalid(
            "command.note",
            "must be a string or {\"type\", \"text\"}",
        )),
    }
}

/// `actions`: `{"execute"?: "next"|"prev"|"complete", "prev"?, "next"?,
/// "complete"?: true|false}` → `<actions/>`, its children in XEP-0050's order.
fn actions(actions: Option<&Value>) -> Result<Option<Element>, ReplyError> {
    let actions = match actions.filter(|v| !v.is_null()) {
        None => return Ok(None),
        Some(Value::Object(actions)) => actions,
        Some(_) => return Err(invalid("command.actions", "must be an object")),
    };
    let mut element = Element::new("actions");
    if let Some(execute) = actions.get("execute").filter(|v| !v.is_null()) {
        element.set_attr(
            "execute",
            one_of(execute, "command.actions.execute", &NEXT_ACTIONS)?,
        );
    }
    for action in ["prev", "next", "complete"] {
        match actions.get(action) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => element = element.with_child(Element::new(action)),
            Some(_) => {
                return Err(invalid(
                    &format!("command.actions.{action}"),
                    "must be true or false",
                ))
            }
        }
    }
    Ok(Some(element))
}

fn one_of(value: &Value, key: &str, words: &[&'static str]) -> Result<&'static str, ReplyError> {
    json::word(value, words).ok_or_else(|| invalid(key, &json::one_of(words)))
}
