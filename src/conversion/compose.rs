//! The structured keys of a reply or push (docs/contract.md §4.1) → the
//! stanza's children: chat states, files, corrections, reactions, replies,
//! receipts, markers, data forms, nick; presence show, status and priority. Every key is
//! checked before any child is added, and a key of the wrong type is an
//! error naming it; keys that do not apply to the kind are ignored.

use serde_json::{Map, Value};

use super::envelope::Kind;
use super::ns;
use crate::forms;
use crate::json;
use crate::xml::Element;

/// A key of the wrong type or shape: the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

fn invalid(key: &str, why: &str) -> KeyError {
    KeyError(format!("'{key}' {why}"))
}

/// The children `object` asks for on a stanza of `kind`, in a fixed order.
pub fn children(kind: Kind, object: &Map<String, Value>) -> Result<Vec<Element>, KeyError> {
    let mut out = Vec::new();
    let get = |key: &str| object.get(key).filter(|v| !v.is_null());
    match kind {
        Kind::Message => {
            if let Some(v) = get("subject") {
                out.push(Element::new("subject").with_text(string(v, "subject")?));
            }
            if let Some(v) = get("thread") {
                out.push(thread(v)?);
            }
            if let Some(v) = get("state") {
                let state = word(v, "state", &ns::CHAT_STATES)?;
                out.push(Element::new(state).with_attr("xmlns", ns::CHATSTATES));
            }
            if let Some(v) = get("oob") {
                out.push(oob(v)?);
            }
            if let Some(v) = get("replace") {
                let id = string(v, "replace")?;
                out.push(with_ns("replace", ns::CORRECTION).with_attr("id", id));
            }
            if let Some(v) = get("reactions") {
                out.push(reactions(v)?);
            }
            if let Some(v) = get("reply") {
                out.push(reply_to(v)?);
            }
            if flag(get("request_receipt"), "request_receipt")? {
                out.push(with_ns("request", ns::RECEIPTS));
            }
            if let Some(v) = get("received") {
                let id = string(v, "received")?;
                out.push(with_ns("received", ns::RECEIPTS).with_attr("id", id));
            }
            if flag(get("markable"), "markable")? {
                out.push(with_ns("markable", ns::MARKERS));
            }
            if let Some(v) = get("displayed") {
                let id = string(v, "displayed")?;
                out.push(with_ns("displayed", ns::MARKERS).with_attr("id", id));
            }
            if let Some(v) = get("form") {
                out.push(forms::from_json(v, "form").map_err(|e| KeyError(e.to_string()))?);
            }
            if let Some(v) = get("retract") {
                if get("body").is_some() {
                    return Err(invalid(
                        "retract",
                        "cannot go with 'body': a retraction carries its fallback body only",
                    ));
                }
                out.extend(retraction(string(v, "retract")?));
            }
        }
        Kind::Presence => {
            if let Some(v) = get("show") {
                out.push(Element::new("show").with_text(word(v, "show", &ns::SHOWS)?));
            }
            if let Some(v) = get("status") {
                out.push(Element::new("status").with_text(string(v, "status")?));
            }
            if let Some(v) = get("priority") {
                let priority =
                    v.as_i64()
                        .filter(|p| (-128..=127).contains(p))
                        .ok_or_else(|| {
                            invalid("priority", "must be a whole number from -128 to 127")
                        })?;
                out.push(Element::new("priority").with_text(priority.to_string()));
            }
            // A room join (docs/contract.md §12), asking for no history.
            if flag(get("join"), "join")? {
                out.push(
                    with_ns("x", ns::MUC)
                        .with_child(Element::new("history").with_attr("maxstanzas", "0")),
                );
                // For the rooms' state only (removed before it is sent).
                if flag(get("mentions_only"), "mentions_only")? {
                    out.push(with_ns(ns::MENTIONS_ONLY, ns::INTERNAL));
                }
            }
        }
        Kind::Iq => {}
    }
    if kind != Kind::Iq {
        if let Some(v) = get("nick") {
            out.push(with_ns("nick", ns::NICK).with_text(string(v, "nick")?));
        }
    }
    Ok(out)
}

fn with_ns(name: &str, xmlns: &str) -> Element {
    Element::new(name).with_attr("xmlns", xmlns)
}

fn string<'a>(value: &'a Value, key: &str) -> Result<&'a str, KeyError> {
    value
        .as_str()
        .ok_or_else(|| invalid(key, "must be a string"))
}

/// One of `words`.
fn word(value: &Value, key: &str, words: &[&'static str]) -> Result<&'static str, KeyError> {
    json::word(value, words).ok_or_else(|| invalid(key, &json::one_of(words)))
}

fn flag(value: Option<&Value>, key: &str) -> Result<bool, KeyError> {
    match value {
        None => Ok(false),
        Some(Value::Bool(on)) => Ok(*on),
        Some(_) => Err(invalid(key, "must be true or false")),
    }
}

/// An object's string member `member` (for errors: `key.member`).
fn member<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    member: &str,
    required: bool,
) -> Result<Option<&'a str>, KeyError> {
    match object.get(member).filter(|v| !v.is_null()) {
        None if required => Err(invalid(key, &format!("needs '{member}', a string"))),
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&format!("{key}.{member}"), "must be a string")),
    }
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, KeyError> {
    value
        .as_object()
        .ok_or_else(|| invalid(key, "must be an object"))
}

