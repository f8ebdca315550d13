//! The XML namespaces of the features mapped to JSON keys (docs/contract.md
//! §3.1, §4.1).

pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const OOB: &str = "jabber:x:oob";
pub const CORRECTION: &str = "urn:xmpp:message-correct:0";
pub const REACTIONS: &str = "urn:xmpp:reactions:0";
pub const REPLY: &str = "urn:xmpp:reply:0";
pub const RETRACT: &str = "urn:xmpp:message-retract:1";
pub const FALLBACK: &str = "urn:xmpp:fallback:0";
pub const HINTS: &str = "urn:xmpp:hints";
pub const STANZA_ID: &str = "urn:xmpp:sid:0";
pub const REFERENCE: &str = "urn:xmpp:reference:0";

/// This module's own marks on a stanza on its way out, removed before it is
/// sent: a join that asked for `mentions_only` (§12).
pub const INTERNAL: &str = "urn:x-mod-component-http:internal";
pub const MENTIONS_ONLY: &str = "mentions-only";
pub const RECEIPTS: &str = "urn:xmpp:receipts";
pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
pub const DELAY: &str = "urn:xmpp:delay";
pub const NICK: &str = "http://jabber.org/protocol/nick";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const CONFERENCE: &str = "jabber:x:conference";
pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// The chat states of XEP-0085, as element names and JSON values.
pub const CHAT_STATES: [&str; 5] = ["active", "composing", "paused", "inactive", "gone"];

/// Presence `<show/>` values.
pub const SHOWS: [&str; 4] = ["away", "chat", "dnd", "xa"];
