//! An HTTP answer → the reply it asks for (docs/contract.md §4, §6), or
//! why it cannot be used. The JSON contract only: how a failed delivery is
//! answered is decided in `delivery::outcome`.

use serde_json::{Map, Value};
use thiserror::Error;

use super::address::{self, AddressError};
use super::compose::{self, KeyError};
use super::envelope::{Envelope, Kind};
use crate::jid;
use crate::stanza_error::{self, ErrorType, StanzaError};
use crate::xml::{self, Element, Node};

/// At most this much of an error body is shown to the sender.
const MAX_ERROR_TEXT: usize = 200;

/// An HTTP answer, as far as this module cares.
#[derive(Debug, Clone, Default)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    /// From a `Retry-After` header, for retries.
    pub retry_after: Option<std::time::Duration>,
    pub body: Vec<u8>,
}

/// Why an HTTP answer gives no usable reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// Not a 2xx: the status, and a short text for the sender from the body.
    #[error("HTTP {status}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Status { status: u16, text: Option<String> },
    #[error("invalid reply: {0}")]
    Invalid(String),
    #[error("reply refused: its from '{0}' is not at this component's domain")]
    ForeignFrom(String),
}

impl ReplyError {
    /// What the sender is told (docs/contract.md §5).
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            ReplyError::Status { status, text } => {
                let mut error = stanza_error::for_status(*status);
                if text.is_some() {
                    error.text.clone_from(text);
                }
                error
            }
            ReplyError::Invalid(_) | ReplyError::ForeignFrom(_) => {
                StanzaError::new(ErrorType::Cancel, "internal-server-error")
                    .with_text(format!("the bot's web service failed: {self}"))
            }
        }
    }
}

/// the request's id (docs/contract.md §6).
pub fn reply_for(
    envelope: &Envelope,
    host: &str,
    answer: &HttpAnswer,
) -> Result<Option<Element>, ReplyError> {
    if !(200..300).contains(&answer.status) {
        return Err(ReplyError::Status {
            status: answer.status,
            text: error_text(answer.content_type.as_deref(), &answer.body),
        });
    }
    let Some(object) = json_object(answer)? else {
        return Ok(None);
    };
    let mut reply = stanza_from_object(envelope, &object)?;
    address::prepare(&mut reply, host).map_err(|e| match e {
        AddressError::Foreign(from) => ReplyError::ForeignFrom(from),
        other => ReplyError::Invalid(other.to_string()),
    })?;
    if envelope.is_iq_request() && reply.name == "iq" {
        match &envelope.id {
            Some(id) => reply.set_attr("id", id.as_str()),
            None => reply.remove_attr("id"),
        }
        match reply.attr("type") {
            None => reply.set_attr("type", "result"),
            Some("result" | "error") => {}
            // A get or set with the request's id would answer nothing.
            Some(other) => {
                return Err(ReplyError::Invalid(format!(
                    "an answer to an IQ must be of type result or error, not {other:?}"
                )))
            }
        }
    }
    Ok(Some(reply))
}

/// A 2xx answer's JSON object, or `None` when it has none to use (not 200,
/// not JSON, blank, `null`, `{}`); JSON that is not an object is invalid.
pub fn json_object(answer: &HttpAnswer) -> Result<Option<Map<String, Value>>, ReplyError> {
    if answer.status != 200
        || !is_json(answer.content_type.as_deref())
        || answer.body.iter().all(u8::is_ascii_whitespace)
    {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| ReplyError::Invalid(format!("not valid JSON: {e}")))?;
    match value {
        Value::Null => Ok(None),
        Value::Object(object) if object.is_empty() => Ok(None),
        Value::Object(object) => Ok(Some(object)),
        other => Err(ReplyError::Invalid(format!(
            "expected a JSON object, got {}",
            json_type_name(&other)
        ))),
    }
}

/// The stanza a JSON object of the §4 shape describes, defaults taken from
/// `envelope` (to ← its from, from ← its to): the XML of `stanza` when
/// given, else built from the fields.
pub fn stanza_from_object(
    envelope: &Envelope,
    object: &Map<String, Value>,
) -> Result<Element, ReplyError> {
    let stanza = match object.get("stanza") {
        Some(stanza) => reply_from_xml(envelope, stanza)?,
        None => reply_from_fields(envelope, object)?,
    };
    // JSON strings may hold what XML cannot (a NUL, say): refused here, or
    // the recipient's parser would close its stream.
    stanza
        .check()
        .map_err(|e| ReplyError::Invalid(e.to_string()))?;
    Ok(stanza)
}

