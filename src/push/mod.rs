//! The push endpoint (docs/contract.md §10): the web service POSTs a stanza
//! (the reply JSON of §4, or raw XML) and the component sends it on its own.

use serde_json::Value;
use thiserror::Error;

use crate::conversion::{self, Envelope, Kind, ReplyError};
use crate::jid;
use crate::signing::{self, PublicKey, Secret};
use crate::xml::{self, Element};

/// A signed push older or newer than this is refused (Standard Webhooks'
/// replay window).
const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// An HTTP status for the pusher, with a message naming the problem.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct PushError {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> PushError {
    PushError {
        status,
        message: message.into(),
    }
}

/// The credentials a push request carries.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
}

/// What the push endpoint accepts: the token (as a bearer token, or as the
/// secret of a `v1` signature) and the public key of `v1a` signatures. At
/// least one is set, or the endpoint is off.
#[derive(Debug, Clone, Copy)]
pub struct PushKeys<'a> {
    pub token: Option<&'a str>,
    pub public_key: Option<&'a PublicKey>,
}

/// `Authorization: Bearer <token>`, or a Standard Webhooks signature: `v1`
/// made with the token as its secret (compared in constant time), or `v1a`
/// made with the secret half of the public key.
pub fn authorize(
    keys: PushKeys,
    credentials: &Credentials,
    body: &[u8],
    now_secs: u64,
) -> Result<(), PushError> {
    if let Some(authorization) = credentials.authorization {
        let given = authorization
            .strip_prefix("Bearer ")
            .ok_or_else(|| refuse(401, "Authorization must be 'Bearer <token>'"))?;
        let Some(token) = keys.token else {
            return Err(refuse(
                401,
                "no bearer token is accepted here: sign the push (v1a)",
            ));
        };
        return if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(refuse(403, "wrong token"))
        };
    }
    let Some(signatures) = credentials.webhook_signature else {
        return Err(refuse(
            401,
            "missing credentials: send Authorization: Bearer <token> or a webhook signature",
        ));
    };
    let (Some(id), Some(timestamp)) = (credentials.webhook_id, credentials.webhook_timestamp)
    else {
        return Err(refuse(
            401,
            "a signed push needs webhook-id and webhook-timestamp",
        ));
    };
    let timestamp: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| refuse(401, "webhook-timestamp must be Unix seconds"))?;
    if timestamp.abs_diff(now_secs) > TIMESTAMP_TOLERANCE_SECS {
        return Err(refuse(401, "webhook-timestamp is too far from now"));
    }
    let symmetric = match keys.token {
        Some(token) => {
            let secret = Secret::parse(token).map_err(|e| refuse(500, e.to_string()))?;
            let expected = signing::signature(&[secret], None, id, timestamp, body);
            signatures
                .split(' ')
                .any(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
        }
        None => false,
    };
    let asymmetric = keys
        .public_key
        .is_some_and(|key| key.verifies(signatures, id, timestamp, body));
    if symmetric || asymmetric {
        Ok(())
    } else {
        Err(refuse(403, "bad signature"))
    }
}

/// Equal bytes, in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The stanza a push describes, sent as the component `host`: `to` is
/// required, `from` defaults to the domain and must be at it, and an id is
/// given when there is none.
pub fn stanza(host: &str, content_type: Option<&str>, body: &[u8]) -> Result<Element, PushError> {
    let media_type = content_type.map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let mut stanza = match media_type.as_deref() {
        Some("application/json") => from_json(host, body)?,
        Some("application/xmpp+xml") => from_xml(body)?,
        _ => {
            return Err(refuse(
                415,
                "Content-Type must be application/json or application/xmpp+xml",
            ))
        }
    };
    if stanza.attr("to").is_none_or(str::is_empty) {
        return Err(refuse(400, "missing 'to'"));
    }
    match stanza.attr("from") {
        None => stanza.set_attr("from", host),
        Some(from) if !jid::host(from).eq_ignore_ascii_case(host) => {
            return Err(refuse(403, format!("'from' must be {host} or a JID at it")))
        }
        Some(_) => {}
    }
    if stanza.name == "iq"
        && !matches!(
            stanza.attr("type"),
            Some("get" | "set" | "result" | "error")
        )
    {
        return Err(refuse(
            400,
            "an iq needs a 'type' of get, set, result or error",
        ));
    }
    if stanza.attr("id").is_none() {
        stanza.set_attr("id", signing::delivery_id().replacen("msg_", "push_", 1));
    }
    stanza.check().map_err(|e| refuse(400, e.to_string()))?;
    Ok(stanza)
}

