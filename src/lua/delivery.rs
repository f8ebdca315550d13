//! A host's [`Delivery`] as Lua userdata: drain and stop (answering with
//! effects), and durable delivery's admin. Stanzas reach it through
//! `native.receive`.

use mlua::{Lua, Table, UserData, UserDataMethods};

use super::effect::effects_to_lua;
use crate::delivery::{Delivery, Record, Source, Stop};

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
        // Durable delivery.
        // Held, circuit open, dead letters.
        methods.add_method("held_counts", |_, this, ()| {
            let counts = this.held_counts();
            Ok((counts.held, counts.circuit_open, counts.dead_letters))
        });
        methods.add_method("held", |lua, this, ()| {
            let (records, open) = this.held();
            let list = lua.create_table_with_capacity(records.len(), 0)?;
            for record in &records {
                list.raw_push(record_to_lua(lua, record)?)?;
            }
            Ok((list, open))
        });
        // At load: the waiting records, and how many dead letters the store keeps.
        methods.add_method(
            "restore",
            |_, this, (records, dead_letters): (Vec<Table>, usize)| {
                this.restore(records_from_lua(&records)?, Source::Store { dead_letters });
                Ok(())
            },
        );
        // Dead letters back to waiting (removed from the dead store by the caller).
        methods.add_method("replay", |_, this, records: Vec<Table>| {
            this.restore(records_from_lua(&records)?, Source::DeadLetters);
            Ok(())
        });
        methods.add_method("forget_dead_letters", |_, this, count: usize| {
            this.forget_dead_letters(count);
            Ok(())
        });
        methods.add_method("purge", |_, this, id: Option<String>| {
            Ok(this.purge(id.as_deref()))
        });
        methods.add_method("retry_held", |_, this, ()| {
            this.retry_held();
            Ok(())
        });
    }
}

/// A held stanza as the store keeps it: `{ id=, stanza=, received= }`.
fn record_to_lua(lua: &Lua, record: &Record) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 3)?;
    table.raw_set("id", record.id.as_str())?;
    table.raw_set("stanza", record.stanza.as_str())?;
    table.raw_set("received", record.received)?;
    Ok(table)
}

fn records_from_lua(tables: &[Table]) -> mlua::Result<Vec<Record>> {
    tables
        .iter()
        .map(|table| {
            Ok(Record {
                id: table.get("id")?,
                stanza: table.get("stanza")?,
                received: table.get("received")?,
            })
        })
        .collect()
}
