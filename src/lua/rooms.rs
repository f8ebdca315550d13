//! A host's [`Rooms`] as Lua userdata, with the clock read here. Each method
//! that acts answers with its effects (ending with when to wake the rooms
//! again), then its value.

use std::time::Instant;

use mlua::{Lua, Table, UserData, UserDataMethods, Value};

use super::effect::effects_to_lua;
use super::stanza::element_from_lua;
use crate::effect::Effect;
use crate::rooms::Rooms;

pub(super) struct LuaRooms(pub(super) Rooms);

impl LuaRooms {
    fn effects(&self, lua: &Lua, mut effects: Vec<Effect>, now: Instant) -> mlua::Result<Value> {
        effects.push(self.0.wake(now));
        effects_to_lua(lua, &effects)
    }
}

impl UserData for LuaRooms {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut(
            "add",
            |lua, this, (room, from): (String, Option<String>)| {
                let effects = this.0.add(&room, from.as_deref());
                this.effects(lua, effects, Instant::now())
            },
        );
        // The effects, and whether to send the presence.
        methods.add_method_mut("outgoing", |lua, this, stanza: Table| {
            let (effects, send) = this.0.outgoing(&element_from_lua(lua, &stanza)?);
            Ok((this.effects(lua, effects, Instant::now())?, send))
        });
        // The joins due now.
        methods.add_method_mut("due", |lua, this, ()| {
            let now = Instant::now();
            let (effects, _) = this.0.due(now);
            this.effects(lua, effects, now)
        });
        methods.add_method("joined", |_, this, ()| Ok(this.0.joined()));
    }
}