fn from_json(host: &str, body: &[u8]) -> Result<Element, PushError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| refuse(400, format!("invalid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(refuse(
            400,
            format!(
                "expected a JSON object, got {}",
                conversion::json_type_name(&value)
            ),
        ));
    };
    if !object.contains_key("stanza") && !object.get("to").is_some_and(Value::is_string) {
        return Err(refuse(400, "missing 'to'"));
    }
    if object
        .get("kind")
        .is_some_and(|k| k.as_str().and_then(Kind::parse).is_none())
    {
        return Err(refuse(400, "wrong 'kind': use message, presence or iq"));
    }
    if object.get("kind").and_then(Value::as_str) == Some("iq") && !object.contains_key("type") {
        return Err(refuse(
            400,
            "an iq needs a 'type' of get, set, result or error",
        ));
    }
    // Defaults as for a reply to a stanza that `to` sent to the domain: from
    // is the domain, and a `stanza` without a to goes to `to`.
    let envelope = Envelope {
        kind: Kind::Message,
        to: host.to_owned(),
        from: object
            .get("to")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        id: None,
        stanza_type: None,
        from_room: false,
    };
    conversion::stanza_from_object(&envelope, &object).map_err(|e| match e {
        ReplyError::Invalid(reason) => refuse(400, reason),
        other => refuse(400, other.to_string()),
    })
}

