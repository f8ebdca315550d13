//! A host's [`Delivery`] as Lua userdata: drain and stop (answering with
//! effects). Stanzas reach it through `native.receive`.

use mlua::{UserData, UserDataMethods};

use super::effect::effects_to_lua;
use crate::delivery::{Delivery, Stop};

impl UserData for Delivery {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("fd", |_, this, ()| Ok(this.fd()));
        // The `whpk_` key that verifies this host's `v1a` signatures, or nil.
        methods.add_method("signing_public_key", |_, this, ()| {
            Ok(this.config().signing_key.as_ref().map(|k| k.public_key()))
        });
        methods.add_method("counts", |_, this, ()| Ok(this.counts()));
        // Stanzas accepted and not yet answered.
        methods.add_method("owes", |_, this, ()| Ok(this.owed()));
        // A reload: this delivery takes over from the one before (see
        // Delivery::take_over).
        methods.add_method("take_over", |_, this, old: mlua::UserDataRef<Delivery>| {
            this.take_over(&old);
            Ok(())
        });
        // A reload: the command sessions of the delivery before go on here.
        methods.add_method(
            "take_sessions",
            |_, this, old: mlua::UserDataRef<Delivery>| {
                this.take_sessions(&old);
                Ok(())
            },
        );
        // At load: the menu the web service pushed, as kept in storage.
        methods.add_method("restore_menu", |lua, this, json: String| {
            effects_to_lua(lua, &this.restore_menu(&json))
        });
        // The commands the menu has, and the sessions open.
        methods.add_method("commands", |_, this, ()| Ok(this.command_counts()));
        // What the admin is warned of at load, as lines.
        methods.add_method("warnings", |_, this, ()| Ok(this.config().warnings()));
        methods.add_method("drain", |lua, this, ()| {
            effects_to_lua(lua, &this.drain_effects())
        });
        // The effects, and why (for push callers still waiting).
        methods.add_method("stop", |lua, this, shutting_down: bool| {
            let stop = if shutting_down {
                Stop::ShuttingDown
            } else {
                Stop::Unloaded
            };
            Ok((effects_to_lua(lua, &this.stop(stop))?, stop.why()))
        });
    }
}