/// The fallback body clients without XEP-0424 show.
pub const RETRACT_FALLBACK: &str =
    "This person attempted to retract a previous message, but it's unsupported by your client.";

/// XEP-0424: retracts message `id`, with its fallback body, and asks to be
/// stored (so that archives and offline clients learn of it).
fn retraction(id: &str) -> [Element; 4] {
    [
        with_ns("retract", ns::RETRACT).with_attr("id", id),
        with_ns("fallback", ns::FALLBACK).with_attr("for", ns::RETRACT),
        Element::new("body").with_text(RETRACT_FALLBACK),
        with_ns("store", ns::HINTS),
    ]
}

/// `"id"` or `{"id": …, "parent": …}`.
fn thread(value: &Value) -> Result<Element, KeyError> {
    let (id, parent) = match value {
        Value::String(id) => (id.as_str(), None),
        Value::Object(o) => (
            member(o, "thread", "id", true)?.unwrap_or_default(),
            member(o, "thread", "parent", false)?,
        ),
        _ => return Err(invalid("thread", "must be a string or an object")),
    };
    let mut thread = Element::new("thread").with_text(id);
    if let Some(parent) = parent {
        thread.set_attr("parent", parent);
    }
    Ok(thread)
}

/// `"https://…"` or `{"url": …, "desc": …}`.
fn oob(value: &Value) -> Result<Element, KeyError> {
    let (url, desc) = match value {
        Value::String(url) => (url.as_str(), None),
        Value::Object(o) => (
            member(o, "oob", "url", true)?.unwrap_or_default(),
            member(o, "oob", "desc", false)?,
        ),
        _ => {
            return Err(invalid(
                "oob",
                "must be a URL string or an object with a 'url'",
            ))
        }
    };
    let mut x = with_ns("x", ns::OOB).with_child(Element::new("url").with_text(url));
    if let Some(desc) = desc {
        x = x.with_child(Element::new("desc").with_text(desc));
    }
    Ok(x)
}

/// `{"id": …, "reactions": ["👍", …]}`.
fn reactions(value: &Value) -> Result<Element, KeyError> {
    let o = object(value, "reactions")?;
    let id = member(o, "reactions", "id", true)?.unwrap_or_default();
    let list = o
        .get("reactions")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("reactions", "needs a 'reactions' array of strings"))?;
    let mut element = with_ns("reactions", ns::REACTIONS).with_attr("id", id);
    for reaction in list {
        let reaction = reaction
            .as_str()
            .ok_or_else(|| invalid("reactions.reactions", "must hold strings"))?;
        element = element.with_child(Element::new("reaction").with_text(reaction));
    }
    Ok(element)
}

