//! Stanza → request JSON (docs/contract.md §3) and HTTP answer → what the sender gets
//! (docs/contract.md §4–§6).

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::errors::{status_class, DeliveryError, LogLevel};
use crate::jid;
use crate::xml::{self, Element};

/// At most this much of an error body is shown to the sender.
const MAX_ERROR_TEXT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConversionError {
    #[error("not a stanza: <{0}>")]
    NotAStanza(String),
    #[error("stanza has no '{0}' attribute")]
    MissingAttribute(&'static str),
}

/// What an answer needs to know of the stanza it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub to: String,
    pub from: String,
    pub id: Option<String>,
    pub stanza_type: Option<String>,
}

impl Envelope {
    pub fn of(stanza: &Element) -> Result<Envelope, ConversionError> {
        let kind = Kind::parse(&stanza.name)
            .ok_or_else(|| ConversionError::NotAStanza(stanza.name.clone()))?;
        let attr = |name: &'static str| {
            stanza
                .attr(name)
                .map(str::to_owned)
                .ok_or(ConversionError::MissingAttribute(name))
        };
        Ok(Envelope {
            kind,
            to: attr("to")?,
            from: attr("from")?,
            id: stanza.attr("id").map(str::to_owned),
            stanza_type: stanza.attr("type").map(str::to_owned),
        })
    }

    fn type_is(&self, t: &str) -> bool {
        self.stanza_type.as_deref() == Some(t)
    }

    /// An IQ get/set, which must get exactly one answer (docs/contract.md §6).
    pub fn is_iq_request(&self) -> bool {
        self.kind == Kind::Iq && (self.type_is("get") || self.type_is("set"))
    }

    /// Loop guard (docs/contract.md §5): errors and IQ results are never answered.
    pub fn may_be_answered(&self) -> bool {
        !(self.type_is("error") || (self.kind == Kind::Iq && self.type_is("result")))
    }

    /// The stanza error reply, as Prosody's `st.error_reply` builds it.
    pub fn error_reply(&self, error: &crate::errors::StanzaError) -> Element {
        self.reply_header()
            .with_attr("type", "error")
            .with_child(error.to_element())
    }

    /// An empty IQ result.
    pub fn iq_result(&self) -> Element {
        self.reply_header().with_attr("type", "result")
    }

    fn reply_header(&self) -> Element {
        let mut reply = Element::new(self.kind.as_str())
            .with_attr("to", self.from.as_str())
            .with_attr("from", self.to.as_str());
        if let Some(id) = &self.id {
            reply.set_attr("id", id.as_str());
        }
        reply
    }

    /// For logs: which stanza this was.
    pub fn describe(&self) -> String {
        format!(
            "{} id={} from {}",
            self.kind.as_str(),
            self.id.as_deref().unwrap_or("(none)"),
            self.from
        )
    }
}

/// The POST for one stanza: its envelope and the JSON body.
#[derive(Debug)]
pub struct Request {
    pub envelope: Envelope,
    pub json: String,
}

#[derive(Serialize)]
struct RequestBody<'a> {
    to: &'a str,
    from: &'a str,
    kind: &'a str,
    stanza: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    stanza_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// Builds the request for `stanza` (docs/contract.md §3).
pub fn request(stanza: &Element) -> Result<Request, ConversionError> {
    let envelope = Envelope::of(stanza)?;
    let body = match envelope.kind {
        Kind::Message => stanza.child("body", None).map(Element::text),
        _ => None,
    };
    let xml = stanza.to_xml();
    let json = serde_json::to_string(&RequestBody {
        to: &envelope.to,
        from: &envelope.from,
        kind: envelope.kind.as_str(),
        stanza: &xml,
        body: body.as_deref(),
        stanza_type: envelope.stanza_type.as_deref(),
        id: envelope.id.as_deref(),
    })
    .expect("serialising strings to JSON cannot fail");
    Ok(Request { envelope, json })
}

/// The stanza's XML inside a request body made by [`request`].
pub fn stanza_xml(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        stanza: String,
    }
    serde_json::from_str::<Body>(json)
        .ok()
        .map(|body| body.stanza)
}

/// An HTTP answer, as far as this module cares.
#[derive(Debug, Clone, Default)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    /// From a `Retry-After` header, for retries.
    pub retry_after: Option<std::time::Duration>,
    pub body: Vec<u8>,
}

/// Everything the sender gets for one stanza, and what the admin is told.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stanzas: Vec<Element>,
    pub log: Option<(LogLevel, String)>,
    /// For metrics: how the delivery ended ("2xx", "timeout", ...).
    pub label: &'static str,
    /// For metrics: seconds from submission to outcome, and retries made.
    pub seconds: Option<f64>,
    pub retries: u32,
    /// Durable delivery: what Prosody's storage must do for this stanza.
    pub storage: Option<crate::durable::Storage>,
}