fn from_xml(body: &[u8]) -> Result<Element, PushError> {
    let text = std::str::from_utf8(body).map_err(|_| refuse(400, "the XML is not UTF-8"))?;
    let stanza = xml::parse(text).map_err(|e| refuse(400, format!("invalid XML: {e}")))?;
    if Kind::parse(&stanza.name).is_none() {
        return Err(refuse(
            400,
            "wrong kind: the XML must be a message, presence or iq",
        ));
    }
    Ok(stanza)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "bot.localhost";

    fn push(content_type: &str, body: &str) -> Result<Element, PushError> {
        stanza(HOST, Some(content_type), body.as_bytes())
    }

    fn status(result: Result<Element, PushError>) -> (u16, String) {
        let e = result.unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn json_message_with_defaults() {
        let s = push(
            "application/json",
            r#"{"to": "u@localhost", "body": "reminder"}"#,
        )
        .unwrap();
        assert_eq!(s.name, "message");
        assert_eq!(s.attr("from"), Some(HOST));
        assert_eq!(s.attr("type"), Some("chat"));
        assert!(s.attr("id").unwrap().starts_with("push_"));
        assert_eq!(s.child("body", None).unwrap().text(), "reminder");
    }

    #[test]
    fn json_fields_and_stanza_xml() {
        let s = push(
            "application/json; charset=utf-8",
            r#"{"to": "u@localhost", "from": "alerts@bot.localhost", "id": "a1", "kind": "presence"}"#,
        )
        .unwrap();
        assert_eq!(
            s.to_xml(),
            "<presence to='u@localhost' from='alerts@bot.localhost' id='a1'/>"
        );
        let s = push(
            "application/json",
            r#"{"stanza": "<message to='u@localhost' type='headline'><body>x</body></message>"}"#,
        )
        .unwrap();
        assert_eq!(s.attr("from"), Some(HOST));
        assert_eq!(s.attr("type"), Some("headline"));
        let s = push(
            "application/json",
            r#"{"to": "u@localhost", "stanza": "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>"}"#,
        )
        .unwrap();
        assert_eq!(s.attr("to"), Some("u@localhost"));
    }

    #[test]
    fn structured_keys_build_the_push_and_a_wrong_one_is_400() {
        let s = push(
            "application/json",
            r#"{"to": "u@localhost", "state": "composing", "reply": {"id": "m1"}}"#,
        )
        .unwrap();
        let mut s = s;
        s.remove_attr("id");
        assert_eq!(
            s.to_xml(),
            "<message to='u@localhost' from='bot.localhost' type='chat'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/>\
             <reply xmlns='urn:xmpp:reply:0' id='m1'/></message>"
        );
        assert_eq!(
            status(push(
                "application/json",
                r#"{"to": "u@localhost", "state": "dancing"}"#
            )),
            (
                400,
                "'state' must be one of active, composing, paused, inactive, gone".into()
            )
        );
    }

    #[test]
    fn raw_xml() {
        let s = push(
            "application/xmpp+xml",
            "<iq type='get' to='u@localhost/r' id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .unwrap();
        assert_eq!(s.attr("from"), Some(HOST));
        assert_eq!(s.attr("id"), Some("q"));
    }

    #[test]
    fn bad_input_names_the_problem() {
        assert_eq!(
            status(push("application/json", r#"{"body": "x"}"#)),
            (400, "missing 'to'".into())
        );
        assert_eq!(status(push("application/json", "{oops")).0, 400);
        assert!(status(push("application/json", "[1]"))
            .1
            .contains("an array"));
        assert!(status(push(
            "application/json",
            r#"{"to": "u@h", "kind": "email"}"#
        ))
        .1
        .contains("wrong 'kind'"));
        assert!(
            status(push("application/json", r#"{"to": "u@h", "kind": "iq"}"#))
                .1
                .contains("'type'")
        );
        assert!(
            status(push("application/json", r#"{"stanza": "<message>"}"#))
                .1
                .contains("not well-formed")
        );
        assert!(status(push("application/xmpp+xml", "<message to='a@b'>"))
            .1
            .contains("invalid XML"));
        assert!(status(push("application/xmpp+xml", "<foo to='a@b'/>"))
            .1
            .contains("wrong kind"));
        assert_eq!(
            status(push("application/xmpp+xml", "<message/>")),
            (400, "missing 'to'".into())
        );
        assert_eq!(status(push("text/plain", "hi")).0, 415);
        assert_eq!(status(stanza(HOST, None, b"{}")).0, 415);
    }

    #[test]
    fn spoofed_from_is_refused() {
        let (code, message) = status(push(
            "application/json",
            r#"{"to": "u@h", "from": "admin@localhost", "body": "x"}"#,
        ));
        assert_eq!(code, 403);
        assert!(message.contains("'from' must be bot.localhost"));
        assert_eq!(
            status(push(
                "application/xmpp+xml",
                "<message to='u@h' from='evil.example'/>"
            ))
            .0,
            403
        );
    }

    #[test]
    fn bearer_token() {
        let creds = |a| Credentials {
            authorization: Some(a),
            ..Default::default()
        };
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Bearer s3cret"), b"", 0),
            Ok(())
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Bearer wrong"), b"", 0)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Bearer s3cre"), b"", 0)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Basic xyz"), b"", 0)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &Credentials::default(), b"", 0)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn webhook_signature() {
        let body = br#"{"to": "u@h"}"#;
        let secret = Secret::parse("s3cret").unwrap();
        let good = signing::signature(&[secret], None, "m1", 1000, body);
        let creds = |signature: &'static str, ts: &'static str| Credentials {
            webhook_id: Some("m1"),
            webhook_timestamp: Some(ts),
            webhook_signature: Some(signature),
            ..Default::default()
        };
        let good: &'static str = Box::leak(format!("v1,other {good}").into_boxed_str());
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "1000"), body, 1100),
            Ok(())
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "1000"), b"tampered", 1100)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "1000"), body, 5000)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("v1,nope", "1000"), body, 1000)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "soon"), body, 1000)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn v1a_signature_with_the_public_key() {
        let key = signing_key();
        let public = PublicKey::parse(&key.public_key(), "component_push_public_key").unwrap();
        let body = br#"{"to": "u@h"}"#;
        let signed = signing::signature(&[], Some(&key), "m1", 1000, body);
        let creds = |signature: &str| Credentials {
            webhook_id: Some("m1"),
            webhook_timestamp: Some("1000"),
            webhook_signature: Some(Box::leak(signature.to_owned().into_boxed_str())),
            ..Default::default()
        };
        let key_only = PushKeys {
            token: None,
            public_key: Some(&public),
        };
        let both = PushKeys {
            token: Some("s3cret"),
            public_key: Some(&public),
        };
        assert_eq!(authorize(key_only, &creds(&signed), body, 1000), Ok(()));
        assert_eq!(
            authorize(both, &creds(&format!("v1,x {signed}")), body, 1000),
            Ok(())
        );
        assert_eq!(
            authorize(key_only, &creds(&signed), b"tampered", 1000)
                .unwrap_err()
                .status,
            403
        );
        // A v1a signature is no good without the public key.
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(&signed), body, 1000)
                .unwrap_err()
                .status,
            403
        );
        // Nor is a v1 one without the token, or a bearer token.
        let v1 = signing::signature(&[Secret::parse("s3cret").unwrap()], None, "m1", 1000, body);
        assert_eq!(
            authorize(key_only, &creds(&v1), body, 1000)
                .unwrap_err()
                .status,
            403
        );
        let bearer = Credentials {
            authorization: Some("Bearer s3cret"),
            ..Default::default()
        };
        assert_eq!(
            authorize(key_only, &bearer, body, 1000).unwrap_err().status,
            401
        );
    }

    fn signing_key() -> signing::SigningKey {
        signing::SigningKey::parse("whsk_TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs=", "k")
            .unwrap()
    }

    const TOKEN_ONLY: PushKeys = PushKeys {
        token: Some("s3cret"),
        public_key: None,
    };
}
