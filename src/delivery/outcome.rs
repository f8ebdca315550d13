//! How a delivery ends: the [`Outcome`] handed back to Prosody's thread
//! (replies, a log line, metrics, storage), and the [`DeliveryError`] that
//! decides a failed stanza's error, metrics label and log level.

use crate::commands::{self, Settled, Step};
use crate::conversion::{ns, reply_for, stream, Envelope, HttpAnswer, ReplyError};
use crate::signing;
use crate::stanza_error::{status_class, ErrorType, StanzaError};
use crate::upload::{File, UploadError};
use crate::xml::Element;
use crate::xml::Node;

use super::held::Storage;
use crate::effect::Effect;
pub use crate::log::LogLevel;

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
    pub storage: Option<Storage>,
    /// The module's status (`module:set_status`) changes.
    pub status: Option<Status>,
    /// A stanza error was not sent: it would have gone to a room
    /// ([`Envelope::may_get_error`]); for metrics.
    pub error_withheld: bool,
    /// A command step: what it does to its session (on Prosody's thread).
    pub session: Option<Settled>,
    /// A file uploaded or not, for metrics: how, and the bytes.
    pub upload: Option<(&'static str, u64)>,
    /// A push with a file: the HTTP answer (id, status, JSON body) its
    /// caller waits for.
    pub push_answer: Option<(String, u16, String)>,
}

/// The module's status, as the admin sees it in Prosody: it follows
/// whether the web service answers, and the circuit of durable delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The last stanza could not reach it: timed out or unreachable.
    Unreachable(&'static str),
    /// It answered again (any HTTP status), or the circuit closed.
    Answering,
    /// Durable delivery holds stanzas while the service keeps failing.
    CircuitOpen,
}

impl Status {
    pub fn level(self) -> LogLevel {
        match self {
            Status::Unreachable(_) => LogLevel::Error,
            Status::Answering => LogLevel::Info,
            Status::CircuitOpen => LogLevel::Warn,
        }
    }

    pub fn text(self) -> String {
        match self {
            Status::Unreachable(how) => format!("web service unreachable ({how})"),
            Status::Answering => "web service answering again".into(),
            Status::CircuitOpen => "web service failing: holding stanzas (circuit open)".into(),
        }
    }

    /// Whether it replaces a more severe status: only good news does.
    pub fn overrides(self) -> bool {
        self == Status::Answering
    }
}

/// Follows the outcomes, in the order they are queued, to say when the web
/// service stops or starts answering.
#[derive(Debug)]
pub struct Health {
    reachable: bool,
}

impl Default for Health {
    fn default() -> Health {
        Health { reachable: true }
    }
}

impl Health {
    /// The status change an outcome with metrics label `label` makes, if any.
    pub fn observe(&mut self, label: &'static str) -> Option<Status> {
        let unreachable = matches!(label, "timeout" | "unreachable");
        let answered = label.len() == 3 && label.ends_with("xx");
        if unreachable && self.reachable {
            self.reachable = false;
            Some(Status::Unreachable(label))
        } else if answered && !self.reachable {
            self.reachable = true;
            Some(Status::Answering)
        } else {
            None
        }
    }
}

impl Outcome {
    /// What Prosody's side does for it, in order: storage first (a stanza
    /// is held before anything is said of it), then the log line, the
    /// stanzas, the metrics and the status.
    pub fn into_effects(self, effects: &mut Vec<Effect>) {
        match self.storage {
            Some(Storage::Hold(record)) => effects.push(Effect::Hold {
                id: record.id,
                stanza: record.stanza,
                received: record.received,
            }),
            Some(Storage::Forget(id)) => effects.push(Effect::Release { id }),
            Some(Storage::Dead(record, reason)) => effects.push(Effect::Dead {
                id: record.id,
                stanza: record.stanza,
                received: record.received,
                reason,
            }),
            None => {}
        }
        if let Some((level, line)) = self.log {
            effects.push(Effect::Log(level, line));
        }
        effects.extend(self.stanzas.into_iter().map(Effect::Send));
        if !self.label.is_empty() {
            effects.push(Effect::Report {
                outcome: self.label,
                seconds: self.seconds,
                retries: self.retries,
            });
        }
        if self.error_withheld {
            effects.push(Effect::Withheld);
        }
        if let Some((outcome, bytes)) = self.upload {
            effects.push(Effect::Uploaded { outcome, bytes });
        }
        if let Some((id, status, body)) = self.push_answer {
            effects.push(Effect::PushAnswer { id, status, body });
        }
        if let Some(status) = self.status {
            effects.push(Effect::Status {
                level: status.level(),
                text: status.text(),
                overrides: status.overrides(),
            });
        }
    }

