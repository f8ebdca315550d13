//! The push endpoint (docs/contract.md §10): the web service POSTs a stanza
//! (the reply JSON of §4, or raw XML) and the component sends it on its own.
//! [`Endpoint`] decides who may push ([`auth`]) and how often ([`limits`]);
//! [`stanza`] reads what is pushed.

mod auth;
pub mod limits;
mod waiting;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;

pub use auth::{authorize, Authorized, Credentials, PushKeys};
use limits::{FailureLimit, RateLimit, Replayed, Replays};
pub use waiting::{Answer, PushedIqs};

use crate::commands::{self, menu, SharedCommands};
use crate::config::{Config, PushToken};
use crate::conversion::{self, AddressError, Envelope, Kind, ReplyError, RoomJids};
use crate::effect::Effect;
use crate::face::Face;
use crate::rooms::{self, SharedRooms};
use crate::signing::{self, PublicKey};
use crate::upload::{PushedFile, Uploader};
use crate::xml::{self, Element};

/// A signed push older or newer than this is refused (Standard Webhooks'
/// replay window).
const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// An HTTP status for the pusher, with a message naming the problem, and
/// for a 429 the seconds to wait (`Retry-After`).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct PushError {
    pub status: u16,
    pub message: String,
    pub retry_after: Option<u64>,
}

fn refuse(status: u16, message: impl Into<String>) -> PushError {
    PushError {
        status,
        message: message.into(),
        retry_after: None,
    }
}

fn too_many(message: &str, wait: Duration) -> PushError {
    PushError {
        retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
        ..refuse(429, message)
    }
}

/// The push endpoint of one component host: its keys, its limits, and
/// what it remembers to keep them.
#[derive(Debug)]
pub struct Endpoint {
    host: String,
    token: Option<PushToken>,
    public_key: Option<PublicKey>,
    max_size: usize,
    timeout: Duration,
    failures: FailureLimit,
    pushes: RateLimit,
    replays: Replays,
    /// The rooms the host is in, and how many it may be in.
    rooms: RoomJids,
    max_rooms: usize,
    /// The pushed IQs waiting for their answer.
    pub iqs: PushedIqs,
    /// The host's group chat: a pushed presence may join or leave a room.
    group_chat: Option<SharedRooms>,
    /// The host's commands: a push may replace the menu.
    commands: SharedCommands,
    /// Who uploads the files of pushes.
    uploads: Arc<dyn Uploader>,
    /// A pushed available presence shows the bot's avatar.
    face: Arc<Face>,
}

/// A push taken.
#[derive(Debug, PartialEq)]
pub enum Pushed {
    /// A stanza sent: its id and recipient (prepared), and whether the push
    /// waits for its answer (an IQ get or set).
    Stanza { id: String, to: String, waits: bool },
    /// The menu replaced (docs/contract.md §13.1): the commands it now has.
    Menu { commands: usize },
    /// A file being uploaded (§14): the push is answered when it is done,
    /// as `id`'s push answer, within `seconds`.
    Upload { id: String, seconds: f64 },
}

impl Endpoint {
    /// The endpoint `config` asks for; none without a token or public key.
    /// `rooms`: the rooms the host is in (a push may join one more).
    pub fn new(
        config: &Config,
        rooms: RoomJids,
        group_chat: Option<SharedRooms>,
        commands: SharedCommands,
        uploads: Arc<dyn Uploader>,
    ) -> Option<Endpoint> {
        if config.push_token.is_none() && config.push_public_key.is_none() {
            return None;
        }
        // As many ids as the rate lets through while a timestamp is good.
        let window = (2 * TIMESTAMP_TOLERANCE_SECS) as f64;
        Some(Endpoint {
            host: config.host.clone(),
            token: config.push_token.clone(),
            public_key: config.push_public_key.clone(),
            max_size: config.push_max_size,
            timeout: config.push_timeout,
            failures: FailureLimit::new(config.push_auth_failures),
            pushes: RateLimit::new(config.push_rate),
            replays: Replays::new((config.push_rate * window).ceil() as usize + 1),
            rooms,
            max_rooms: config.max_rooms,
            iqs: PushedIqs::default(),
            group_chat,
            commands,
            uploads,
            face: Arc::clone(&config.face),
        })
    }