/// Decides what the sender of `envelope` gets, given how its POST went.
pub fn outcome(
    envelope: &Envelope,
    host: &str,
    result: Result<HttpAnswer, DeliveryError>,
) -> Outcome {
    let answered = result
        .as_ref()
        .ok()
        .map(|answer| status_class(answer.status));
    let reply = result.and_then(|answer| reply_for(envelope, host, &answer));
    let mut outcome = Outcome {
        label: match &reply {
            Ok(_) => answered.unwrap_or("2xx"),
            Err(error) => error.label(),
        },
        ..Outcome::default()
    };
    match reply {
        Ok(reply) => {
            if !envelope.may_be_answered() {
                return outcome;
            }
            let answers_iq = reply.as_ref().is_some_and(|r| r.name == "iq");
            if let Some(reply) = reply {
                outcome.stanzas.push(reply);
            }
            if envelope.is_iq_request() && !answers_iq {
                outcome.stanzas.push(envelope.iq_result());
            }
        }
        Err(error) => {
            outcome.log = Some((
                error.log_level(),
                format!("POST for {} failed: {error}", envelope.describe()),
            ));
            if envelope.may_be_answered() {
                outcome
                    .stanzas
                    .push(envelope.error_reply(&error.stanza_error()));
            }
        }
    }
    outcome
}

/// The reply an HTTP answer asks for, if any (docs/contract.md §4), with IQ answers given
/// the request's id (docs/contract.md §6).
pub fn reply_for(
    envelope: &Envelope,
    host: &str,
    answer: &HttpAnswer,
) -> Result<Option<Element>, DeliveryError> {
    if !(200..300).contains(&answer.status) {
        return Err(DeliveryError::Status {
            status: answer.status,
            text: error_text(answer.content_type.as_deref(), &answer.body),
        });
    }
    if answer.status != 200
        || !is_json(answer.content_type.as_deref())
        || answer.body.iter().all(u8::is_ascii_whitespace)
    {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| DeliveryError::InvalidReply(format!("not valid JSON: {e}")))?;
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) if object.is_empty() => return Ok(None),
        Value::Object(object) => object,
        other => {
            return Err(DeliveryError::InvalidReply(format!(
                "expected a JSON object, got {}",
                json_type_name(&other)
            )))
        }
    };
    let mut reply = stanza_from_object(envelope, &object)?;
    let from = reply.attr("from").unwrap_or_default();
    if !jid::host(from).eq_ignore_ascii_case(host) {
        return Err(DeliveryError::ForeignFrom(from.to_owned()));
    }
    if envelope.is_iq_request() && reply.name == "iq" {
        match &envelope.id {
            Some(id) => reply.set_attr("id", id.as_str()),
            None => reply.remove_attr("id"),
        }
        if reply.attr("type").is_none() {
            reply.set_attr("type", "result");
        }
    }
    Ok(Some(reply))
}

/// The stanza a JSON object of the §4 shape describes, defaults taken from
/// `envelope` (to ← its from, from ← its to): the XML of `stanza` when
/// given, else built from the fields.
pub fn stanza_from_object(
    envelope: &Envelope,
    object: &Map<String, Value>,
) -> Result<Element, DeliveryError> {
    match object.get("stanza") {
        Some(stanza) => reply_from_xml(envelope, stanza),
        None => reply_from_fields(envelope, object),
    }
}

fn invalid(field: &str, why: &str) -> DeliveryError {
    DeliveryError::InvalidReply(format!("'{field}' {why}"))
}

/// `stanza` given: sent as it is; only a missing to/from is filled in.
fn reply_from_xml(envelope: &Envelope, stanza: &Value) -> Result<Element, DeliveryError> {
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
) -> Result<Element, DeliveryError> {
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
    Ok(reply)
}