    /// An outcome that only tells the admin something.
    pub fn log_only(level: LogLevel, line: String) -> Outcome {
        Outcome {
            log: Some((level, line)),
            ..Outcome::default()
        }
    }
}

/// Decides what the sender of `envelope` gets, given how its POST went.
pub fn decide(
    envelope: &Envelope,
    host: &str,
    result: Result<HttpAnswer, DeliveryError>,
) -> Outcome {
    let answered = answered_class(&result);
    let replies =
        result.and_then(|answer| replies_for(envelope, host, &answer).map_err(DeliveryError::from));
    let replies = match replies {
        Ok(replies) => replies,
        Err(error) => return failed(envelope, error),
    };
    let mut outcome = Outcome {
        label: answered.unwrap_or("2xx"),
        ..Outcome::default()
    };
    if !envelope.may_be_answered() {
        return outcome;
    }
    let answers_iq = replies.iter().any(|r| r.name == "iq");
    outcome.stanzas.extend(replies);
    if envelope.is_iq_request() && !answers_iq {
        outcome.stanzas.push(envelope.iq_result());
    }
    outcome
}

/// What an answer read whole sends: its reply, or a stream's first message
/// and last correction (§18: durable delivery reads streams whole).
fn replies_for(
    envelope: &Envelope,
    host: &str,
    answer: &HttpAnswer,
) -> Result<Vec<Element>, ReplyError> {
    if stream::is_stream(answer.status, answer.content_type.as_deref()) {
        return stream::whole(envelope, host, &answer.body, || {
            signing::unguessable_id("stream_")
        });
    }
    Ok(reply_for(envelope, host, answer)?.into_iter().collect())
}

/// A reply that had a file (docs/contract.md §14), once its upload ended:
/// the reply's `body`, if it had one, as a message of its own first (with
/// its type, thread and reply-to); then the file message, whose body and
/// oob URL are the file's GET URL. If the upload failed, the body message
/// still goes, and the sender gets the error instead of the file.
pub fn with_file(
    mut outcome: Outcome,
    envelope: &Envelope,
    uploaded: Result<(String, &File), UploadError>,
) -> Outcome {
    let Some(at) = outcome.stanzas.iter().position(|s| s.name == "message") else {
        return outcome;
    };
    let reply = outcome.stanzas.remove(at);
    let sent = match uploaded {
        Ok((url, file)) => {
            outcome.upload = Some(("done", file.data.len() as u64));
            file_messages(reply, &url, file)
        }
        Err(error) => {
            let mut sent: Vec<Element> = body_message(&reply).into_iter().collect();
            let mut line = format!(
                "Could not send the file of the reply to {}: {error}",
                envelope.describe()
            );
            if envelope.may_get_error() {
                let stanza_error = StanzaError::new(ErrorType::Cancel, "internal-server-error")
                    .with_text(error.text());
                // An IQ is answered once: by the error, not its result too.
                outcome.stanzas.retain(|s| !is_result_of(s, envelope));
                sent.push(envelope.error_reply(&stanza_error));
            } else if envelope.may_be_answered() {
                outcome.error_withheld = true;
                line.push_str(" (no error sent to the room: it would kick the bot)");
            }
            outcome.log = Some((LogLevel::Warn, line));
            outcome.upload = Some((error.label(), 0));
            sent
        }
    };
    let at = at.min(outcome.stanzas.len());
    outcome.stanzas.splice(at..at, sent);
    outcome
}