    /// How long a pushed IQ waits for its answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a push from `address` may go on, in the order that keeps a
    /// refusal cheap: an address that failed too often is refused before
    /// anything is checked; then size, credentials, the rate, and (for a
    /// signed push) whether its `webhook-id` was used already.
    pub fn admit(
        &mut self,
        address: &str,
        credentials: &Credentials,
        content_type: Option<&str>,
        body: &[u8],
        now: Instant,
        unix_secs: u64,
    ) -> Result<(), PushError> {
        if let Some(wait) = self.failures.wait(address, now) {
            return Err(too_many(
                "too many failed authorisations from this address",
                wait,
            ));
        }
        // One with a file (§14) may be larger by the file in base64.
        // (Looked for only past the usual limit: most pushes are small.)
        let with_file = || {
            body.len() <= self.max_size + self.uploads.allowance()
                && conversion::is_json(content_type)
                && mentions_file(body)
        };
        if body.len() > self.max_size && !with_file() {
            return Err(refuse(413, format!("larger than {} bytes", self.max_size)));
        }
        let keys = PushKeys {
            token: self.token.as_ref().map(|t| t.0.as_str()),
            public_key: self.public_key.as_ref(),
        };
        let authorized = match authorize(keys, credentials, body, unix_secs) {
            Ok(authorized) => authorized,
            Err(error) => {
                self.failures.record(address, now);
                return Err(error);
            }
        };
        if !self.pushes.take(now) {
            return Err(too_many(
                "too many pushes, slow down",
                Duration::from_secs(1),
            ));
        }
        if let Authorized::Signed { id, timestamp } = authorized {
            let tolerance = TIMESTAMP_TOLERANCE_SECS;
            match self.replays.check(id, timestamp, tolerance, unix_secs) {
                Ok(()) => {}
                Err(Replayed::Seen) => {
                    return Err(refuse(
                        409,
                        "this webhook-id was used already: a push is accepted once",
                    ))
                }
                Err(Replayed::Full) => {
                    return Err(too_many(
                        "too many pushes, slow down",
                        Duration::from_secs(1),
                    ))
                }
            }
        }
        Ok(())
    }

