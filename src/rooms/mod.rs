//! Group chat (docs/contract.md §12): the rooms a component host is in, as a
//! pure state machine with the clock passed in. It says which presence to
//! send (joins, with backoff after a room went away), which room messages
//! the web service gets (not the bot's own, not the history and subject a
//! room sends on join), and what to remember in Prosody's storage. The Lua
//! side sends, stores and keeps the timer.

mod mention;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::conversion::ns::{
    DELAY as NS_DELAY, INTERNAL as NS_INTERNAL, MENTIONS_ONLY, MUC as NS_MUC,
    MUC_USER as NS_MUC_USER, RETRACT as NS_RETRACT, STANZA_ID as NS_STANZA_ID,
};
use crate::conversion::RoomJids;
pub use crate::effect::Effect;

/// A host's rooms, shared by what sends through them: its delivery's
/// replies, its push endpoint and its rooms' own userdata. Prosody's thread
/// only.
pub type SharedRooms = std::sync::Arc<std::sync::Mutex<Rooms>>;

/// The host's rooms, locked (a panic while they were held left them as
/// they were: still usable).
pub fn lock(rooms: &SharedRooms) -> std::sync::MutexGuard<'_, Rooms> {
    rooms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
use crate::config::RoomItem;
use crate::face::Face;
use crate::jid;
use crate::log::LogLevel;
use crate::stanza_error::XMLNS_STANZAS;
use crate::xml::{Element, Node};

/// Before joining a room again: from one second, doubling up to a minute.
const REJOIN: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
#[cfg(test)]
const MAX_RETRY: Duration = REJOIN.max;
/// A room that cannot be joined for this long is forgotten: its service
/// is gone, or was never there (a web service can name any room).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Join sent, no answer yet.
    Joining,
    /// In the room; `live` once the history and subject of the join are past.
    Joined { live: bool, since: String },
    /// Out of the room for now: joined again at `at`.
    Waiting { at: Instant },
    /// Kicked, banned, or refused for good: not joined again.
    Out,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Room {
    nick: String,
    /// The occupant's real JID: the component's domain, or the JID the web
    /// service joined from.
    jid: String,
    state: State,
    /// Joined by the web service: kept in storage.
    remembered: bool,
    retries: u32,
    /// Since when its joins fail, until one succeeds.
    failing_since: Option<Instant>,
    /// Its own setting, over the host's (§12).
    mentions_only: Option<bool>,
    /// The ids the bot gave its last messages here, and the room's own ids
    /// for them (XEP-0359, from their reflections): a retraction names the
    /// room's (§4.1).
    sent: VecDeque<(String, String)>,
}

/// How many of its own messages per room the bot knows the room's ids of.
const SENT_KEPT: usize = 100;

/// The rooms of one component host.
#[derive(Debug)]
pub struct Rooms {
    domain: String,
    default_nick: String,
    rooms: BTreeMap<String, Room>,
    /// The keys of `rooms`, for the deliveries (see [`RoomJids`]).
    jids: RoomJids,
    /// `component_post_max_rooms`.
    max_rooms: usize,
    /// Joins carry the avatar's hash (XEP-0153), as every presence does.
    face: Arc<Face>,
    /// The rooms of `component_post_rooms`, joined by [`Rooms::join_configured`].
    configured: Vec<RoomItem>,
    /// `component_post_room_mentions_only`.
    mentions_only: bool,
}

/// Whether a message to the component goes to the web service, and if it
/// does, whether it mentions the bot (a room message's `mentioned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    Post {
        mentioned: bool,
    },
    /// The bot's own, the history of a join, or (in a mentions-only room)
    /// a message that does not mention it.
    Ignore,
}

/// A join: presence to `room/nick` with the MUC element, asking for no history.
pub fn join_presence(from: &str, room: &str, nick: &str) -> Element {
    Element::new("presence")
        .with_attr("to", format!("{room}/{nick}"))
        .with_attr("from", from)
        .with_child(
            Element::new("x")
                .with_attr("xmlns", NS_MUC)
                .with_child(Element::new("history").with_attr("maxstanzas", "0")),
        )
}