/// Whether `stanza` is the IQ result answering `envelope`.
fn is_result_of(stanza: &Element, envelope: &Envelope) -> bool {
    envelope.is_iq_request()
        && stanza.name == "iq"
        && stanza.attr("type") == Some("result")
        && stanza.attr("id") == envelope.id.as_deref()
}

/// A message with a file uploaded to `url`: its body, if it has one, as
/// a message of its own (with its type, thread and reply-to), then the
/// message itself, whose body and oob URL are `url`.
pub fn file_messages(mut message: Element, url: &str, file: &File) -> Vec<Element> {
    let mut sent: Vec<Element> = body_message(&message).into_iter().collect();
    message
        .children
        .retain(|c| !matches!(c, Node::Element(e) if e.name == "body"));
    let mut oob = Element::new("x")
        .with_attr("xmlns", ns::OOB)
        .with_child(Element::new("url").with_text(url));
    if let Some(desc) = &file.desc {
        oob = oob.with_child(Element::new("desc").with_text(desc.as_str()));
    }
    message
        .children
        .insert(0, Node::Element(Element::new("body").with_text(url)));
    sent.push(message.with_child(oob));
    sent
}

/// The body of a message with a file, as a message of its own.
fn body_message(reply: &Element) -> Option<Element> {
    let body = reply.child("body", None)?;
    let mut message = Element::new("message");
    for key in ["to", "from", "type"] {
        if let Some(value) = reply.attr(key) {
            message.set_attr(key, value);
        }
    }
    message = message.with_child(body.clone());
    for child in reply.elements() {
        if child.name == "thread" || child.attr("xmlns") == Some(ns::REPLY) {
            message = message.with_child(child.clone());
        }
    }
    Some(message)
}

/// The status class of an answer ("2xx", …), for metrics; `None` for none.
fn answered_class(result: &Result<HttpAnswer, DeliveryError>) -> Option<&'static str> {
    result
        .as_ref()
        .ok()
        .map(|answer| status_class(answer.status))
}

/// As [`decide`], for a command step: its answer is the command's result
/// (docs/contract.md §13.2), and the outcome settles its session.
pub fn decide_step(
    envelope: &Envelope,
    step: &Step,
    result: Result<HttpAnswer, DeliveryError>,
) -> Outcome {
    let answered = answered_class(&result);
    let answer = result
        .and_then(|answer| commands::answer(envelope, step, &answer).map_err(DeliveryError::from));
    match answer {
        Ok((reply, settled)) => Outcome {
            stanzas: vec![reply],
            label: answered.unwrap_or("2xx"),
            session: Some(settled),
            ..Outcome::default()
        },
        Err(error) => Outcome {
            session: Some(step.settled_on_error()),
            ..failed(envelope, error)
        },
    }
}

/// The sender of `envelope` gets the stanza error `error` decides, unless
/// it must not (a room would kick the bot for it); the admin a log line.
fn failed(envelope: &Envelope, error: DeliveryError) -> Outcome {
    let mut outcome = Outcome {
        label: error.label(),
        ..Outcome::default()
    };
    let mut line = format!("POST for {} failed: {error}", envelope.describe());
    if envelope.may_get_error() {
        outcome
            .stanzas
            .push(envelope.error_reply(&error.stanza_error()));
    } else if envelope.may_be_answered() {
        outcome.error_withheld = true;
        line.push_str(" (no error sent to the room: it would kick the bot)");
    }
    outcome.log = Some((error.log_level(), line));
    outcome
}

