//! Streamed answers (docs/contract.md §18), the rules: a web service that
//! answers a message with `application/x-ndjson` sends one JSON object per
//! line as it writes its text. The first line with a `body` goes as a
//! message; each later one, the whole text so far, as a XEP-0308 correction
//! of it, at most one per `component_post_stream_interval` (the newest line
//! wins, the last is always sent). [`Stream`] decides what goes when, with
//! the clock in hand (`delivery::stream` reads the lines).

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::envelope::{Envelope, Kind};
use super::ns;
use super::reply::{is_media_type, reply_for, HttpAnswer, ReplyError};
use crate::xml::{Element, Node};

/// The media type of a streamed answer.
pub const NDJSON: &str = "application/x-ndjson";

/// The keys the first line sets for the whole stream.
const HEAD: [&str; 4] = ["to", "from", "kind", "type"];

/// Whether an answer is a stream (a 2xx with the NDJSON media type).
pub fn is_stream(status: u16, content_type: Option<&str>) -> bool {
    (200..300).contains(&status) && is_media_type(content_type, NDJSON)
}

/// One stream's state: what was sent, what waits for its turn.
#[derive(Debug)]
pub struct Stream<'a> {
    envelope: &'a Envelope,
    host: &'a str,
    interval: Duration,
    /// The first line's `to`, `from`, `kind` and `type`.
    head: Option<Map<String, Value>>,
    /// The first message's id, once sent, and when the last went.
    first: Option<(String, Instant)>,
    /// The newest correction not yet sent.
    pending: Option<Element>,
    /// Messages sent (the first and its corrections).
    pub sent: usize,
}

impl<'a> Stream<'a> {
    /// A stream answering `envelope`: messages only (an IQ or a presence
    /// answered with a stream is an invalid reply).
    pub fn new(
        envelope: &'a Envelope,
        host: &'a str,
        interval: Duration,
    ) -> Result<Self, ReplyError> {
        if envelope.kind != Kind::Message {
            return Err(ReplyError::Invalid(format!(
                "a stream ({NDJSON}) answers messages only, not a {}",
                envelope.kind.as_str()
            )));
        }
        Ok(Stream {
            envelope,
            host,
            interval,
            head: None,
            first: None,
            pending: None,
            sent: 0,
        })
    }

    /// One line (without its `\n`), read at `now`: what to send now. `id`
    /// makes a fresh stanza id. An error names what is wrong with it.
    pub fn line(
        &mut self,
        line: &[u8],
        now: Instant,
        id: impl FnOnce() -> String,
    ) -> Result<Vec<Element>, ReplyError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let mut object = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(invalid("a line is not a JSON object")),
            Err(e) => return Err(invalid(&format!("a line is not valid JSON: {e}"))),
        };
        for key in ["stanza", "file"] {
            if object.contains_key(key) {
                return Err(invalid(&format!("'{key}' cannot be in a stream")));
            }
        }
        // The first line says where the stream goes; later ones cannot change it.
        match &self.head {
            None => {
                let head = HEAD
                    .iter()
                    .filter_map(|k| object.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect();
                self.head = Some(head);
            }
            Some(head) => {
                for key in HEAD {
                    match head.get(key) {
                        Some(value) => object.insert(key.to_owned(), value.clone()),
                        None => object.remove(key),
                    };
                }
            }
        }
        if object.get("body").is_none_or(Value::is_null) {
            return Ok(Vec::new()); // nothing to show yet, or to correct
        }
        let mut message = self.message(&object)?;
        match &mut self.first {
            None => {
                let first = match message.attr("id") {
                    Some(given) => given.to_owned(),
                    None => id(),
                };
                message.set_attr("id", first.as_str());
                self.first = Some((first, now));
                self.sent = 1;
                Ok(vec![message])
            }
            Some((first, last)) => {
                message.set_attr("id", id());
                message.children.retain(
                    |c| !matches!(c, Node::Element(e) if e.attr("xmlns") == Some(ns::CORRECTION)),
                );
                let replace = Element::new("replace")
                    .with_attr("xmlns", ns::CORRECTION)
                    .with_attr("id", first.as_str());
                message.children.push(Node::Element(replace));
                if now >= *last + self.interval {
                    *last = now;
                    self.pending = None;
                    self.sent += 1;
                    Ok(vec![message])
                } else {
                    self.pending = Some(message);
                    Ok(Vec::new())
                }
            }
        }
    }

    /// When the pending correction may go, if one waits.
    pub fn due(&self) -> Option<Instant> {
        let (_, last) = self.first.as_ref()?;
        self.pending.as_ref().map(|_| *last + self.interval)
    }

    /// The pending correction, if its turn has come at `now`.
    pub fn tick(&mut self, now: Instant) -> Option<Element> {
        if self.due().is_some_and(|due| due <= now) {
            if let Some((_, last)) = &mut self.first {
                *last = now;
            }
            self.sent += 1;
            return self.pending.take();
        }
        None
    }

    /// The stream ended or broke: the pending correction goes at once.
    pub fn finish(&mut self) -> Option<Element> {
        let pending = self.pending.take();
        self.sent += usize::from(pending.is_some());
        pending
    }

    fn message(&self, object: &Map<String, Value>) -> Result<Element, ReplyError> {
        let answer = HttpAnswer {
            status: 200,
            content_type: Some("application/json".into()),
            retry_after: None,
            body: serde_json::to_vec(object).unwrap_or_default(),
        };
        match reply_for(self.envelope, self.host, &answer)? {
            Some(message) if message.name == "message" => Ok(message),
            _ => Err(invalid("a stream sends messages only")),
        }
    }
}

