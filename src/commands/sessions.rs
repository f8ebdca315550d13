//! The sessions of commands being run (XEP-0050 §3.3): which node each
//! runs and for which full JID, until it completes, is canceled, or sees
//! no step for the timeout. A pure state machine: the clock is a
//! parameter. Bounded: at most [`MAX_SESSIONS`] per host and
//! [`MAX_PER_SENDER`] per sender (bare JID); past either, the least
//! recently stepped goes, so one sender cannot push out the others'.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::forms::FieldTypes;
use crate::jid;

pub const MAX_SESSIONS: usize = 10_000;
pub const MAX_PER_SENDER: usize = 100;

/// When a session was last stepped, unique among the host's sessions.
type Stamp = (Instant, u64);

#[derive(Debug)]
struct Session {
    node: String,
    jid: String,
    stepped: Stamp,
    /// The fields of the last form sent in this session.
    sent: FieldTypes,
}

/// Why a step does not belong to a session (answered `bad-sessionid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Never opened, or closed, expired or pushed out.
    NoSuchSession,
    /// Opened by another full JID.
    OtherSender,
    /// Opened for another node.
    OtherNode,
}

#[derive(Debug)]
pub struct Sessions {
    open: HashMap<String, Session>,
    by_age: BTreeMap<Stamp, String>,
    by_sender: HashMap<String, BTreeMap<Stamp, String>>,
    next: u64,
    timeout: Duration,
}

