//! The delivery of one host against real loopback HTTP servers.

use super::pipeline::TaskGuard;
use super::runtime::lock;
use super::shared::{Job, OwedStanza};
use super::*;
use crate::clock::unix_millis;
use crate::config::Options;
use crate::conversion;
use crate::options;
use crate::xml::Element;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// A one-connection HTTP server on loopback answering `answer`, or
/// holding the connection open without answering when it is `None`.
fn serve_once(answer: Option<&'static str>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        // Bounded: a cancelled request may never connect at all.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return,
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        match answer {
            Some(answer) => stream.write_all(answer.as_bytes()).unwrap(),
            None => std::thread::sleep(Duration::from_secs(2)),
        }
    });
    (url, server)
}

fn delivery(url: &str) -> Delivery {
    let config = Config::new(
        Options::new("bot.localhost")
            .with(&options::URL, url)
            .with(&options::STANZAS, vec!["message"])
            .with(&options::RETRIES, 0.0),
    )
    .unwrap();
    Delivery::new(config).unwrap()
}

fn request() -> Request {
    let stanza = Element::new("message")
        .with_attr("to", "echo@bot.localhost")
        .with_attr("from", "u@localhost/r")
        .with_attr("id", "m1")
        .with_child(Element::new("body").with_text("hi"));
    conversion::request(&stanza).unwrap()
}

/// Waits (bounded) for the fd to become readable, as Prosody would.
fn wait_readable(delivery: &Delivery) -> bool {
    let mut pfd = libc::pollfd {
        fd: delivery.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, 10_000) == 1 }
}

fn xml(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .flat_map(|o| o.stanzas.iter().map(Element::to_xml))
        .collect()
}

#[test]
fn answer_arrives_through_the_fd() {
    let (url, server) = serve_once(Some(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"body\": \"yes\"}\n",
    ));
    let d = delivery(&url);
    d.submit(request());
    assert!(wait_readable(&d));
    assert_eq!(
        xml(&d.drain()),
        ["<message to='u@localhost/r' from='echo@bot.localhost' type='chat'><body>yes</body></message>"]
    );
    assert_eq!(d.owed(), 0);
    // Drained: the fd is quiet again.
    let mut pfd = libc::pollfd {
        fd: d.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    server.join().unwrap();
}

#[test]
fn refused_connection_is_an_error_reply() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = delivery(&format!("http://127.0.0.1:{port}/"));
    d.submit(request());
    assert!(wait_readable(&d));
    let outcomes = d.drain();
    let replies = xml(&outcomes);
    assert_eq!(replies.len(), 1);
    assert!(replies[0].contains("type='error'") && replies[0].contains("remote-server-timeout"));
    assert!(outcomes[0]
        .log
        .as_ref()
        .unwrap()
        .1
        .contains("connection failed"));
}

#[test]
fn a_panicking_task_still_answers_its_stanza() {
    let d = delivery("http://127.0.0.1:9/");
    let request = request();
    lock(&d.shared.owed).insert(
        7,
        OwedStanza {
            job: Arc::new(Job {
                envelope: request.envelope,
                json: request.json,
                delivery_id: "msg_test".into(),
                received: 0,
                conversation: String::new(),
                xml: None,
                command: None,
                has_body: true,
            }),
            abort: None,
        },
    );
    let guard = TaskGuard::new(Arc::clone(&d.shared), 7, String::new());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _guard = guard;
        panic!("a bug in a delivery task");
    }));
    assert!(panicked.is_err());
    assert!(wait_readable(&d));
    let replies = xml(&d.drain());
    assert_eq!(replies.len(), 1);
    assert!(replies[0].contains("internal-server-error"), "{replies:?}");
    assert_eq!(d.owed(), 0);
}

fn durable_delivery(url: &str, max_age: f64) -> Delivery {
    let config = Config::new(
        Options::new("bot.localhost")
            .with(&options::URL, url)
            .with(&options::STANZAS, vec!["message"])
            .with(&options::RETRIES, 0.0)
            .with(&options::DURABLE, true)
            .with(&options::MAX_AGE, max_age),
    )
    .unwrap();
    Delivery::new(config).unwrap()
}