fn invalid(field: &str, why: &str) -> ReplyError {
    ReplyError::Invalid(format!("'{field}' {why}"))
}

/// `stanza` given: sent as it is; only a missing to/from is filled in.
fn reply_from_xml(envelope: &Envelope, stanza: &Value) -> Result<Element, ReplyError> {
    let xml = stanza
        .as_str()
        .ok_or_else(|| invalid("stanza", "must be a string of XML"))?;
    let mut reply = xml::parse(xml).map_err(|e| invalid("stanza", &format!("is {e}")))?;
    if Kind::parse(&reply.name).is_none() {
        return Err(invalid("stanza", "must be a message, presence or iq"));
    }
    if reply.attr("to").is_none() {
        reply.set_attr("to", envelope.from.as_str());
    }
    if reply.attr("from").is_none() {
        reply.set_attr("from", envelope.to.as_str());
    }
    Ok(reply)
}

/// The JSON fields with their defaults.
fn reply_from_fields(
    envelope: &Envelope,
    object: &Map<String, Value>,
) -> Result<Element, ReplyError> {
    let field = |name: &str| text_field(object, name);
    let kind = match field("kind")? {
        None => Kind::Message,
        Some(kind) => {
            Kind::parse(&kind).ok_or_else(|| invalid("kind", "must be message, presence or iq"))?
        }
    };
    let to_groupchat = kind == Kind::Message
        && envelope.kind == Kind::Message
        && envelope.stanza_type.as_deref() == Some("groupchat");
    let default_to = if to_groupchat {
        jid::bare(&envelope.from).to_owned()
    } else {
        envelope.from.clone()
    };
    let default_type = match kind {
        Kind::Message if to_groupchat => Some("groupchat"),
        Kind::Message => Some("chat"),
        Kind::Iq => Some("result"),
        Kind::Presence => None,
    };
    let mut reply = Element::new(kind.as_str())
        .with_attr("to", field("to")?.unwrap_or(default_to))
        .with_attr(
            "from",
            field("from")?.unwrap_or_else(|| envelope.to.clone()),
        );
    if let Some(t) = field("type")?.or(default_type.map(str::to_owned)) {
        reply.set_attr("type", t);
    }
    if let Some(id) = field("id")? {
        reply.set_attr("id", id);
    } else if kind == Kind::Iq {
        if let Some(id) = &envelope.id {
            reply.set_attr("id", id.as_str());
        }
    }
    if let Some(body) = field("body")? {
        reply = reply.with_child(Element::new("body").with_text(body));
    }
    let children =
        compose::children(kind, object).map_err(|KeyError(why)| ReplyError::Invalid(why))?;
    reply
        .children
        .extend(children.into_iter().map(Node::Element));
    Ok(reply)
}

/// A string field; numbers and booleans become their text, null is absent.
fn text_field(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ReplyError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `application/json`, with or without parameters (docs/contract.md §4, §8.3).
pub fn is_json(content_type: Option<&str>) -> bool {
    is_media_type(content_type, "application/json")
}

/// Whether a `Content-Type` is of media type `expected` (lower case),
/// whatever its parameters and case.
pub fn is_media_type(content_type: Option<&str>, expected: &str) -> bool {
    media_type(content_type).is_some_and(|m| m.eq_ignore_ascii_case(expected))
}

fn media_type(content_type: Option<&str>) -> Option<&str> {
    content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim())
}

