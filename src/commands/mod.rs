//! XEP-0050 ad-hoc commands with XEP-0004 forms (docs/contract.md §13): a
//! host's [`Menu`], the [`Sessions`] of commands being run, and how an IQ
//! about them is routed ([`Commands::route`]): answered here (disco, a
//! step that is not the session's) or POSTed as a [`Step`], whose HTTP
//! answer becomes the command's result ([`answer`]) and whose outcome
//! [`Settled`] its session on Prosody's thread.

mod answer;
pub mod menu;
pub mod sessions;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub use answer::answer;
pub use menu::{Menu, MenuItem};
pub use sessions::Sessions;

use crate::conversion::Envelope;
use crate::forms::{self, FieldTypes};
use crate::signing;
use crate::stanza_error::{ErrorType, StanzaError};
use crate::xml::{Element, Node};

pub const XMLNS: &str = "http://jabber.org/protocol/commands";
const XMLNS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const XMLNS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A host's commands, shared by its deliveries (which settle sessions) and
/// its push endpoint (which may replace the menu); Prosody's thread only.
pub type SharedCommands = Arc<Mutex<Commands>>;

pub fn lock(commands: &SharedCommands) -> MutexGuard<'_, Commands> {
    commands.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a client asks of a command (XEP-0050 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Execute,
    Next,
    Prev,
    Complete,
    Cancel,
}

impl Action {
    fn parse(action: &str) -> Option<Action> {
        Some(match action {
            "execute" => Action::Execute,
            "next" => Action::Next,
            "prev" => Action::Prev,
            "complete" => Action::Complete,
            "cancel" => Action::Cancel,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Next => "next",
            Action::Prev => "prev",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
        }
    }
}

/// One step of a command, to POST: what its answer needs to know, and the
/// request's `command` key.
#[derive(Debug, Clone)]
pub struct Step {
    pub node: String,
    pub sessionid: String,
    pub action: Action,
    pub json: Value,
}

impl Step {
    /// What a failed step does to its session: a cancel closes it whatever
    /// happened; any other step may be tried again.
    pub fn settled_on_error(&self) -> Settled {
        if self.action == Action::Cancel {
            Settled::Close(self.sessionid.clone())
        } else {
            Settled::Keep {
                sessionid: self.sessionid.clone(),
                sent: None,
            }
        }
    }
}

/// What a step's outcome does to its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Completed or canceled.
    Close(String),
    /// Still executing; with the fields of the form sent, if one was.
    Keep {
        sessionid: String,
        sent: Option<FieldTypes>,
    },
}

/// What an IQ to the component is to the commands.
#[derive(Debug)]
pub enum Route {
    NotMine,
    /// Answered at once: disco of the menu, or a step refused.
    Answer(Element),
    Post(Step),
}

#[derive(Debug)]
pub struct Commands {
    pub menu: Menu,
    sessions: Sessions,
}

impl Commands {
    pub fn new(menu: Vec<MenuItem>, timeout: Duration) -> Commands {
        Commands {
            menu: Menu::new(menu),
            sessions: Sessions::new(timeout),
        }
    }