    /// What an admitted push sends, as effects (through the rooms, when the
    /// host has them), and what it is; or why it is refused.
    pub fn push(
        &mut self,
        content_type: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> Result<(Vec<Effect>, Pushed), PushError> {
        if let Some(menu) = menu_push(content_type, body) {
            return self.push_menu(menu);
        }
        if let Some(pushed) = self.file_push(content_type, body)? {
            let id = signing::unguessable_id("upload_");
            self.uploads.push(pushed, id.clone());
            let seconds = self.uploads.seconds();
            return Ok((Vec::new(), Pushed::Upload { id, seconds }));
        }
        let (mut stanza, waits) = self.stanza(content_type, body)?;
        self.face.dress(&mut stanza);
        let id = stanza.attr("id").unwrap_or_default().to_owned();
        let to = stanza.attr("to").unwrap_or_default().to_owned();
        let effects = vec![Effect::Send(stanza)];
        let effects = match &self.group_chat {
            Some(shared) => rooms::lock(shared).sending(effects, now),
            None => effects,
        };
        Ok((effects, Pushed::Stanza { id, to, waits }))
    }

    /// A push with a file: its message and file as read here, or, when the
    /// body is larger than a push without a file may be, the body (read by
    /// the upload's task). `None`: no file.
    fn file_push(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Option<PushedFile>, PushError> {
        if !conversion::is_json(content_type) || !mentions_file(body) {
            return Ok(None);
        }
        if body.len() > self.max_size {
            return Ok(Some(PushedFile::Unread(body.to_vec())));
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Ok(None); // `stanza` says what is wrong with it
        };
        let Some(file) = object.get("file").filter(|f| !f.is_null()) else {
            return Ok(None);
        };
        crate::upload::file::check_beside(&object).map_err(|e| refuse(400, e.to_string()))?;
        let message = stanza(&self.host, content_type, body)?;
        Ok(Some(PushedFile::Read(message, file.clone())))
    }

    /// `{"commands": [...]}` replaces the menu, `{"commands": null}` goes
    /// back to the configured one; a wrong one leaves it as it was.
    fn push_menu(&mut self, list: Value) -> Result<(Vec<Effect>, Pushed), PushError> {
        let pushed = match list {
            Value::Null => None,
            list => Some(menu::from_json(&list).map_err(|why| refuse(400, why))?),
        };
        let mut commands = commands::lock(&self.commands);
        commands.menu.push(pushed);
        let effects = vec![Effect::SaveMenu(commands.menu.pushed_json())];
        let count = commands.menu.items().len();
        Ok((effects, Pushed::Menu { commands: count }))
    }

    /// The stanza a push describes (see [`stanza`]), and whether the push
    /// waits for its answer (an IQ get or set, then expected by
    /// [`PushedIqs`]); a join past `component_post_max_rooms` is refused.
    pub fn stanza(
        &mut self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Element, bool), PushError> {
        let stanza = stanza(&self.host, content_type, body)?;
        if let Some(why) = rooms::refuse_join(&stanza, &self.rooms, self.max_rooms) {
            return Err(refuse(400, why));
        }
        let waits = stanza.name == "iq" && matches!(stanza.attr("type"), Some("get" | "set"));
        if waits {
            // Both set by `stanza`: the id given or made, `to` prepared.
            let id = stanza.attr("id").unwrap_or_default();
            if !self.iqs.expect(id, stanza.attr("to").unwrap_or_default()) {
                return Err(refuse(409, "an iq with this id is still waiting"));
            }
        }
        Ok((stanza, waits))
    }
}

/// Whether a body may hold a `file` key (a cheap look before reading).
fn mentions_file(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"file\"").is_some()
}

/// The list of a menu push: a JSON object with `commands` and neither
/// `to` nor `stanza` (those push a stanza).
fn menu_push(content_type: Option<&str>, body: &[u8]) -> Option<Value> {
    if !conversion::is_json(content_type) {
        return None;
    }
    match serde_json::from_slice(body).ok()? {
        Value::Object(mut object)
            if !object.contains_key("to") && !object.contains_key("stanza") =>
        {
            object.remove("commands")
        }
        _ => None,
    }
}

/// The stanza a push describes, sent as the component `host`: `to` is
/// required, `from` defaults to the domain and must be at it, and an id is
/// given when there is none.
pub fn stanza(host: &str, content_type: Option<&str>, body: &[u8]) -> Result<Element, PushError> {
    let mut stanza = if conversion::is_json(content_type) {
        from_json(host, body)?
    } else if conversion::is_media_type(content_type, "application/xmpp+xml") {
        from_xml(body)?
    } else {
        return Err(refuse(
            415,
            "Content-Type must be application/json or application/xmpp+xml",
        ));
    };
    if stanza.attr("to").is_none_or(str::is_empty) {
        return Err(refuse(400, "missing 'to'"));
    }
    if stanza.attr("from").is_none() {
        stanza.set_attr("from", host);
    }
    conversion::prepare_addresses(&mut stanza, host).map_err(|e| match e {
        AddressError::Foreign(_) => refuse(403, format!("'from' must be {host} or a JID at it")),
        other => refuse(400, other.to_string()),
    })?;
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
        stanza.set_attr("id", signing::unguessable_id("push_"));
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
}