/// A short text for the sender from an error response: a JSON `error`,
/// `text` or `message` field, or the start of a plain-text body.
pub fn error_text(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let text = if is_json(content_type) {
        let value: Value = serde_json::from_slice(body).ok()?;
        ["error", "text", "message"]
            .iter()
            .find_map(|key| value.get(key)?.as_str().map(str::to_owned))?
    } else if media_type(content_type).is_none_or(|m| m.eq_ignore_ascii_case("text/plain")) {
        String::from_utf8_lossy(body).into_owned()
    } else {
        return None;
    };
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversion::examples::{answer, envelope, json_answer, message};
    use crate::stanza_error::ErrorType;
    use serde_json::json;

    const HOST: &str = "bot.localhost";

    fn reply(stanza: &Element, answer: HttpAnswer) -> Result<Option<Element>, ReplyError> {
        reply_for(&envelope(stanza), HOST, &answer)
    }

    // Found by fuzz/fuzz_targets/reply.rs: a get or set "answer" with the
    // request's id answered nothing.
    #[test]
    fn an_iq_answer_must_be_a_result_or_an_error() {
        let iq = crate::conversion::examples::iq("get");
        for kind in ["get", "set"] {
            let answer = json_answer(json!({"kind": "iq", "type": kind}));
            assert!(
                matches!(reply(&iq, answer), Err(ReplyError::Invalid(why)) if why.contains("result or error"))
            );
        }
        let answer = json_answer(json!({"kind": "iq", "type": "error"}));
        assert_eq!(
            reply(&iq, answer).unwrap().unwrap().attr("type"),
            Some("error")
        );
    }

    // Found by fuzz/fuzz_targets/json_to_stanza.rs: JSON strings can hold
    // what XML cannot, and the recipient's parser would close its stream.
    #[test]
    fn text_xml_cannot_carry_is_refused() {
        for object in [
            json!({"body": "a\u{0}b"}),
            json!({"to": "x@y\u{8}"}),
            json!({"stanza": "<message><body>&#1;</body></message>"}),
        ] {
            assert!(matches!(
                reply(&message("x"), json_answer(object)),
                Err(ReplyError::Invalid(_))
            ));
        }
    }

    #[test]
    fn body_reply_swaps_to_and_from_and_defaults_to_chat() {
        let r = reply(
            &message("x"),
            json_answer(json!({"body": "Did you say x?"})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.to_xml(),
            "<message to='user@localhost/res' from='echo@bot.localhost' type='chat'><body>Did you say x?</body></message>"
        );
    }

    #[test]
    fn numbers_and_booleans_become_text() {
        let r = reply(&message("x"), json_answer(json!({"body": 42})))
            .unwrap()
            .unwrap();
        assert_eq!(r.child("body", None).unwrap().text(), "42");
        let r = reply(&message("x"), json_answer(json!({"body": true})))
            .unwrap()
            .unwrap();
        assert_eq!(r.child("body", None).unwrap().text(), "true");
    }

    #[test]
    fn explicit_fields_win() {
        let r = reply(
            &message("x"),
            json_answer(
                json!({"to": "other@localhost", "from": "alias@bot.localhost",
                               "type": "normal", "id": "r1", "kind": "message"}),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.to_xml(),
            "<message to='other@localhost' from='alias@bot.localhost' type='normal' id='r1'/>"
        );
    }

    #[test]
    fn groupchat_reply_goes_to_the_room() {
        let mut m = message("x");
        m.set_attr("type", "groupchat");
        m.set_attr("from", "room@conference.localhost/nick");
        let r = reply(&m, json_answer(json!({"body": "hello"})))
            .unwrap()
            .unwrap();
        assert_eq!(r.attr("to"), Some("room@conference.localhost"));
        assert_eq!(r.attr("type"), Some("groupchat"));
    }

    #[test]
    fn presence_reply_has_no_default_type() {
        let r = reply(&message("x"), json_answer(json!({"kind": "presence"})))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.to_xml(),
            "<presence to='user@localhost/res' from='echo@bot.localhost'/>"
        );
    }

    #[test]
    fn stanza_is_sent_as_is_with_only_missing_addresses_filled() {
        let r = reply(
            &message("x"),
            json_answer(json!({"body": "ignored",
                "stanza": "<message xmlns='jabber:client' type='headline'><body>raw</body></message>"})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.to_xml(),
            "<message type='headline' to='user@localhost/res' from='echo@bot.localhost'><body>raw</body></message>"
        );
        let r = reply(
            &message("x"),
            json_answer(json!({"stanza": "<message to='a@b' from='x@bot.localhost/r'/>"})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.to_xml(), "<message to='a@b' from='x@bot.localhost/r'/>");
    }

    #[test]
    fn no_reply_cases() {
        let m = message("x");
        for a in [
            json_answer(json!({})),
            json_answer(Value::Null),
            answer(200, Some("application/json"), ""),
            answer(200, Some("application/json"), "  \n"),
            answer(200, Some("text/plain"), "{\"body\": \"x\"}"),
            answer(200, None, "{\"body\": \"x\"}"),
            answer(201, Some("application/json"), "{\"body\": \"x\"}"),
            answer(202, Some("application/json"), "{\"body\": \"x\"}"),
            answer(204, None, ""),
        ] {
            assert_eq!(reply(&m, a.clone()).unwrap(), None, "{a:?}");
        }
    }

    #[test]
    fn json_content_type_with_parameters_is_json() {
        let a = answer(
            200,
            Some("Application/JSON; charset=utf-8"),
            "{\"body\": \"y\"}",
        );
        assert!(reply(&message("x"), a).unwrap().is_some());
    }

    #[test]
    fn invalid_replies_are_errors_with_a_reason() {
        let m = message("x");
        let cases = [
            (
                answer(200, Some("application/json"), "{nope"),
                "not valid JSON",
            ),
            (json_answer(json!([1, 2])), "an array"),
            (json_answer(json!("text")), "a string"),
            (
                json_answer(json!({"stanza": "<message><body></message>"})),
                "'stanza' is not well-formed",
            ),
            (
                json_answer(json!({"stanza": 5})),
                "'stanza' must be a string",
            ),
            (
                json_answer(json!({"stanza": "<foo/>"})),
                "must be a message, presence or iq",
            ),
            (json_answer(json!({"kind": "nonsense"})), "'kind'"),
            (
                json_answer(json!({"body": {"a": 1}})),
                "'body' must be a string",
            ),
        ];
        for (a, why) in cases {
            match reply(&m, a) {
                Err(ReplyError::Invalid(reason)) => {
                    assert!(reason.contains(why), "{reason} lacks {why}")
                }
                other => panic!("expected invalid reply ({why}), got {other:?}"),
            }
        }
    }

    #[test]
    fn structured_keys_build_the_reply_and_a_wrong_one_refuses_it_all() {
        let r = reply(
            &message("x"),
            json_answer(
                json!({"body": "here", "oob": {"url": "https://x/a.png"}, "state": "active"}),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.to_xml(),
            "<message to='user@localhost/res' from='echo@bot.localhost' type='chat'><body>here</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/>\
             <x xmlns='jabber:x:oob'><url>https://x/a.png</url></x></message>"
        );
        let r = reply(&message("x"), json_answer(json!({"state": "composing"})))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.to_xml(),
            "<message to='user@localhost/res' from='echo@bot.localhost' type='chat'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
        match reply(&message("x"), json_answer(json!({"body": "b", "oob": 5}))) {
            Err(ReplyError::Invalid(why)) => assert!(why.starts_with("'oob' must be"), "{why}"),
            other => panic!("expected the oob key refused, got {other:?}"),
        }
    }

    #[test]
    fn reply_from_outside_the_domain_is_refused() {
        for a in [
            json_answer(json!({"body": "x", "from": "admin@localhost"})),
            json_answer(json!({"stanza": "<message from='evil.example' to='u@localhost'/>"})),
            json_answer(json!({"body": "x", "from": "u@sub.bot.localhost"})),
        ] {
            assert!(matches!(
                reply(&message("x"), a),
                Err(ReplyError::ForeignFrom(_))
            ));
        }
        let ok = json_answer(json!({"body": "x", "from": "BOT.localhost/r"}));
        assert!(reply(&message("x"), ok).unwrap().is_some());
    }

    #[test]
    fn http_errors_carry_a_short_text() {
        let err = reply(
            &message("x"),
            answer(
                503,
                Some("application/json"),
                "{\"error\": \"down for maintenance\"}",
            ),
        )
        .unwrap_err();
        let stanza_error = err.stanza_error();
        assert_eq!(stanza_error.kind, ErrorType::Wait);
        assert_eq!(stanza_error.condition, "remote-server-timeout");
        assert_eq!(stanza_error.text.as_deref(), Some("down for maintenance"));

        assert_eq!(
            error_text(Some("text/plain; charset=utf-8"), b"  nope \n"),
            Some("nope".into())
        );
        assert_eq!(error_text(Some("text/html"), b"<html>"), None);
        assert_eq!(
            error_text(Some("application/json"), b"{\"message\": \"m\"}"),
            Some("m".into())
        );
        let long = "é".repeat(500);
        let cut = error_text(None, long.as_bytes()).unwrap();
        assert_eq!(cut.chars().count(), MAX_ERROR_TEXT + 1);
        // The table's own text stays when the body has none.
        let err = reply(&message("x"), answer(502, None, "")).unwrap_err();
        assert_eq!(err.stanza_error().text.as_deref(), Some("Bad gateway"));
    }
}
