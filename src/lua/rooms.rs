//! A host's rooms ([`SharedRooms`]) as Lua userdata, with the clock read
//! here. Each method that acts answers with its effects (ending with when
//! to wake the rooms again), then its value.

use std::sync::MutexGuard;
use std::time::Instant;

use mlua::{Lua, UserData, UserDataMethods, Value};

use super::effect::effects_to_lua;
use crate::effect::Effect;
use crate::rooms::{Rooms, SharedRooms};

pub(super) struct LuaRooms(pub(super) SharedRooms);

impl LuaRooms {
    pub(super) fn lock(&self) -> MutexGuard<'_, Rooms> {
        crate::rooms::lock(&self.0)
    }

    fn effects(&self, lua: &Lua, mut effects: Vec<Effect>, now: Instant) -> mlua::Result<Value> {
        effects.push(self.lock().wake(now));
        effects_to_lua(lua, &effects)
    }
}

impl UserData for LuaRooms {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // A room remembered in storage (`mentions_only`: nil when the join
        // did not say).
        methods.add_method(
            "add",
            |lua, this, (room, from, mentions_only): (String, Option<String>, Option<bool>)| {
                let effects = this.lock().add(&room, from.as_deref(), mentions_only);
                this.effects(lua, effects, Instant::now())
            },
        );
        // The rooms of component_post_rooms.
        methods.add_method("join_configured", |lua, this, ()| {
            let effects = this.lock().join_configured();
            this.effects(lua, effects, Instant::now())
        });
        // The joins due now.
        methods.add_method("due", |lua, this, ()| {
            let now = Instant::now();
            let effects = this.lock().due(now);
            this.effects(lua, effects, now)
        });
        methods.add_method("joined", |_, this, ()| Ok(this.lock().joined()));
    }
}