fn statuses(stanza: &Element) -> Vec<String> {
    stanza
        .child("x", Some(NS_MUC_USER))
        .map(|x| {
            x.elements()
                .filter(|e| e.name == "status")
                .filter_map(|e| e.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The room (bare JID, lower case) a presence joins: one without a type,
/// to `room/nick`, with the MUC element.
pub fn joined_room(stanza: &Element) -> Option<String> {
    let (room, _) = stanza.attr("to")?.split_once('/')?;
    let joins = stanza.name == "presence"
        && stanza.attr("type").is_none()
        && stanza.child("x", Some(NS_MUC)).is_some();
    joins.then(|| room.to_lowercase())
}

/// Why `stanza` may not join its room: it is a join to a room the host is
/// not in, and the host is in `max_rooms` already
/// (`component_post_max_rooms`).
pub fn refuse_join(stanza: &Element, rooms: &RoomJids, max_rooms: usize) -> Option<String> {
    let room = joined_room(stanza)?;
    (!rooms.contains(&room) && rooms.len() >= max_rooms).then(|| {
        format!("joining {room} would make more rooms than component_post_max_rooms = {max_rooms}")
    })
}

/// Unix seconds as an XEP-0082 / RFC 3339 UTC stamp, as delay stamps are.
pub fn stamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A delay stamp or `now` as RFC 3339 seconds, for comparing as text.
fn seconds(stamp: &str) -> &str {
    stamp.get(..19).unwrap_or(stamp)
}

impl Rooms {
    pub fn new(domain: &str, nick: Option<&str>, jids: RoomJids, max_rooms: usize) -> Rooms {
        let default_nick = nick
            .map(str::to_owned)
            .unwrap_or_else(|| domain.split('.').next().unwrap_or(domain).to_owned());
        Rooms {
            domain: domain.to_owned(),
            default_nick,
            rooms: BTreeMap::new(),
            jids,
            max_rooms,
            face: Arc::default(),
            configured: Vec::new(),
            mentions_only: false,
        }
    }

    /// With the rooms of the config, and whether rooms hear only mentions.
    pub fn with_configured(mut self, rooms: Vec<RoomItem>, mentions_only: bool) -> Rooms {
        self.configured = rooms;
        self.mentions_only = mentions_only;
        self
    }

    /// Joins the rooms of `component_post_rooms`.
    pub fn join_configured(&mut self) -> Vec<Effect> {
        let rooms = std::mem::take(&mut self.configured);
        let effects = rooms
            .iter()
            .flat_map(|room| self.add(&room.jid, None, room.mentions_only))
            .collect();
        self.configured = rooms;
        effects
    }

    /// With the bot's face, which its joins show.
    pub fn with_face(mut self, face: Arc<Face>) -> Rooms {
        self.face = face;
        self
    }

    fn insert(&mut self, room: String, entry: Room) {
        self.jids.insert(&room);
        self.rooms.insert(room, entry);
    }

    fn remove(&mut self, room: &str) -> Option<Room> {
        self.jids.remove(room);
        self.rooms.remove(room)
    }

    /// The rooms this host is in, as the deliveries see them.
    pub fn jids(&self) -> &RoomJids {
        &self.jids
    }

    /// Joins `room@service[/nick]`: from the config (from the domain), or
    /// remembered (from the JID the web service joined from).
    pub fn add(
        &mut self,
        room_and_nick: &str,
        remembered_from: Option<&str>,
        mentions_only: Option<bool>,
    ) -> Vec<Effect> {
        let (room, nick) = match room_and_nick.split_once('/') {
            Some((room, nick)) if !nick.is_empty() => (room, nick.to_owned()),
            _ => (jid::bare(room_and_nick), self.default_nick.clone()),
        };
        if !room.contains('@') {
            return vec![Effect::Log(
                LogLevel::Error,
                format!(
                    "component_post_rooms: {room_and_nick:?} is not a room JID (room@service/nick)"
                ),
            )];
        }
        let room = room.to_lowercase();
        let jid = remembered_from.unwrap_or(&self.domain).to_owned();
        let mut join = join_presence(&jid, &room, &nick);
        self.face.dress(&mut join);
        if let Some(why) = refuse_join(&join, &self.jids, self.max_rooms) {
            return vec![Effect::Log(LogLevel::Error, format!("Not joining: {why}"))];
        }
        self.insert(
            room,
            Room {
                nick,
                jid,
                state: State::Joining,
                remembered: remembered_from.is_some(),
                retries: 0,
                failing_since: None,
                mentions_only,
                sent: VecDeque::new(),
            },
        );
        vec![Effect::Send(join)]
    }

    fn room_of(&mut self, from: &str) -> Option<(String, &mut Room)> {
        let room = jid::bare(from).to_lowercase();
        let entry = self.rooms.get_mut(&room)?;
        Some((room, entry))
    }

    fn wait(&mut self, room: &str, now: Instant, why: &str) -> Vec<Effect> {
        let Some(entry) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let since = *entry.failing_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= GIVE_UP_AFTER {
            let remembered = entry.remembered;
            self.remove(room);
            let mut effects = vec![Effect::Log(
                LogLevel::Warn,
                format!(
                    "Forgetting room {room} ({why}): it could not be joined for {} hours",
                    GIVE_UP_AFTER.as_secs() / 3600
                ),
            )];
            if remembered {
                effects.push(Effect::ForgetRoom {
                    room: room.to_owned(),
                });
            }
            return effects;
        }
        entry.retries += 1;
        let delay = REJOIN.wait(entry.retries);
        entry.state = State::Waiting { at: now + delay };
        vec![Effect::Log(
            LogLevel::Warn,
            format!(
                "Out of room {room} ({why}): joining again in {} s",
                delay.as_secs()
            ),
        )]
    }

    /// A presence to the component. `None` when it is not about this
    /// module's own place in a room (handle it as any presence); otherwise
    /// what to do, and whether the web service hears of it.
    pub fn presence(
        &mut self,
        stanza: &Element,
        now: Instant,
        now_stamp: &str,
    ) -> Option<(Vec<Effect>, bool)> {
        // A room's presences carry muc#user; its errors may not.
        if stanza.attr("type") != Some("error") && stanza.child("x", Some(NS_MUC_USER)).is_none() {
            return None;
        }
        let from = stanza.attr("from")?;
        let (room, entry) = self.room_of(from)?;
        let own = from.split_once('/').map(|(_, nick)| nick) == Some(entry.nick.as_str());
        let codes = statuses(stanza);
        if stanza.attr("type") == Some("error") {
            let error = stanza.child("error", None);
            let kind = error.and_then(|e| e.attr("type")).unwrap_or("cancel");
            let condition = error
                .and_then(|e| {
                    e.elements()
                        .find(|c| c.attr("xmlns") == Some(XMLNS_STANZAS))
                })
                .map_or("undefined-condition", |c| c.name.as_str())
                .to_owned();
            let passing = kind == "wait"
                || matches!(
                    condition.as_str(),
                    "remote-server-not-found"
                        | "remote-server-timeout"
                        | "service-unavailable"
                        | "internal-server-error"
                        | "resource-constraint"
                );
            if passing {
                return Some((self.wait(&room, now, &condition), false));
            }
            entry.state = State::Out;
            let mut effects = vec![Effect::Log(
                LogLevel::Error,
                format!(
                    "Cannot join room {room} as {}: {kind}/{condition}",
                    entry.nick
                ),
            )];
            if entry.remembered {
                effects.push(Effect::ForgetRoom { room });
            }
            return Some((effects, true));
        }
        if !own && !codes.iter().any(|c| c == "110") {
            return None;
        }
        if stanza.attr("type") == Some("unavailable") {
            let removed = if codes.iter().any(|c| c == "301") {
                Some("banned")
            } else if codes.iter().any(|c| c == "307") {
                Some("kicked")
            } else if stanza
                .child("x", Some(NS_MUC_USER))
                .and_then(|x| x.child("destroy", None))
                .is_some()
            {
                Some("the room was destroyed")
            } else {
                None
            };
            return Some(match removed {
                Some(how) => {
                    entry.state = State::Out;
                    let mut effects = vec![Effect::Log(
                        LogLevel::Warn,
                        format!("Left room {room}: {how}; not joining again"),
                    )];
                    if entry.remembered {
                        effects.push(Effect::ForgetRoom { room });
                    }
                    (effects, true)
                }
                None => (self.wait(&room, now, "the room service went away"), false),
            });
        }
        // The room may have given us another nick than we asked for (XEP-0045
        // status 210, or a nick change): the one in its self-presence is ours.
        if let Some((_, nick)) = from
            .split_once('/')
            .filter(|_| codes.iter().any(|c| c == "110"))
        {
            if nick != entry.nick {
                entry.nick = nick.to_owned();
            }
        }
        let first = !matches!(entry.state, State::Joined { .. });
        if first {
            entry.state = State::Joined {
                live: false,
                since: seconds(now_stamp).to_owned(),
            };
            entry.retries = 0;
            entry.failing_since = None;
            let nick = entry.nick.clone();
            return Some((
                vec![Effect::Log(
                    LogLevel::Info,
                    format!("Joined room {room} as {nick}"),
                )],
                false,
            ));
        }
        Some((Vec::new(), false))
    }

    /// Whether a message goes to the web service: from a room, not the
    /// bot's own (reflected), not the history and subject of a join,
    /// nothing delayed from before the join, and in a mentions-only room
    /// only what mentions the bot (§12). Other messages (private ones from
    /// occupants too) go.
    pub fn message(&mut self, stanza: &Element) -> Heard {
        if stanza.attr("type") != Some("groupchat") {
            return Heard::Post { mentioned: false };
        }
        let from = stanza.attr("from").unwrap_or_default();
        let mentions_only = self.mentions_only;
        let Some((room, entry)) = self.room_of(from) else {
            return Heard::Post { mentioned: false };
        };
        let State::Joined { live, since } = &mut entry.state else {
            return Heard::Ignore; // not in the room (yet): history of a join
        };
        let is_subject =
            stanza.child("subject", None).is_some() && stanza.child("body", None).is_none();
        let delay = stanza
            .child("delay", Some(NS_DELAY))
            .and_then(|d| d.attr("stamp"));
        if !*live {
            // A join brings history (each stanza delayed), then the subject;
            // a join that only updated our presence brings neither. The
            // subject, or the first message not delayed, ends it.
            if is_subject {
                *live = true;
                return Heard::Ignore;
            }
            if delay.is_some() {
                return Heard::Ignore;
            }
            *live = true;
        }
        if from.split_once('/').map(|(_, nick)| nick) == Some(entry.nick.as_str()) {
            // The bot's own, reflected: the room's id for it, if it gave one.
            let room_id = stanza
                .child("stanza-id", Some(NS_STANZA_ID))
                .filter(|s| {
                    s.attr("by")
                        .is_some_and(|by| by.eq_ignore_ascii_case(&room))
                })
                .and_then(|s| s.attr("id"));
            if let (Some(sent), Some(room_id)) = (stanza.attr("id"), room_id) {
                if entry.sent.len() == SENT_KEPT {
                    entry.sent.pop_front();
                }
                entry.sent.push_back((sent.to_owned(), room_id.to_owned()));
            }
            return Heard::Ignore;
        }
        if delay.is_some_and(|stamp| seconds(stamp) < since.as_str()) {
            return Heard::Ignore;
        }
        let mentioned = mention::mentions(stanza, &room, &entry.nick);
        if !mentioned && entry.mentions_only.unwrap_or(mentions_only) {
            return Heard::Ignore;
        }
        Heard::Post { mentioned }
    }

    /// A presence the web service sends (reply or push): a join (with the
    /// MUC element) to a room makes it one of ours, remembered; leaving one
    /// forgets it. Also whether to send it: not a join past the cap of
    /// rooms (the web service was told already, where it could be: see
    /// [`refuse_join`]).
    pub fn outgoing(&mut self, stanza: &Element) -> (Vec<Effect>, bool) {
        let Some(to) = stanza.attr("to") else {
            return (Vec::new(), true);
        };
        let Some((room, nick)) = to.split_once('/') else {
            return (Vec::new(), true);
        };
        let room = room.to_lowercase();
        if stanza.attr("type") == Some("unavailable") {
            let effects = match self.remove(&room) {
                Some(_) => vec![
                    Effect::Log(LogLevel::Info, format!("Leaving room {room}")),
                    Effect::ForgetRoom { room },
                ],
                None => Vec::new(),
            };
            return (effects, true);
        }
        if let Some(why) = refuse_join(stanza, &self.jids, self.max_rooms) {
            return (
                vec![Effect::Log(LogLevel::Error, format!("Not joining: {why}"))],
                false,
            );
        }
        let own_join = self.rooms.get(&room).is_some_and(|entry| {
            entry.state == State::Joining
                && entry.nick == nick
                && stanza.attr("from") == Some(entry.jid.as_str())
        });
        if own_join {
            // Sent by these rooms (a join, or a join again): not the web
            // service's to remember.
            return (Vec::new(), true);
        }
        if joined_room(stanza).is_some() {
            let jid = stanza.attr("from").unwrap_or(&self.domain).to_owned();
            let mentions_only = stanza.child(MENTIONS_ONLY, Some(NS_INTERNAL)).is_some();
            self.insert(
                room.clone(),
                Room {
                    nick: nick.to_owned(),
                    jid: jid.clone(),
                    state: State::Joining,
                    remembered: true,
                    retries: 0,
                    failing_since: None,
                    mentions_only: mentions_only.then_some(true),
                    sent: VecDeque::new(),
                },
            );
            return (
                vec![Effect::RememberRoom {
                    room,
                    nick: nick.to_owned(),
                    jid,
                    mentions_only,
                }],
                true,
            );
        }
        (Vec::new(), true)
    }

    /// Joins whose wait is over (when to ask again: [`Rooms::wake`]).
    pub fn due(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (room, entry) in &mut self.rooms {
            if matches!(entry.state, State::Waiting { at } if at <= now) {
                entry.state = State::Joining;
                let mut join = join_presence(&entry.jid, room, &entry.nick);
                self.face.dress(&mut join);
                effects.push(Effect::Send(join));
            }
        }
        effects
    }

    /// Effects on their way out: each presence among them goes through
    /// [`Rooms::outgoing`] (its effects before it, and it only if sent), and
    /// the timer follows.
    pub fn sending(&mut self, mut effects: Vec<Effect>, now: Instant) -> Vec<Effect> {
        for effect in &mut effects {
            if let Effect::Send(message) = effect {
                self.retracting(message);
            }
        }
        if !effects
            .iter()
            .any(|e| matches!(e, Effect::Send(s) if s.name == "presence"))
        {
            return effects;
        }
        let mut out = Vec::with_capacity(effects.len() + 2);
        for effect in effects {
            match effect {
                Effect::Send(mut stanza) if stanza.name == "presence" => {
                    let (effects, send) = self.outgoing(&stanza);
                    out.extend(effects);
                    if send {
                        // The mark was for these rooms only.
                        stanza.children.retain(
                            |c| !matches!(c, Node::Element(e) if e.attr("xmlns") == Some(NS_INTERNAL)),
                        );
                        out.push(Effect::Send(stanza));
                    }
                }
                other => out.push(other),
            }
        }
        out.push(self.wake(now));
        out
    }

    /// A retraction (XEP-0424) the bot sends to a room, of a message it
    /// names by the id it gave it: renamed with the room's id for it, which
    /// is what clients in the room know it by.
    fn retracting(&self, message: &mut Element) {
        if message.name != "message" || message.attr("type") != Some("groupchat") {
            return;
        }
        let Some(entry) = message
            .attr("to")
            .and_then(|to| self.rooms.get(&jid::bare(to).to_lowercase()))
        else {
            return;
        };
        for child in &mut message.children {
            let Node::Element(retract) = child else {
                continue;
            };
            if retract.name != "retract" || retract.attr("xmlns") != Some(NS_RETRACT) {
                continue;
            }
            let named = retract.attr("id").unwrap_or_default();
            if let Some((_, room_id)) = entry.sent.iter().rev().find(|(sent, _)| sent == named) {
                retract.set_attr("id", room_id.as_str());
            }
        }
    }

    /// When to ask [`Rooms::due`] again, as an effect: the shim keeps the
    /// one timer.
    pub fn wake(&self, now: Instant) -> Effect {
        Effect::WakeRooms(
            self.next_due()
                .map(|at| at.saturating_duration_since(now).as_secs_f64()),
        )
    }

    /// When the next wait to join a room ends, if one does.
    pub fn next_due(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|r| match r.state {
                State::Waiting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    /// The rooms this host is in, as `room/nick`.
    pub fn joined(&self) -> Vec<String> {
        self.rooms
            .iter()
            .filter(|(_, r)| matches!(r.state, State::Joined { .. }))
            .map(|(room, r)| format!("{room}/{}", r.nick))
            .collect()
    }
}

#[cfg(test)]
mod tests;
