//! What the native side asks Prosody's side to do: the one way Rust tells
//! Lua (docs/architecture.md, "The effect protocol"). Every native call that
//! acts answers with a list of effects (then at most one value), and so does
//! every drain of a delivery's outcomes; the shim applies them all with one
//! function, in order.
//!
//! A leaf module: it names only what the effects carry.

use crate::log::LogLevel;
use crate::xml::Element;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a stanza as the component.
    Send(Element),
    /// Write a line to Prosody's log.
    Log(LogLevel, String),
    /// A stanza's delivery ended: count it under `outcome` ("2xx",
    /// "timeout", ...), with the seconds from its arrival when timed and the
    /// extra attempts made.
    Report {
        outcome: &'static str,
        seconds: Option<f64>,
        retries: u32,
    },
    /// A stanza error was not sent: it would have gone to a room, which
    /// would kick the bot for it (counted as `errors_withheld`).
    Withheld,
    /// A stanza from a sender `component_post_allow` does not list was not
    /// POSTed (counted as `disallowed`, by its kind).
    Disallowed(&'static str),
    /// The module's status as Prosody shows it (`module:set_status`);
    /// `overrides`: it replaces a more severe one.
    Status {
        level: LogLevel,
        text: String,
        overrides: bool,
    },
    /// Durable delivery: keep a stanza in the waiting store (see
    /// docs/contract.md §11). `received`: milliseconds since the epoch.
    Hold {
        id: String,
        stanza: String,
        received: u64,
    },
    /// Durable delivery: the stanza is delivered or answered; delete it.
    Release { id: String },
    /// Durable delivery: given up; move it to the dead-letter store.
    Dead {
        id: String,
        stanza: String,
        received: u64,
        reason: String,
    },
    /// Group chat: keep a room the web service joined, for restarts
    /// (`mentions_only`: the join asked to hear only mentions).
    RememberRoom {
        room: String,
        nick: String,
        jid: String,
        mentions_only: bool,
    },
    /// Group chat: the room is left or given up; delete it from storage.
    ForgetRoom { room: String },
    /// Group chat: ask the rooms what is due in this many seconds, replacing
    /// the timer set before; `None`: no timer.
    WakeRooms(Option<f64>),
    /// Push: the answer to a pushed IQ, as the HTTP response (status, JSON
    /// body) to the push `id` came from.
    PushAnswer {
        id: String,
        status: u16,
        body: String,
    },
    /// Files: an upload ended (`outcome`: "done", or how it failed), with
    /// the bytes uploaded.
    Uploaded { outcome: &'static str, bytes: u64 },
    /// Commands: keep the menu the web service pushed (its JSON list), for
    /// restarts; `None`: it went back to the configured one, delete it.
    SaveMenu(Option<String>),
}

impl Effect {
    /// Its name in Lua, the first slot of its encoding.
    pub fn name(&self) -> &'static str {
        match self {
            Effect::Send(_) => "send",
            Effect::Log(..) => "log",
            Effect::Report { .. } => "report",
            Effect::Withheld => "withheld",
            Effect::Disallowed(_) => "disallowed",
            Effect::Status { .. } => "status",
            Effect::Hold { .. } => "hold",
            Effect::Release { .. } => "release",
            Effect::Dead { .. } => "dead",
            Effect::RememberRoom { .. } => "remember_room",
            Effect::ForgetRoom { .. } => "forget_room",
            Effect::WakeRooms(_) => "wake_rooms",
            Effect::PushAnswer { .. } => "push_answer",
            Effect::SaveMenu(_) => "save_menu",
            Effect::Uploaded { .. } => "uploaded",
        }
    }

    /// How many values follow its name in the encoding (see
    /// src/lua/effect.rs); the shim reads the same figures from
    /// `native.effects`.
    pub fn arity(&self) -> usize {
        match self {
            Effect::Withheld => 0,
            Effect::Send(_) | Effect::Release { .. } | Effect::ForgetRoom { .. } => 1,
            Effect::WakeRooms(_) | Effect::SaveMenu(_) | Effect::Disallowed(_) => 1,
            Effect::Log(..) | Effect::Uploaded { .. } => 2,
            Effect::Report { .. } | Effect::Status { .. } | Effect::Hold { .. } => 3,
            Effect::PushAnswer { .. } => 3,
            Effect::RememberRoom { .. } => 4,
            Effect::Dead { .. } => 4,
        }
    }

    /// One of each, for the table of arities and its tests.
    pub fn examples() -> Vec<Effect> {
        vec![
            Effect::Send(Element::new("message")),
            Effect::Log(LogLevel::Info, String::new()),
            Effect::Report {
                outcome: "2xx",
                seconds: None,
                retries: 0,
            },
            Effect::Withheld,
            Effect::Disallowed("message"),
            Effect::Status {
                level: LogLevel::Info,
                text: String::new(),
                overrides: false,
            },
            Effect::Hold {
                id: String::new(),
                stanza: String::new(),
                received: 0,
            },
            Effect::Release { id: String::new() },
            Effect::Dead {
                id: String::new(),
                stanza: String::new(),
                received: 0,
                reason: String::new(),
            },
            Effect::RememberRoom {
                room: String::new(),
                nick: String::new(),
                jid: String::new(),
                mentions_only: false,
            },
            Effect::ForgetRoom {
                room: String::new(),
            },
            Effect::WakeRooms(None),
            Effect::PushAnswer {
                id: String::new(),
                status: 200,
                body: String::new(),
            },
            Effect::SaveMenu(None),
            Effect::Uploaded {
                outcome: "done",
                bytes: 0,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_effect_has_an_example_and_a_name_of_its_own() {
        let names: BTreeSet<&str> = Effect::examples().iter().map(Effect::name).collect();
        assert_eq!(names.len(), Effect::examples().len());
        // A new variant without an example fails to compile in name() and
        // arity(); this catches one left out of examples().
        let source = include_str!("effect.rs");
        let variants = source
            .split("pub enum Effect {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap()
            .lines()
            .filter(|l| {
                l.starts_with("    ")
                    && !l.starts_with("     ")
                    && l.trim_start().starts_with(char::is_uppercase)
            })
            .count();
        assert_eq!(variants, names.len());
    }
}