fn refused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/")
}

/// Drains until an outcome carries storage, bounded.
fn storage(d: &Delivery) -> Vec<(Vec<String>, Storage)> {
    for _ in 0..50 {
        if !wait_readable(d) {
            break;
        }
        let found: Vec<_> = d
            .drain()
            .into_iter()
            .filter_map(|o| {
                let replies = o.stanzas.iter().map(Element::to_xml).collect();
                o.storage.map(|s| (replies, s))
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

#[test]
fn durable_delivery_holds_what_the_service_cannot_take_without_answering() {
    let d = durable_delivery(&refused_url(), 3600.0);
    d.submit(request());
    let held = storage(&d);
    assert_eq!(held.len(), 1);
    let (replies, Storage::Hold(record)) = &held[0] else {
        panic!("expected a hold: {held:?}");
    };
    assert!(replies.is_empty(), "the sender hears nothing yet");
    assert!(record.id.starts_with("msg_"));
    assert!(record.stanza.starts_with("<message") && record.stanza.contains("<body>hi</body>"));
    assert_eq!(d.durable().unwrap().held_counts().held, 1);
    assert_eq!(d.durable().unwrap().held().0, vec![record.clone()]);

    // Purged by the admin: the sender is answered, the store forgets it.
    assert_eq!(d.durable().unwrap().purge(Some(&record.id)), 1);
    let purged = storage(&d);
    assert_eq!(purged[0].1, Storage::Forget(record.id.clone()));
    assert!(purged[0].0[0].contains("service-unavailable"));
    assert_eq!(d.durable().unwrap().held_counts().held, 0);
}

#[test]
fn past_the_durable_limit_stanzas_bounce_as_without_durable_delivery() {
    let limit = (&options::DURABLE_LIMIT, 1.0);
    // One stanza's XML is about 110 bytes.
    let bytes = (&options::DURABLE_BYTES, 150.0);
    for (limit, said) in [(limit, "at most 1 ("), (bytes, "at most 100000 (0 KiB)")] {
        bounces_past(limit, said);
    }
}

fn bounces_past((option, value): (&options::Spec, f64), said: &str) {
    let config = Config::new(
        Options::new("bot.localhost")
            .with(&options::URL, &*refused_url())
            .with(&options::STANZAS, vec!["message"])
            .with(&options::RETRIES, 0.0)
            .with(&options::DURABLE, true)
            .with(option, value),
    )
    .unwrap();
    let d = Delivery::new(config).unwrap();
    d.submit(request());
    assert!(matches!(storage(&d)[0].1, Storage::Hold(_)));
    let mut other = request();
    other.envelope.from = "v@localhost/r".into(); // another conversation
    d.submit(other);
    // The log line and the bounce may come in two drains.
    let mut outcomes = Vec::new();
    while xml(&outcomes).is_empty() && wait_readable(&d) {
        outcomes.extend(d.drain());
    }
    assert!(outcomes.iter().all(|o| o.storage.is_none()));
    assert!(outcomes.iter().any(|o| o
        .log
        .as_ref()
        .is_some_and(|(_, line)| line.contains("1 stanzas")
            && line.contains(said)
            && line.contains("bouncing more"))));
    let replies = xml(&outcomes);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].contains("remote-server-timeout") && replies[0].contains("connection failed")
    );
    assert_eq!(d.durable().unwrap().held_counts().held, 1);
}

#[test]
fn an_iq_is_never_held() {
    let d = durable_delivery(&refused_url(), 3600.0);
    let iq = Element::new("iq")
        .with_attr("to", "echo@bot.localhost")
        .with_attr("from", "u@localhost/r")
        .with_attr("type", "get")
        .with_attr("id", "q1")
        .with_child(Element::new("query").with_attr("xmlns", "urn:x"));
    d.submit(conversion::request(&iq).unwrap());
    assert!(wait_readable(&d));
    let outcomes = d.drain();
    assert!(outcomes.iter().all(|o| o.storage.is_none()));
    assert!(xml(&outcomes)[0].contains("remote-server-timeout"));
}

#[test]
fn held_stanzas_past_max_age_become_dead_letters_and_bounce() {
    let d = durable_delivery(&refused_url(), 0.2);
    d.submit(request());
    let mut seen = storage(&d);
    seen.extend(storage(&d));
    let dead = seen
        .iter()
        .find(|(_, s)| matches!(s, Storage::Dead(..)))
        .expect("a dead letter");
    assert!(dead.0[0].contains("remote-server-timeout"), "{dead:?}");
    assert!(dead.0[0].contains("not delivered in 0.2 s"), "{dead:?}");
    assert_eq!(d.durable().unwrap().held_counts().dead_letters, 1);
}

#[test]
fn restore_keeps_ids_and_dead_letters_unreadable_records() {
    let d = durable_delivery(&refused_url(), 3600.0);
    let stanza = request_xml();
    d.durable().unwrap().restore(
        vec![
            Record {
                id: "msg_b".into(),
                stanza: stanza.clone(),
                received: unix_millis() - 1,
            },
            Record {
                id: "msg_a".into(),
                stanza: stanza.clone(),
                received: unix_millis() - 2,
            },
            Record {
                id: "msg_bad".into(),
                stanza: "<message".into(),
                received: 1,
            },
        ],
        Source::Store { dead_letters: 3 },
    );
    let dead = storage(&d);
    assert_eq!(
        d.durable().unwrap().held_counts().dead_letters,
        4,
        "3 kept and 1 unreadable"
    );
    assert!(
        matches!(&dead[0].1, Storage::Dead(r, why) if r.id == "msg_bad" && why.contains("cannot be read"))
    );
    let ids: Vec<_> = d
        .durable()
        .unwrap()
        .held()
        .0
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["msg_a", "msg_b"], "oldest first");
    // Unloading keeps them in the store: nothing to answer, nothing to store.
    assert!(d.cancel_all("test").iter().all(|o| o.stanzas.is_empty()));
    assert_eq!(d.durable().unwrap().held_counts().held, 0);
}

#[test]
fn replayed_dead_letters_leave_the_count_and_arrive_anew() {
    let d = durable_delivery(&refused_url(), 3600.0);
    d.durable()
        .unwrap()
        .restore(Vec::new(), Source::Store { dead_letters: 2 });
    let replayed = Record {
        id: "msg_r".into(),
        stanza: request_xml(),
        received: 1,
    };
    d.durable()
        .unwrap()
        .restore(vec![replayed], Source::DeadLetters);
    assert_eq!(d.durable().unwrap().held_counts().dead_letters, 1);
    let stored = storage(&d);
    assert!(
        matches!(&stored[0].1, Storage::Hold(r) if r.id == "msg_r" && r.received > 1),
        "{stored:?}"
    );
    d.durable().unwrap().forget_dead_letters(5);
    assert_eq!(d.durable().unwrap().held_counts().dead_letters, 0);
}

fn request_xml() -> String {
    request().xml
}

#[test]
fn cancel_all_answers_in_flight_stanzas_once() {
    let (url, server) = serve_once(None);
    let d = delivery(&url);
    d.submit(request());
    assert_eq!(d.owed(), 1);
    let cancelled = d.cancel_all("test");
    let replies = xml(&cancelled);
    assert_eq!(replies.len(), 1);
    assert!(replies[0].contains("service-unavailable"), "{replies:?}");
    assert_eq!(d.owed(), 0);
    server.join().unwrap();
    // The aborted request never produces a second answer.
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.drain().is_empty());
}

#[test]
fn a_stanza_from_the_component_itself_is_not_posted() {
    let delivery = delivery("http://127.0.0.1:9/never");
    let stanza = Element::new("message")
        .with_attr("to", "echo@bot.localhost")
        .with_attr("from", "other@BOT.localhost/r")
        .with_child(Element::new("body").with_text("again"));
    delivery.submit(conversion::request(&stanza).unwrap());
    assert!(wait_readable(&delivery));
    let outcomes = delivery.drain();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].label, "loop");
    assert!(outcomes[0].stanzas.is_empty());
    assert!(outcomes[0].log.as_ref().unwrap().1.contains("a loop"));
    assert_eq!(delivery.owed(), 0, "never accepted");
}
