//! Stanza → the request JSON POSTed for it (docs/contract.md §3, with the
//! structured keys of §3.1).

use serde::Serialize;
use serde_json::Value;

use super::envelope::{ConversionError, Envelope, Kind};
use super::extract::{self, Keys};
use crate::xml::Element;

#[derive(Debug)]
pub struct Request {
    pub envelope: Envelope,
    pub json: String,
    /// The stanza as XML (also in `json`), for durable delivery to hold.
    pub xml: String,
    /// A message with a body: one its sender may see the bot typing for.
    pub has_body: bool,
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
    /// The structured keys (§3.1), each only when the stanza has it.
    #[serde(flatten)]
    keys: Keys,
    /// A command step (§13.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a Value>,
}

/// Builds the request for `stanza` (docs/contract.md §3).
pub fn request(stanza: &Element) -> Result<Request, ConversionError> {
    request_with(stanza, Context::default())
}

/// What the module knows of a stanza that the stanza does not say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// A command step: its `command` key (§13.2).
    pub command: Option<&'a Value>,
    /// A room message that mentions the bot: `"mentioned": true` (§12).
    pub mentioned: bool,
}

/// As [`request`], with what `context` adds.
pub fn request_with(stanza: &Element, context: Context) -> Result<Request, ConversionError> {
    let Context { command, mentioned } = context;
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
        keys: extract::Keys {
            mentioned: mentioned.then_some(true),
            ..extract::keys(stanza, envelope.kind)
        },
        command,
    })
    .expect("serialising strings to JSON cannot fail");
    Ok(Request {
        has_body: body.is_some(),
        envelope,
        json,
        xml,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversion::examples::message;
    use serde_json::json;

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
}
