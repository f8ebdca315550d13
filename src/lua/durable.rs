//! Durable delivery's admin ([`DurableAdmin`]) as Lua userdata: what the
//! store gives back at load, and the admin shell's list, replay, purge and
//! retry.

use mlua::{Lua, Table, UserData, UserDataMethods};

use crate::delivery::{DurableAdmin, Record, Source};

impl UserData for DurableAdmin {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
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
