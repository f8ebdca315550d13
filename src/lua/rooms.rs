//! A host's [`Rooms`] as Lua userdata, with the clock read here.

use std::time::Instant;

use mlua::{Lua, Table, UserData, UserDataMethods};

use super::stanza::{element_from_lua, element_to_lua};
use crate::clock;
use crate::rooms::{self, Effect, Rooms};

/// A host's rooms (see [`crate::rooms`]); its methods answer with effects
/// as `{ op = "send", stanza = }`, `{ op = "log", level =, text = }`,
/// `{ op = "remember", room =, nick =, jid = }`, `{ op = "forget", room = }`.
pub(super) struct LuaRooms(pub(super) Rooms);

fn effects_to_lua(lua: &Lua, effects: Vec<Effect>) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(effects.len(), 0)?;
    for effect in effects {
        let entry = lua.create_table()?;
        match effect {
            Effect::Send(stanza) => {
                entry.raw_set("op", "send")?;
                entry.raw_set("stanza", element_to_lua(lua, &stanza)?)?;
            }
            Effect::Log(level, text) => {
                entry.raw_set("op", "log")?;
                entry.raw_set("level", level.as_str())?;
                entry.raw_set("text", text)?;
            }
            Effect::Remember { room, nick, jid } => {
                entry.raw_set("op", "remember")?;
                entry.raw_set("room", room)?;
                entry.raw_set("nick", nick)?;
                entry.raw_set("jid", jid)?;
            }
            Effect::Forget { room } => {
                entry.raw_set("op", "forget")?;
                entry.raw_set("room", room)?;
            }
        }
        list.raw_push(entry)?;
    }
    Ok(list)
}

impl UserData for LuaRooms {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut(
            "add",
            |lua, this, (room, from): (String, Option<String>)| {
                effects_to_lua(lua, this.0.add(&room, from.as_deref()))
            },
        );
        // nil when the presence is not about our place in a room; else the
        // effects, and whether the web service hears of it.
        methods.add_method_mut("presence", |lua, this, stanza: Table| {
            let stanza = element_from_lua(lua, &stanza)?;
            let now = rooms::stamp(clock::unix_secs());
            match this.0.presence(&stanza, Instant::now(), &now) {
                Some((effects, post)) => Ok((Some(effects_to_lua(lua, effects)?), post)),
                None => Ok((None, false)),
            }
        });
        methods.add_method_mut("message", |lua, this, stanza: Table| {
            Ok(this.0.message(&element_from_lua(lua, &stanza)?))
        });
        // The effects, and whether to send the presence.
        methods.add_method_mut("outgoing", |lua, this, stanza: Table| {
            let (effects, send) = this.0.outgoing(&element_from_lua(lua, &stanza)?);
            Ok((effects_to_lua(lua, effects)?, send))
        });
        // Effects of the joins due now, and the seconds until the next (or nil).
        methods.add_method_mut("due", |lua, this, ()| {
            let now = Instant::now();
            let (effects, next) = this.0.due(now);
            let wait = next.map(|at| at.saturating_duration_since(now).as_secs_f64());
            Ok((effects_to_lua(lua, effects)?, wait))
        });
        // Seconds until a room's wait to be joined again ends (or nil); no effect.
        methods.add_method("next_wait", |_, this, ()| {
            let now = Instant::now();
            Ok(this
                .0
                .next_due()
                .map(|at| at.saturating_duration_since(now).as_secs_f64()))
        });
        methods.add_method("joined", |_, this, ()| Ok(this.0.joined()));
    }
}
