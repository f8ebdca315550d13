//! What every answer needs to know of the stanza it answers: its kind,
//! addresses, id and type (docs/contract.md §3, §5, §6).

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use thiserror::Error;

use super::ns::MUC_USER;
use crate::jid;
use crate::stanza_error::StanzaError;
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConversionError {
    #[error("not a stanza: <{0}>")]
    NotAStanza(String),
    #[error("stanza has no '{0}' attribute")]
    MissingAttribute(&'static str),
}

/// What an answer needs to know of the stanza it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub to: String,
    pub from: String,
    pub id: Option<String>,
    pub stanza_type: Option<String>,
    /// From a group chat: a `groupchat` message, one carrying `muc#user`,
    /// or (set by the caller, see [`RoomJids`]) from a room this host is in.
    pub from_room: bool,
}

/// The rooms a host is in (bare JIDs, lower case), shared by the rooms'
/// state, which keeps it, and the deliveries, which ask it: a stanza from
/// one of them must not be answered with a message or presence error.
#[derive(Debug, Clone, Default)]
pub struct RoomJids(Arc<RwLock<HashSet<String>>>);

impl RoomJids {
    pub fn insert(&self, room: &str) {
        let mut rooms = self.0.write().unwrap_or_else(PoisonError::into_inner);
        rooms.insert(room.to_lowercase());
    }

    pub fn remove(&self, room: &str) {
        let mut rooms = self.0.write().unwrap_or_else(PoisonError::into_inner);
        rooms.remove(&room.to_lowercase());
    }

    /// How many rooms.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `jid` is a room, or an occupant of one, of this host.
    pub fn contains(&self, jid: &str) -> bool {
        let rooms = self.0.read().unwrap_or_else(PoisonError::into_inner);
        !rooms.is_empty() && rooms.contains(&jid::bare(jid).to_lowercase())
    }
}

impl Envelope {
    pub fn of(stanza: &Element) -> Result<Envelope, ConversionError> {
        let kind = Kind::parse(&stanza.name)
            .ok_or_else(|| ConversionError::NotAStanza(stanza.name.clone()))?;
        let attr = |name: &'static str| {
            stanza
                .attr(name)
                .map(str::to_owned)
                .ok_or(ConversionError::MissingAttribute(name))
        };
        Ok(Envelope {
            kind,
            to: attr("to")?,
            from: attr("from")?,
            id: stanza.attr("id").map(str::to_owned),
            stanza_type: stanza.attr("type").map(str::to_owned),
            from_room: stanza.attr("type") == Some("groupchat")
                || stanza.child("x", Some(MUC_USER)).is_some(),
        })
    }

    fn type_is(&self, t: &str) -> bool {
        self.stanza_type.as_deref() == Some(t)
    }

    /// An IQ get/set, which must get exactly one answer (docs/contract.md §6).
    pub fn is_iq_request(&self) -> bool {
        self.kind == Kind::Iq && (self.type_is("get") || self.type_is("set"))
    }

    /// Loop guard (docs/contract.md §5): errors and IQ results are never answered.
    pub fn may_be_answered(&self) -> bool {
        !(self.type_is("error") || (self.kind == Kind::Iq && self.type_is("result")))
    }

    /// Whether a stanza error may answer it. Prosody's MUC kicks an occupant
    /// that sends a message or presence error to the room or another
    /// occupant (an IQ error it only passes on), and a kicked bot misses
    /// what is said while it rejoins: those are logged instead
    /// (docs/contract.md §12).
    pub fn may_get_error(&self) -> bool {
        self.may_be_answered() && !(self.from_room && self.kind != Kind::Iq)
    }

    /// The stanza error reply, as Prosody's `st.error_reply` builds it.
    pub fn error_reply(&self, error: &StanzaError) -> Element {
        self.reply_header()
            .with_attr("type", "error")
            .with_child(error.to_element())
    }

    /// An empty IQ result.
    pub fn iq_result(&self) -> Element {
        self.reply_header().with_attr("type", "result")
    }

    fn reply_header(&self) -> Element {
        let mut reply = Element::new(self.kind.as_str())
            .with_attr("to", self.from.as_str())
            .with_attr("from", self.to.as_str());
        if let Some(id) = &self.id {
            reply.set_attr("id", id.as_str());
        }
        reply
    }

    /// For logs: which stanza this was.
    pub fn describe(&self) -> String {
        format!(
            "{} id={} from {}",
            self.kind.as_str(),
            self.id.as_deref().unwrap_or("(none)"),
            self.from
        )
    }
}
