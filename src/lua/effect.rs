//! [`Effect`]s as Lua sees them: one flat list per call, each effect its
//! name then a fixed number of values (`native.effects` says how many), with
//! `false` where a value is absent. One list, not a table per effect: the
//! drain runs on Prosody's thread once per wake, so its cost counts.
//!
//! | name | values |
//! |---|---|
//! | `send` | stanza (a `util.stanza` object) |
//! | `log` | level, text |
//! | `report` | outcome, seconds or false, retries |
//! | `withheld` | |
//! | `disallowed` | stanza kind |
//! | `status` | level, text, overrides |
//! | `hold` | id, stanza (XML text), received (ms since the epoch) |
//! | `release` | id |
//! | `dead` | id, stanza, received, reason |
//! | `remember_room` | room, nick, jid, mentions_only |
//! | `forget_room` | room |
//! | `wake_rooms` | seconds or false |
//! | `push_answer` | id, HTTP status, JSON body |

use std::ffi::c_int;

use mlua::{ffi, Lua, Table, Value};

use super::stanza::{depth_of, ensure_stack, push_stanza, push_str, stanza_metatable};
use crate::effect::Effect;

/// `native.effects`: each effect's name → how many values follow it.
pub(super) fn arities(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for effect in Effect::examples() {
        table.raw_set(effect.name(), effect.arity())?;
    }
    Ok(table)
}

/// The list of `effects`, or nil when there are none (the usual answer to
/// a stanza submitted).
pub(super) fn effects_to_lua(lua: &Lua, effects: &[Effect]) -> mlua::Result<Value> {
    if effects.is_empty() {
        return Ok(Value::Nil);
    }
    let stanza_mt = stanza_metatable(lua)?;
    let slots: usize = effects.iter().map(|e| 1 + e.arity()).sum();
    let depth = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(stanza) => Some(depth_of(stanza)),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    // Safety: built with Lua's C API inside one protected call; the closure
    // holds borrows only (see super::stanza).
    let list: Table = unsafe {
        lua.exec_raw(&stanza_mt, |state| {
            ensure_stack(state, depth);
            ffi::lua_createtable(state, slots as c_int, 0);
            let mut list = List { state, len: 0 };
            for effect in effects {
                list.push_effect(effect);
            }
            // What is left on the stack is returned: the list, not the metatable.
            ffi::lua_remove(state, 1);
        })?
    };
    Ok(Value::Table(list))
}

/// The list being filled, on top of the stack; the stanza metatable at 1.
struct List {
    state: *mut ffi::lua_State,
    len: ffi::lua_Integer,
}

impl List {
    /// Appends the value on top of the stack (and pops it).
    unsafe fn top(&mut self) {
        self.len += 1;
        ffi::lua_rawseti(self.state, -2, self.len);
    }

    unsafe fn str(&mut self, s: &str) {
        push_str(self.state, s);
        self.top();
    }

    unsafe fn int(&mut self, n: u64) {
        // Milliseconds since the epoch and counts: exact in a float, and an
        // integer where Lua has them.
        ffi::lua_pushinteger(self.state, n as ffi::lua_Integer);
        self.top();
    }

    unsafe fn bool(&mut self, b: bool) {
        ffi::lua_pushboolean(self.state, c_int::from(b));
        self.top();
    }

    unsafe fn seconds(&mut self, seconds: Option<f64>) {
        match seconds {
            Some(s) => ffi::lua_pushnumber(self.state, s),
            None => ffi::lua_pushboolean(self.state, 0),
        }
        self.top();
    }

    unsafe fn push_effect(&mut self, effect: &Effect) {
        self.str(effect.name());
        match effect {
            Effect::Send(stanza) => {
                push_stanza(self.state, stanza, 1);
                self.top();
            }
            Effect::Log(level, text) => {
                self.str(level.as_str());
                self.str(text);
            }
            Effect::Report {
                outcome,
                seconds,
                retries,
            } => {
                self.str(outcome);
                self.seconds(*seconds);
                self.int((*retries).into());
            }
            Effect::Withheld => {}
            Effect::Disallowed(kind) => self.str(kind),
            Effect::Status {
                level,
                text,
                overrides,
            } => {
                self.str(level.as_str());
                self.str(text);
                self.bool(*overrides);
            }
            Effect::Hold {
                id,
                stanza,
                received,
            } => {
                self.str(id);
                self.str(stanza);
                self.int(*received);
            }
            Effect::Release { id } => self.str(id),
            Effect::Dead {
                id,
                stanza,
                received,
                reason,
            } => {
                self.str(id);
                self.str(stanza);
                self.int(*received);
                self.str(reason);
            }
            Effect::RememberRoom {
                room,
                nick,
                jid,
                mentions_only,
            } => {
                self.str(room);
                self.str(nick);
                self.str(jid);
                self.bool(*mentions_only);
            }
            Effect::ForgetRoom { room } => self.str(room),
            Effect::WakeRooms(seconds) => self.seconds(*seconds),
            Effect::PushAnswer { id, status, body } => {
                self.str(id);
                self.int((*status).into());
                self.str(body);
            }
            Effect::SaveMenu(Some(menu)) => self.str(menu),
            Effect::SaveMenu(None) => self.bool(false),
            Effect::Uploaded { outcome, bytes } => {
                self.str(outcome);
                self.int(*bytes);
            }
        }
    }
}