/// A string field; numbers and booleans become their text, null is absent.
fn text_field(object: &Map<String, Value>, name: &str) -> Result<Option<String>, DeliveryError> {
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
    media_type(content_type).is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
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
    use crate::errors::ErrorType;
    use serde_json::json;

    const HOST: &str = "bot.localhost";

    fn message(body: &str) -> Element {
        Element::new("message")
            .with_attr("to", "echo@bot.localhost")
            .with_attr("from", "user@localhost/res")
            .with_attr("type", "chat")
            .with_attr("id", "m1")
            .with_child(Element::new("body").with_text(body))
    }

    fn iq(kind: &str) -> Element {
        Element::new("iq")
            .with_attr("to", "bot.localhost")
            .with_attr("from", "user@localhost/res")
            .with_attr("type", kind)
            .with_attr("id", "q1")
            .with_child(Element::new("query").with_attr("xmlns", "urn:x"))
    }

    fn envelope(stanza: &Element) -> Envelope {
        Envelope::of(stanza).unwrap()
    }

    fn json_answer(value: Value) -> HttpAnswer {
        HttpAnswer {
            status: 200,
            content_type: Some("application/json".into()),
            body: value.to_string().into_bytes(),
            ..Default::default()
        }
    }

    fn answer(status: u16, content_type: Option<&str>, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            content_type: content_type.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn reply(stanza: &Element, answer: HttpAnswer) -> Result<Option<Element>, DeliveryError> {
        reply_for(&envelope(stanza), HOST, &answer)
    }

    fn xml_of(outcome: &Outcome) -> Vec<String> {
        outcome.stanzas.iter().map(Element::to_xml).collect()
    }

    #[test]
    fn request_has_every_key_of_spec_3() {
        let request = request(&message("hi <you> & 'me'")).unwrap();
        let value: Value = serde_json::from_str(&request.json).unwrap();
        assert_eq!(
            value,
            json!({
                "to": "echo@bot.localhost",
                "from": "user@localhost/res",
                "kind": "message",
                "type": "chat",
                "id": "m1",
                "body": "hi <you> & 'me'",
                "stanza": "<message to='echo@bot.localhost' from='user@localhost/res' type='chat' id='m1'>\
                           <body>hi &lt;you&gt; &amp; &apos;me&apos;</body></message>",
            })
        );
    }

    #[test]
    fn request_omits_absent_optional_keys() {
        let presence = Element::new("presence")
            .with_attr("to", "bot.localhost")
            .with_attr("from", "user@localhost");
        let value: Value = serde_json::from_str(&request(&presence).unwrap().json).unwrap();
        assert_eq!(
            value,
            json!({"to": "bot.localhost", "from": "user@localhost", "kind": "presence",
                   "stanza": "<presence to='bot.localhost' from='user@localhost'/>"})
        );
        let no_body = Element::new("message")
            .with_attr("to", "bot.localhost")
            .with_attr("from", "u@h");
        let value: Value = serde_json::from_str(&request(&no_body).unwrap().json).unwrap();
        assert!(value.get("body").is_none());
    }

    #[test]
    fn request_needs_a_stanza_with_to_and_from() {
        assert_eq!(
            request(&Element::new("foo")).unwrap_err(),
            ConversionError::NotAStanza("foo".into())
        );
        assert_eq!(
            request(&Element::new("message").with_attr("to", "x")).unwrap_err(),
            ConversionError::MissingAttribute("from")
        );
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
                Err(DeliveryError::InvalidReply(reason)) => {
                    assert!(reason.contains(why), "{reason} lacks {why}")
                }
                other => panic!("expected invalid reply ({why}), got {other:?}"),
            }
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
                Err(DeliveryError::ForeignFrom(_))
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

    #[test]
    fn outcome_error_reply_goes_back_to_the_sender() {
        let o = outcome(&envelope(&message("x")), HOST, Err(DeliveryError::Timeout));
        assert_eq!(
            xml_of(&o),
            ["<message to='user@localhost/res' from='echo@bot.localhost' id='m1' type='error'>\
              <error type='wait'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
              <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>timed out</text></error></message>"]
        );
        let (level, line) = o.log.unwrap();
        assert_eq!(level, LogLevel::Warn);
        assert!(
            line.contains("message id=m1 from user@localhost/res") && line.contains("timed out")
        );
    }

    #[test]
    fn errors_and_iq_results_are_never_answered() {
        let mut bounced = message("x");
        bounced.set_attr("type", "error");
        let mut result = iq("result");
        result.children.clear();
        for stanza in [bounced, result, iq("error")] {
            let e = envelope(&stanza);
            let ok = outcome(&e, HOST, Ok(json_answer(json!({"body": "x"}))));
            assert!(ok.stanzas.is_empty());
            let failed = outcome(&e, HOST, Err(DeliveryError::Timeout));
            assert!(failed.stanzas.is_empty());
            assert!(failed.log.is_some());
        }
    }

    #[test]
    fn iq_gets_exactly_one_answer_with_its_id() {
        let get = envelope(&iq("get"));
        // 2xx without a usable reply: an empty result.
        for a in [answer(204, None, ""), json_answer(json!({}))] {
            assert_eq!(
                xml_of(&outcome(&get, HOST, Ok(a))),
                ["<iq to='user@localhost/res' from='bot.localhost' id='q1' type='result'/>"]
            );
        }
        // A reply of kind iq gets the request's id and type result.
        let o = outcome(
            &get,
            HOST,
            Ok(json_answer(json!({"kind": "iq", "id": "other"}))),
        );
        assert_eq!(
            xml_of(&o),
            ["<iq to='user@localhost/res' from='bot.localhost' type='result' id='q1'/>"]
        );
        // A stanza that is an iq: same, keeping its own type and payload.
        let o = outcome(
            &get,
            HOST,
            Ok(json_answer(
                json!({"stanza": "<iq type='error'><error type='cancel'/></iq>"}),
            )),
        );
        assert_eq!(
            xml_of(&o),
            ["<iq type='error' to='user@localhost/res' from='bot.localhost' id='q1'><error type='cancel'/></iq>"]
        );
        // A message reply is sent, and the iq still gets its result.
        let o = outcome(&get, HOST, Ok(json_answer(json!({"body": "hi"}))));
        assert_eq!(o.stanzas.len(), 2);
        assert_eq!(o.stanzas[1].attr("type"), Some("result"));
        // HTTP error: the mapped error.
        let o = outcome(&get, HOST, Ok(answer(404, None, "")));
        assert_eq!(o.stanzas.len(), 1);
        assert!(o.stanzas[0].to_xml().contains("<item-not-found"));
        assert_eq!(o.stanzas[0].attr("id"), Some("q1"));
    }
}