    /// Whether the host offers commands (its disco#info says so).
    pub fn offered(&self) -> bool {
        !self.menu.items().is_empty()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// An IQ get or set to the component: disco of the menu (answered
    /// whether or not IQs are forwarded), or a command step.
    pub fn route(&mut self, stanza: &Element, now: Instant) -> Route {
        let Ok(envelope) = Envelope::of(stanza) else {
            return Route::NotMine;
        };
        let Some(payload) = stanza.elements().next() else {
            return Route::NotMine;
        };
        let ns = payload.attr("xmlns");
        let node = payload.attr("node");
        match (envelope.stanza_type.as_deref(), payload.name.as_str(), ns) {
            (Some("get"), "query", Some(XMLNS_DISCO_ITEMS)) if node == Some(XMLNS) => {
                let items = self.menu.disco_items(&envelope.to);
                Route::Answer(envelope.iq_result().with_child(items))
            }
            (Some("get"), "query", Some(XMLNS_DISCO_INFO)) => {
                match node.and_then(|n| self.menu.disco_info(n)) {
                    Some(info) => Route::Answer(envelope.iq_result().with_child(info)),
                    None => Route::NotMine,
                }
            }
            (Some("set"), "command", Some(XMLNS)) => self.step(&envelope, payload, now),
            _ => Route::NotMine,
        }
    }

    /// In this order: a node not in the menu; an action that is not one;
    /// a first step that does not execute; a session that is not this
    /// sender's for this node.
    fn step(&mut self, envelope: &Envelope, command: &Element, now: Instant) -> Route {
        let node = command.attr("node").unwrap_or_default();
        if self.menu.find(node).is_none() {
            return refuse(envelope, ErrorType::Cancel, "item-not-found", None);
        }
        let action = match command.attr("action") {
            None => Some(Action::Execute),
            Some(action) => Action::parse(action),
        };
        let malformed = || {
            refuse(
                envelope,
                ErrorType::Modify,
                "bad-request",
                Some("malformed-action"),
            )
        };
        let Some(action) = action else {
            return malformed();
        };
        let (sessionid, sent) = match command.attr("sessionid") {
            None if action != Action::Execute => return malformed(),
            None => {
                // 128 bits from the OS's CSPRNG: unguessable, and unique.
                let id = signing::unguessable_id("");
                self.sessions.open(id.clone(), node, &envelope.from, now);
                (id, FieldTypes::default())
            }
            Some(id) => match self.sessions.step(id, node, &envelope.from, now) {
                Ok(sent) => (id.to_owned(), sent),
                Err(_) => {
                    return refuse(
                        envelope,
                        ErrorType::Modify,
                        "bad-request",
                        Some("bad-sessionid"),
                    )
                }
            },
        };
        let mut json = Map::new();
        json.insert("node".into(), node.into());
        json.insert("action".into(), action.as_str().into());
        json.insert("sessionid".into(), sessionid.as_str().into());
        if let Some(x) = forms::find(command) {
            json.insert("form".into(), forms::to_json(x));
            json.insert("data".into(), Value::Object(forms::data(x, &sent)));
        }
        Route::Post(Step {
            node: node.to_owned(),
            sessionid,
            action,
            json: Value::Object(json),
        })
    }

    /// The menu the web service pushed before a restart (as
    /// [`Menu::pushed_json`] kept it), or why it cannot be read.
    pub fn restore(&mut self, json: &str) -> Result<(), String> {
        let list: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        self.menu.push(Some(menu::from_json(&list)?));
        Ok(())
    }

    /// A step's outcome, on Prosody's thread.
    pub fn settle(&mut self, settled: Settled) {
        match settled {
            Settled::Close(id) => self.sessions.close(&id),
            Settled::Keep {
                sessionid,
                sent: Some(fields),
            } => self.sessions.sent(&sessionid, fields),
            Settled::Keep { sent: None, .. } => {}
        }
    }

    /// A reload: the sessions of the module before go on here.
    pub fn take_sessions(&mut self, old: &mut Commands) {
        self.sessions.take(&mut old.sessions);
    }
}

/// A step refused: the stanza error, with XEP-0050's own condition.
fn refuse(
    envelope: &Envelope,
    kind: ErrorType,
    condition: &'static str,
    specific: Option<&str>,
) -> Route {
    let mut reply = envelope.error_reply(&StanzaError::new(kind, condition));
    if let Some(specific) = specific {
        for child in reply.children.iter_mut() {
            if let Node::Element(error) = child {
                error.children.push(Node::Element(
                    Element::new(specific).with_attr("xmlns", XMLNS),
                ));
            }
        }
    }
    Route::Answer(reply)
}

#[cfg(test)]
mod tests;