impl Sessions {
    pub fn new(timeout: Duration) -> Sessions {
        Sessions {
            open: HashMap::new(),
            by_age: BTreeMap::new(),
            by_sender: HashMap::new(),
            next: 0,
            timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn stamp(&mut self, now: Instant) -> Stamp {
        self.next += 1;
        (now, self.next)
    }

    /// Opens session `id` of `node` for `jid` (a full JID).
    pub fn open(&mut self, id: String, node: &str, jid: &str, now: Instant) {
        self.expire(now);
        let sender = jid::bare(jid).to_owned();
        if self.by_sender.get(&sender).map_or(0, BTreeMap::len) >= MAX_PER_SENDER {
            if let Some(oldest) = self.by_sender[&sender].values().next().cloned() {
                self.close(&oldest);
            }
        }
        if self.open.len() >= MAX_SESSIONS {
            if let Some(oldest) = self.by_age.values().next().cloned() {
                self.close(&oldest);
            }
        }
        let stepped = self.stamp(now);
        self.by_age.insert(stepped, id.clone());
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(stepped, id.clone());
        let session = Session {
            node: node.to_owned(),
            jid: jid.to_owned(),
            stepped,
            sent: FieldTypes::default(),
        };
        self.open.insert(id, session);
    }

    /// A later step of session `id`, by `jid` for `node`: the fields of the
    /// form last sent in it, or why the step is not the session's.
    pub fn step(
        &mut self,
        id: &str,
        node: &str,
        jid: &str,
        now: Instant,
    ) -> Result<FieldTypes, Unknown> {
        self.expire(now);
        let session = self.open.get(id).ok_or(Unknown::NoSuchSession)?;
        if session.jid != jid {
            return Err(Unknown::OtherSender);
        }
        if session.node != node {
            return Err(Unknown::OtherNode);
        }
        let sent = session.sent.clone();
        self.touch(id, now);
        Ok(sent)
    }

    fn touch(&mut self, id: &str, now: Instant) {
        let stepped = self.stamp(now);
        let Some(session) = self.open.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut session.stepped, stepped);
        self.by_age.remove(&old);
        self.by_age.insert(stepped, id.to_owned());
        if let Some(mine) = self.by_sender.get_mut(jid::bare(&session.jid)) {
            mine.remove(&old);
            mine.insert(stepped, id.to_owned());
        }
    }

    /// The web service sent a form in session `id`: its fields' types.
    pub fn sent(&mut self, id: &str, fields: FieldTypes) {
        if let Some(session) = self.open.get_mut(id) {
            session.sent = fields;
        }
    }

    pub fn close(&mut self, id: &str) {
        let Some(session) = self.open.remove(id) else {
            return;
        };
        self.by_age.remove(&session.stepped);
        let sender = jid::bare(&session.jid);
        if let Some(mine) = self.by_sender.get_mut(sender) {
            mine.remove(&session.stepped);
            if mine.is_empty() {
                self.by_sender.remove(sender);
            }
        }
    }

    /// Closes the sessions that saw no step for the timeout.
    pub fn expire(&mut self, now: Instant) {
        while let Some((&(stepped, _), id)) = self.by_age.iter().next() {
            if now.saturating_duration_since(stepped) < self.timeout {
                break;
            }
            let id = id.clone();
            self.close(&id);
        }
    }

    /// A reload: the sessions of the module before go on here.
    pub fn take(&mut self, other: &mut Sessions) {
        let timeout = self.timeout;
        std::mem::swap(self, other);
        self.timeout = timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice@localhost/phone";

    fn sessions() -> (Sessions, Instant) {
        (Sessions::new(Duration::from_secs(600)), Instant::now())
    }

    #[test]
    fn a_step_must_come_from_the_same_full_jid_for_the_same_node() {
        let (mut s, t0) = sessions();
        s.open("s1".into(), "weather", ALICE, t0);
        assert_eq!(
            s.step("s1", "weather", ALICE, t0),
            Ok(FieldTypes::default())
        );
        assert_eq!(
            s.step("s1", "weather", "alice@localhost/laptop", t0),
            Err(Unknown::OtherSender)
        );
        assert_eq!(
            s.step("s1", "weather", "mallory@localhost/phone", t0),
            Err(Unknown::OtherSender)
        );
        assert_eq!(s.step("s1", "help", ALICE, t0), Err(Unknown::OtherNode));
        assert_eq!(
            s.step("s2", "weather", ALICE, t0),
            Err(Unknown::NoSuchSession)
        );
        s.close("s1");
        assert_eq!(
            s.step("s1", "weather", ALICE, t0),
            Err(Unknown::NoSuchSession)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_session_expires_after_the_timeout_without_a_step() {
        let (mut s, t0) = sessions();
        s.open("s1".into(), "n", ALICE, t0);
        let later = t0 + Duration::from_secs(599);
        assert!(s.step("s1", "n", ALICE, later).is_ok());
        // Stepped at `later`: its timeout counts from there.
        assert!(s
            .step("s1", "n", ALICE, later + Duration::from_secs(599))
            .is_ok());
        let expired = later + Duration::from_secs(599 + 600);
        assert_eq!(
            s.step("s1", "n", ALICE, expired),
            Err(Unknown::NoSuchSession)
        );
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn the_fields_of_the_form_sent_are_remembered() {
        let (mut s, t0) = sessions();
        s.open("s1".into(), "n", ALICE, t0);
        let form =
            crate::xml::parse("<x xmlns='jabber:x:data'><field var='ok' type='boolean'/></x>")
                .unwrap();
        s.sent("s1", FieldTypes::of(&form));
        assert_eq!(s.step("s1", "n", ALICE, t0).unwrap(), FieldTypes::of(&form));
    }

    #[test]
    fn past_the_caps_the_least_recently_stepped_goes() {
        let (mut s, t0) = sessions();
        let mut now = t0;
        for i in 0..MAX_SESSIONS {
            now += Duration::from_micros(1);
            s.open(format!("s{i}"), "n", &format!("u{i}@localhost/r"), now);
        }
        // s0 stepped again: s1 is now the least recently stepped.
        assert!(s.step("s0", "n", "u0@localhost/r", now).is_ok());
        s.open("new".into(), "n", ALICE, now);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.step("s0", "n", "u0@localhost/r", now).is_ok());
        assert_eq!(
            s.step("s1", "n", "u1@localhost/r", now),
            Err(Unknown::NoSuchSession)
        );
    }

    #[test]
    fn one_sender_cannot_push_out_the_others() {
        let (mut s, t0) = sessions();
        s.open("bob".into(), "n", "bob@localhost/r", t0);
        for i in 0..MAX_PER_SENDER + 5 {
            s.open(format!("m{i}"), "n", "mallory@localhost/r", t0);
        }
        assert_eq!(s.len(), MAX_PER_SENDER + 1);
        assert!(s.step("bob", "n", "bob@localhost/r", t0).is_ok());
        assert!(s.step("m4", "n", "mallory@localhost/r", t0).is_err());
        assert!(s.step("m5", "n", "mallory@localhost/r", t0).is_ok());
    }

    #[test]
    fn a_reload_takes_the_sessions_with_the_new_timeout() {
        let (mut old, t0) = sessions();
        old.open("s1".into(), "n", ALICE, t0);
        let mut new = Sessions::new(Duration::from_secs(5));
        new.take(&mut old);
        assert!(old.is_empty());
        assert!(new
            .step("s1", "n", ALICE, t0 + Duration::from_secs(4))
            .is_ok());
        assert!(new
            .step("s1", "n", ALICE, t0 + Duration::from_secs(10))
            .is_err());
    }
}
