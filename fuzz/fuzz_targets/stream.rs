//! Streamed answers (docs/contract.md §18): whatever lines a web service
//! streams, at whatever times, no panic; everything sent is a message from
//! the component's domain, the first without a correction, every later one
//! a correction of the first with an id of its own; the last line always
//! goes.
#![no_main]

use std::time::{Duration, Instant};

use component_http::conversion::stream::Stream;
use component_http::conversion::Envelope;
use component_http::xml;
use libfuzzer_sys::fuzz_target;

const CORRECTION: &str = "urn:xmpp:message-correct:0";

fuzz_target!(|data: &[u8]| {
    let request = xml::parse(
        "<message from='alice@localhost/r' to='bot@bot.localhost' type='chat' id='m1'><body>hi</body></message>",
    )
    .expect("a message");
    let envelope = Envelope::of(&request).expect("an envelope");
    let mut stream =
        Stream::new(&envelope, "bot.localhost", Duration::from_millis(100)).expect("a stream");
    let start = Instant::now();
    let mut n = 0u32;
    let mut first: Option<String> = None;
    let mut sent = Vec::new();
    // Each line's first byte is how long after the one before it came (ms).
    let mut at = start;
    for line in data.split(|b| *b == b'\n') {
        let Some((delay, line)) = line.split_first() else {
            continue;
        };
        at += Duration::from_millis(u64::from(*delay));
        sent.extend(stream.tick(at));
        let result = stream.line(line, at, || {
            n += 1;
            format!("s{n}")
        });
        match result {
            Ok(went) => sent.extend(went),
            Err(_) => break,
        }
    }
    sent.extend(stream.finish());
    assert_eq!(sent.len(), stream.sent);
    for message in &sent {
        assert_eq!(message.name, "message");
        assert!(message
            .attr("from")
            .is_some_and(|f| f.ends_with("bot.localhost")));
        let id = message.attr("id").expect("an id").to_owned();
        let replaces = message
            .child("replace", Some(CORRECTION))
            .and_then(|r| r.attr("id"));
        match &first {
            None => {
                assert!(replaces.is_none());
                first = Some(id);
            }
            Some(first) => {
                assert_eq!(replaces, Some(first.as_str()));
                assert_ne!(&id, first);
            }
        }
    }
});
