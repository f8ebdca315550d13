//! Streamed answers (docs/contract.md §18), followed off Prosody's thread:
//! the lines of an `application/x-ndjson` answer are read as they come and
//! handed to [`Stream`], whose messages are queued as they go.

use std::time::Instant;

use tokio::time::{sleep_until, timeout_at};

use super::http::transport_error;
use super::outcome::{DeliveryError, Outcome};
use super::shared::{Job, Shared};
use super::typing::chat_state;
use crate::config::Config;
use crate::conversion::stream::Stream;
use crate::conversion::ReplyError;
use crate::log::LogLevel;
use crate::signing;
use crate::xml::Element;

fn invalid(why: &str) -> ReplyError {
    ReplyError::Invalid(why.to_owned())
}

/// Follows a stream answering `job` until it ends, breaks, or reaches
/// `component_post_stream_timeout` (from `started`, the POST's start), its
/// first line due by `first_by`. Its messages are queued as they go; the
/// sender sees the bot typing meanwhile (`active` is then owed: set in
/// `active`). Returns what is left to send when it is over, or, when
/// nothing was sent, why (the sender's error).
pub(super) async fn follow(
    shared: &Shared,
    config: &Config,
    job: &Job,
    mut response: reqwest::Response,
    started: Instant,
    first_by: Instant,
    active: &mut Option<Element>,
) -> Result<Outcome, DeliveryError> {
    let send = |stanza: Element| {
        shared.outbox.queue(Outcome {
            stanzas: vec![stanza],
            ..Outcome::default()
        })
    };
    let mut stream = Stream::new(&job.envelope, &config.host, config.stream_interval)?;
    if active.is_none() {
        if let Some(composing) = chat_state(&job.envelope, job.has_body, "composing") {
            send(composing);
            *active = chat_state(&job.envelope, job.has_body, "active");
        }
    }
    let id = || signing::unguessable_id("stream_");
    let ends = started + config.stream_timeout;
    let mut buffer: Vec<u8> = Vec::new();
    let ended: Result<(), DeliveryError> = loop {
        let read_by = if stream.sent == 0 {
            first_by.min(ends)
        } else {
            ends
        };
        let due = stream.due();
        tokio::select! {
            biased;
            () = sleep_until(due.unwrap_or(read_by).into()), if due.is_some() => {
                stream.tick(Instant::now()).into_iter().for_each(send);
            }
            chunk = timeout_at(read_by.into(), response.chunk()) => match chunk {
                Err(_) if stream.sent == 0 && read_by < ends => break Err(DeliveryError::Timeout),
                Err(_) => break Err(DeliveryError::Reply(invalid("component_post_stream_timeout was reached"))),
                Ok(Err(e)) => break Err(transport_error(e)),
                Ok(Ok(None)) => {
                    let last = std::mem::take(&mut buffer);
                    match stream.line(&last, Instant::now(), id) {
                        Ok(sent) => sent.into_iter().for_each(send),
                        Err(e) => break Err(e.into()),
                    }
                    break Ok(());
                }
                Ok(Ok(Some(bytes))) => {
                    buffer.extend_from_slice(&bytes);
                    if let Err(e) = lines(&mut stream, &mut buffer, config.max_response, send) {
                        break Err(e.into());
                    }
                }
            }
        }
    };
    let went = stream.sent;
    let rest: Vec<Element> = stream.finish().into_iter().collect();
    match ended {
        Ok(()) => Ok(Outcome {
            stanzas: rest,
            label: "2xx",
            ..Outcome::default()
        }),
        // Nothing went yet: as any failed answer, the sender hears why.
        Err(error @ (DeliveryError::Timeout | DeliveryError::Reply(_))) if went == 0 => Err(error),
        Err(other) if went == 0 => Err(DeliveryError::Reply(invalid(&format!(
            "the stream broke off: {other}"
        )))),
        Err(error) => {
            let line = format!(
                "The stream answering {} broke off after {went} messages, which stay: {error}",
                job.envelope.describe(),
            );
            Ok(Outcome {
                stanzas: rest,
                label: "2xx",
                ..Outcome::log_only(LogLevel::Warn, line)
            })
        }
    }
}

/// Feeds the whole lines in `buffer` to `stream`, sending what it says;
/// a line longer than `max` is an error.
fn lines(
    stream: &mut Stream,
    buffer: &mut Vec<u8>,
    max: usize,
    send: impl Fn(Element),
) -> Result<(), ReplyError> {
    let mut start = 0;
    while let Some(end) = memchr::memchr(b'\n', &buffer[start..]) {
        let line = &buffer[start..start + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for stanza in stream.line(line, Instant::now(), || signing::unguessable_id("stream_"))? {
            send(stanza);
        }
        start += end + 1;
    }
    buffer.drain(..start);
    if buffer.len() > max {
        return Err(invalid("a line is longer than component_post_max_response"));
    }
    Ok(())
}