fn invalid(why: &str) -> ReplyError {
    ReplyError::Invalid(why.to_owned())
}

/// A whole NDJSON answer read at once (durable delivery's retries read
/// answers whole): as a stream whose lines all came together, its first
/// message, then its last correction.
pub fn whole(
    envelope: &Envelope,
    host: &str,
    body: &[u8],
    mut id: impl FnMut() -> String,
) -> Result<Vec<Element>, ReplyError> {
    let now = Instant::now();
    let mut stream = Stream::new(envelope, host, Duration::from_secs(1))?;
    let mut sent = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        sent.extend(stream.line(line, now, &mut id)?);
    }
    sent.extend(stream.finish());
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversion::examples::{envelope, iq, message};

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("s{n}")
        }
    }

    #[test]
    fn the_first_body_then_corrections_no_more_often_than_the_interval() {
        let e = envelope(&message("hi"));
        let mut s = Stream::new(&e, "bot.localhost", Duration::from_secs(1)).unwrap();
        let t0 = Instant::now();
        let mut id = ids();
        assert!(s
            .line(b"{\"state\": \"composing\"}", t0, &mut id)
            .unwrap()
            .is_empty());
        let first = s.line(b"{\"body\": \"Once\"}", t0, &mut id).unwrap();
        assert_eq!(first[0].attr("id"), Some("s1"));
        assert_eq!(first[0].child("body", None).unwrap().text(), "Once");
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(s
            .line(b"{\"body\": \"Once upon\"}", ms(300), &mut id)
            .unwrap()
            .is_empty());
        assert!(s
            .line(b"{\"body\": \"Once upon a\"}", ms(600), &mut id)
            .unwrap()
            .is_empty());
        assert_eq!(s.due(), Some(ms(1000)));
        assert!(s.tick(ms(900)).is_none());
        let correction = s.tick(ms(1000)).unwrap();
        assert_eq!(
            correction.child("body", None).unwrap().text(),
            "Once upon a",
            "the newest"
        );
        assert_eq!(
            correction
                .child("replace", Some(ns::CORRECTION))
                .unwrap()
                .attr("id"),
            Some("s1")
        );
        assert_ne!(correction.attr("id"), Some("s1"));
        // Past the interval a line goes at once; the last always goes.
        let now = s
            .line(b"{\"body\": \"Once upon a time\"}", ms(2500), &mut id)
            .unwrap();
        assert_eq!(now.len(), 1);
        assert!(s
            .line(b"{\"body\": \"Once upon a time.\"}", ms(2600), &mut id)
            .unwrap()
            .is_empty());
        let last = s.finish().unwrap();
        assert_eq!(
            last.child("body", None).unwrap().text(),
            "Once upon a time."
        );
        assert_eq!(s.sent, 4);
        assert!(s.finish().is_none());
    }

    #[test]
    fn the_first_line_says_where_the_stream_goes() {
        let e = envelope(&message("hi"));
        let mut s = Stream::new(&e, "bot.localhost", Duration::ZERO).unwrap();
        let t = Instant::now();
        let first = s
            .line(b"{\"body\": \"a\", \"type\": \"normal\"}", t, || "f".into())
            .unwrap();
        let later = s
            .line(
                b"{\"body\": \"ab\", \"type\": \"headline\", \"to\": \"x@y\"}",
                t,
                || "g".into(),
            )
            .unwrap();
        assert_eq!(first[0].attr("type"), Some("normal"));
        assert_eq!(later[0].attr("type"), Some("normal"));
        assert_eq!(later[0].attr("to"), first[0].attr("to"));
    }

    #[test]
    fn what_a_stream_may_not_do() {
        let e = envelope(&message("hi"));
        let mut s = Stream::new(&e, "bot.localhost", Duration::ZERO).unwrap();
        let t = Instant::now();
        let error =
            |s: &mut Stream, line: &[u8]| s.line(line, t, || "x".into()).unwrap_err().to_string();
        assert!(error(&mut s, b"{\"stanza\": \"<message/>\"}")
            .contains("'stanza' cannot be in a stream"));
        assert!(error(&mut s, b"[1]").contains("not a JSON object"));
        assert!(error(&mut s, b"{\"body\": ").contains("not valid JSON"));
        assert!(
            error(&mut s, b"{\"body\": \"x\", \"kind\": \"presence\"}").contains("messages only")
        );
        let get = envelope(&iq("get"));
        assert!(Stream::new(&get, "bot.localhost", Duration::ZERO).is_err());
    }

    #[test]
    fn a_whole_body_sends_the_first_and_the_last() {
        let e = envelope(&message("hi"));
        let sent = whole(
            &e,
            "bot.localhost",
            b"{\"body\":\"a\"}\n{\"body\":\"ab\"}\n{\"body\":\"abc\"}\n",
            ids(),
        )
        .unwrap();
        let bodies: Vec<String> = sent
            .iter()
            .map(|m| m.child("body", None).unwrap().text())
            .collect();
        assert_eq!(bodies, ["a", "abc"]);
    }
}