/// `{"id": …, "to": …}`.
fn reply_to(value: &Value) -> Result<Element, KeyError> {
    let o = object(value, "reply")?;
    let mut reply = with_ns("reply", ns::REPLY)
        .with_attr("id", member(o, "reply", "id", true)?.unwrap_or_default());
    if let Some(to) = member(o, "reply", "to", false)? {
        reply.set_attr("to", to);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn xml(kind: Kind, value: Value) -> Result<Vec<String>, String> {
        children(kind, value.as_object().unwrap())
            .map(|c| c.iter().map(Element::to_xml).collect())
            .map_err(|KeyError(why)| why)
    }

    #[test]
    fn every_message_key_becomes_its_element() {
        let got = xml(
            Kind::Message,
            json!({
                "subject": "topic", "thread": {"id": "t1", "parent": "p1"}, "state": "composing",
                "oob": {"url": "https://x/a.png", "desc": "a cat"}, "replace": "m0",
                "reactions": {"id": "m9", "reactions": ["👍"]}, "reply": {"id": "m8", "to": "v@h/r"},
                "request_receipt": true, "received": "m7", "markable": true, "displayed": "m6",
                "nick": "Bot", "unknown": {"ignored": true}
            }),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "<subject>topic</subject>",
                "<thread parent='p1'>t1</thread>",
                "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
                "<x xmlns='jabber:x:oob'><url>https://x/a.png</url><desc>a cat</desc></x>",
                "<replace xmlns='urn:xmpp:message-correct:0' id='m0'/>",
                "<reactions xmlns='urn:xmpp:reactions:0' id='m9'><reaction>👍</reaction></reactions>",
                "<reply xmlns='urn:xmpp:reply:0' id='m8' to='v@h/r'/>",
                "<request xmlns='urn:xmpp:receipts'/>",
                "<received xmlns='urn:xmpp:receipts' id='m7'/>",
                "<markable xmlns='urn:xmpp:chat-markers:0'/>",
                "<displayed xmlns='urn:xmpp:chat-markers:0' id='m6'/>",
                "<nick xmlns='http://jabber.org/protocol/nick'>Bot</nick>",
            ]
        );
    }

    #[test]
    fn a_form_in_a_message_and_a_wrong_one_named_by_its_path() {
        let got = xml(
            Kind::Message,
            json!({"form": {"title": "Poll", "fields": [{"var": "ok", "type": "boolean"}]}}),
        )
        .unwrap();
        assert_eq!(
            got,
            ["<x xmlns='jabber:x:data' type='form'><title>Poll</title>\
              <field var='ok' type='boolean'/></x>"]
        );
        assert_eq!(
            xml(Kind::Message, json!({"form": {"fields": [{"label": "x"}]}})).unwrap_err(),
            "'form.fields[0].var' is missing: every field but a fixed one needs a var"
        );
    }

    #[test]
    fn short_forms_and_false_flags() {
        let got = xml(
            Kind::Message,
            json!({"thread": "t1", "oob": "https://x/", "request_receipt": false, "markable": false, "subject": null}),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "<thread>t1</thread>",
                "<x xmlns='jabber:x:oob'><url>https://x/</url></x>"
            ]
        );
    }

    #[test]
    fn a_retraction_carries_its_fallback_body_only() {
        assert_eq!(
            xml(Kind::Message, json!({"retract": "m5"})).unwrap(),
            [
                "<retract xmlns='urn:xmpp:message-retract:1' id='m5'/>",
                "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/>",
                &format!("<body>{}</body>", RETRACT_FALLBACK.replace('\'', "&apos;")),
                "<store xmlns='urn:xmpp:hints'/>",
            ]
        );
        let with_body = xml(Kind::Message, json!({"retract": "m5", "body": "gone"}));
        assert!(with_body
            .unwrap_err()
            .starts_with("'retract' cannot go with 'body'"));
        let not_a_string = xml(Kind::Message, json!({"retract": 5}));
        assert_eq!(not_a_string.unwrap_err(), "'retract' must be a string");
    }

    #[test]
    fn presence_keys() {
        let got = xml(
            Kind::Presence,
            json!({"show": "dnd", "status": "busy", "priority": 5, "state": "composing"}),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "<show>dnd</show>",
                "<status>busy</status>",
                "<priority>5</priority>"
            ]
        );
        assert!(xml(Kind::Iq, json!({"state": "composing", "nick": "x"}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn wrong_types_are_refused_naming_the_key() {
        for (kind, value, why) in [
            (
                Kind::Message,
                json!({"oob": 5}),
                "'oob' must be a URL string or an object",
            ),
            (
                Kind::Message,
                json!({"oob": {"desc": "d"}}),
                "'oob' needs 'url', a string",
            ),
            (
                Kind::Message,
                json!({"oob": {"url": 1}}),
                "'oob.url' must be a string",
            ),
            (
                Kind::Message,
                json!({"state": "dancing"}),
                "'state' must be one of active, composing",
            ),
            (
                Kind::Message,
                json!({"subject": 1}),
                "'subject' must be a string",
            ),
            (
                Kind::Message,
                json!({"thread": []}),
                "'thread' must be a string or an object",
            ),
            (
                Kind::Message,
                json!({"replace": true}),
                "'replace' must be a string",
            ),
            (
                Kind::Message,
                json!({"reactions": {"id": "m"}}),
                "'reactions' needs a 'reactions' array",
            ),
            (
                Kind::Message,
                json!({"reactions": {"id": "m", "reactions": [1]}}),
                "'reactions.reactions' must hold strings",
            ),
            (
                Kind::Message,
                json!({"reactions": ["👍"]}),
                "'reactions' must be an object",
            ),
            (
                Kind::Message,
                json!({"reply": {"to": "x"}}),
                "'reply' needs 'id', a string",
            ),
            (
                Kind::Message,
                json!({"request_receipt": "yes"}),
                "'request_receipt' must be true or false",
            ),
            (
                Kind::Message,
                json!({"markable": 1}),
                "'markable' must be true or false",
            ),
            (
                Kind::Message,
                json!({"displayed": 3}),
                "'displayed' must be a string",
            ),
            (
                Kind::Message,
                json!({"received": {}}),
                "'received' must be a string",
            ),
            (Kind::Message, json!({"nick": 1}), "'nick' must be a string"),
            (
                Kind::Presence,
                json!({"show": "sleeping"}),
                "'show' must be one of away, chat, dnd, xa",
            ),
            (
                Kind::Presence,
                json!({"priority": 200}),
                "'priority' must be a whole number from -128 to 127",
            ),
            (
                Kind::Presence,
                json!({"priority": "1"}),
                "'priority' must be a whole number",
            ),
            (
                Kind::Presence,
                json!({"status": false}),
                "'status' must be a string",
            ),
        ] {
            let err = xml(kind, value.clone()).unwrap_err();
            assert!(err.starts_with(why), "{value}: {err}");
        }
    }
}