/// The reply an HTTP answer asks for, if any (docs/contract.md §4), with IQ answers given
/// Why a stanza could not be delivered, or its answer not used. Each becomes
/// one log line for the admin and one stanza error for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Connection(String),
    /// The service answered, but not with something usable.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    #[error("cancelled: {0}")]
    Cancelled(&'static str),
    #[error("refused: too many stanzas waiting for the web service")]
    QueueFull,
    #[error("refused: too many stanzas of this conversation waiting")]
    ConversationFull,
    #[error("not sent: the web service keeps failing (circuit open)")]
    CircuitOpen,
    #[error("not delivered in {} s: given up", .0.as_secs_f64())]
    Expired(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DeliveryError {
    /// What the sender is told (docs/contract.md §5).
    pub fn stanza_error(&self) -> StanzaError {
        use ErrorType::*;
        match self {
            DeliveryError::Timeout => {
                StanzaError::new(Wait, "remote-server-timeout").with_text("timed out")
            }
            DeliveryError::Connection(what) => {
                StanzaError::new(Cancel, "remote-server-timeout").with_text(what.as_str())
            }
            DeliveryError::Reply(error) => error.stanza_error(),
            DeliveryError::Cancelled(_) => {
                StanzaError::new(Cancel, "service-unavailable").with_text(self.to_string())
            }
            DeliveryError::QueueFull => StanzaError::new(Wait, "resource-constraint")
                .with_text("too many stanzas waiting for the web service"),
            DeliveryError::ConversationFull => StanzaError::new(Wait, "resource-constraint")
                .with_text("too many of your stanzas are waiting for the bot; try again later"),
            DeliveryError::CircuitOpen => StanzaError::new(Wait, "remote-server-timeout")
                .with_text("the bot's web service is failing; try again later"),
            DeliveryError::Expired(_) => {
                StanzaError::new(Cancel, "remote-server-timeout").with_text(self.to_string())
            }
            DeliveryError::TooLarge(_) | DeliveryError::Internal(_) => {
                StanzaError::new(Cancel, "internal-server-error")
                    .with_text(format!("the bot's web service failed: {self}"))
            }
        }
    }

    /// The metrics label of this way of failing.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::Timeout => "timeout",
            DeliveryError::Connection(_) => "unreachable",
            DeliveryError::Reply(ReplyError::Status { status, .. }) => status_class(*status),
            DeliveryError::Reply(_) => "invalid_reply",
            DeliveryError::TooLarge(_) => "too_large",
            DeliveryError::Cancelled(_) => "cancelled",
            DeliveryError::QueueFull => "refused",
            DeliveryError::ConversationFull => "refused_conversation",
            DeliveryError::CircuitOpen => "circuit_open",
            DeliveryError::Expired(_) => "expired",
            DeliveryError::Internal(_) => "internal",
        }
    }

    /// How loudly the admin hears of it: a bot that answers nonsense needs
    /// fixing; a service that is down for a moment is only a warning.
    pub fn log_level(&self) -> LogLevel {
        match self {
            DeliveryError::Reply(ReplyError::Status { .. }) => LogLevel::Warn,
            DeliveryError::Reply(_) | DeliveryError::Internal(_) => LogLevel::Error,
            DeliveryError::Cancelled(_) => LogLevel::Info,
            // A flood refuses many stanzas: the admin hears of it once, when
            // the queue fills up, not once per stanza.
            DeliveryError::QueueFull | DeliveryError::ConversationFull => LogLevel::Debug,
            // Said once, when the circuit opens.
            DeliveryError::CircuitOpen => LogLevel::Debug,
            _ => LogLevel::Warn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversion::examples::{answer, envelope, iq, json_answer, message};
    use serde_json::json;

    const HOST: &str = "bot.localhost";

    fn xml_of(outcome: &Outcome) -> Vec<String> {
        outcome.stanzas.iter().map(Element::to_xml).collect()
    }

    #[test]
    fn outcome_error_reply_goes_back_to_the_sender() {
        let o = decide(&envelope(&message("x")), HOST, Err(DeliveryError::Timeout));
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
            let ok = decide(&e, HOST, Ok(json_answer(json!({"body": "x"}))));
            assert!(ok.stanzas.is_empty());
            let failed = decide(&e, HOST, Err(DeliveryError::Timeout));
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
                xml_of(&decide(&get, HOST, Ok(a))),
                ["<iq to='user@localhost/res' from='bot.localhost' id='q1' type='result'/>"]
            );
        }
        // A reply of kind iq gets the request's id and type result.
        let o = decide(
            &get,
            HOST,
            Ok(json_answer(json!({"kind": "iq", "id": "other"}))),
        );
        assert_eq!(
            xml_of(&o),
            ["<iq to='user@localhost/res' from='bot.localhost' type='result' id='q1'/>"]
        );
        // A stanza that is an iq: same, keeping its own type and payload.
        let o = decide(
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
        let o = decide(&get, HOST, Ok(json_answer(json!({"body": "hi"}))));
        assert_eq!(o.stanzas.len(), 2);
        assert_eq!(o.stanzas[1].attr("type"), Some("result"));
        // HTTP error: the mapped error.
        let o = decide(&get, HOST, Ok(answer(404, None, "")));
        assert_eq!(o.stanzas.len(), 1);
        assert!(o.stanzas[0].to_xml().contains("<item-not-found"));
        assert_eq!(o.stanzas[0].attr("id"), Some("q1"));
    }

    #[test]
    fn no_message_or_presence_error_goes_to_a_room() {
        let mut groupchat = message("x");
        groupchat.set_attr("type", "groupchat");
        groupchat.set_attr("from", "room@muc.localhost/alice");
        let private = message("x").with_child(
            Element::new("x").with_attr("xmlns", "http://jabber.org/protocol/muc#user"),
        );
        let mut known = envelope(&message("x"));
        known.from_room = true; // from a room the host is in
        for e in [envelope(&groupchat), envelope(&private), known] {
            let o = decide(&e, HOST, Err(DeliveryError::Timeout));
            assert!(o.stanzas.is_empty() && o.error_withheld, "{e:?}");
            assert!(o
                .log
                .unwrap()
                .1
                .ends_with("(no error sent to the room: it would kick the bot)"));
            let ok = decide(&e, HOST, Ok(json_answer(json!({"body": "hi"}))));
            assert_eq!(ok.stanzas.len(), 1);
        }
        // The room only passes an IQ error on, and a get must be answered.
        let mut get = envelope(&iq("get"));
        get.from_room = true;
        let o = decide(&get, HOST, Err(DeliveryError::Timeout));
        assert_eq!((o.stanzas.len(), o.error_withheld), (1, false));
        // Nor is anything withheld from what is never answered anyway.
        let mut bounced = envelope(&groupchat);
        bounced.stanza_type = Some("error".into());
        assert!(!decide(&bounced, HOST, Err(DeliveryError::Timeout)).error_withheld);
    }

    #[test]
    fn an_iq_whose_file_reply_fails_gets_the_error_only() {
        let get = envelope(&iq("get"));
        let o = decide(&get, HOST, Ok(json_answer(json!({"body": "hi"}))));
        let failed = Err(UploadError::Timeout);
        let o = with_file(o, &get, failed);
        let kinds: Vec<_> = o
            .stanzas
            .iter()
            .map(|s| (s.name.as_str(), s.attr("type")))
            .collect();
        assert_eq!(kinds, [("message", Some("chat")), ("iq", Some("error"))]);
    }

    #[test]
    fn health_changes_status_once_per_change() {
        let mut health = Health::default();
        assert_eq!(health.observe("2xx"), None);
        assert_eq!(
            health.observe("timeout"),
            Some(Status::Unreachable("timeout"))
        );
        assert_eq!(health.observe("unreachable"), None);
        assert_eq!(health.observe("refused"), None);
        assert_eq!(health.observe("5xx"), Some(Status::Answering));
        assert_eq!(health.observe("4xx"), None);
        assert_eq!(
            Status::Unreachable("timeout").text(),
            "web service unreachable (timeout)"
        );
        assert!(Status::Answering.overrides() && !Status::CircuitOpen.overrides());
    }

    #[test]
    fn each_error_has_its_label_and_level() {
        let status = |status| DeliveryError::Reply(ReplyError::Status { status, text: None });
        let invalid = DeliveryError::Reply(ReplyError::Invalid("x".into()));
        assert_eq!(status(503).label(), "5xx");
        assert_eq!(status(503).log_level(), LogLevel::Warn);
        assert_eq!(invalid.label(), "invalid_reply");
        assert_eq!(invalid.log_level(), LogLevel::Error);
        assert_eq!(
            invalid.stanza_error().text.as_deref(),
            Some("the bot's web service failed: invalid reply: x")
        );
        assert_eq!(DeliveryError::QueueFull.label(), "refused");
        assert_eq!(DeliveryError::Timeout.log_level(), LogLevel::Warn);
    }
}
