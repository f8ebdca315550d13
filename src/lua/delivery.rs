//! A host's [`Delivery`] as Lua userdata: post, drain (outcomes as flat
//! arrays), cancel, and durable delivery's admin.

use std::ffi::{c_int, CStr};

use mlua::{ffi, Lua, Table, UserData, UserDataMethods};

use super::stanza::{element_from_lua, element_to_lua, push_stanzas, push_str, stanza_metatable};
use crate::conversion::ns::MUC_USER;
use crate::conversion::{self, Envelope, Kind, RoomJids};
use crate::delivery::{Delivery, Outcome, Record, Source, Storage};
use crate::stanza_error::{ErrorType, StanzaError};
use crate::xml::Element;

/// What a stanza this module cannot read is answered with.
pub(super) enum Unreadable {
    /// The stanza error its sender gets.
    Reply(Element),
    /// None: it must not be answered (an error or an IQ result:
    /// docs/contract.md §5), or has no addresses.
    Nothing,
    /// None: it came from a room, which would kick the bot for an error.
    Withheld,
}

/// The answer to a stanza this module cannot read, built from its top-level
/// attributes (and whether it carries `muc#user`; `rooms` are the rooms
/// the host is in, when known).
pub(super) fn unreadable_reply(
    stanza: &Table,
    text: Option<&str>,
    rooms: Option<&RoomJids>,
) -> Unreadable {
    let Some(mut envelope) = unreadable_envelope(stanza) else {
        return Unreadable::Nothing;
    };
    envelope.from_room |= rooms.is_some_and(|r| r.contains(&envelope.from));
    let mut error = StanzaError::new(ErrorType::Cancel, "internal-server-error");
    if let Some(text) = text {
        error = error.with_text(text);
    }
    if envelope.may_get_error() {
        Unreadable::Reply(envelope.error_reply(&error))
    } else if envelope.may_be_answered() {
        Unreadable::Withheld
    } else {
        Unreadable::Nothing
    }
}

fn unreadable_envelope(stanza: &Table) -> Option<Envelope> {
    let mut top = Element::new(stanza.raw_get::<String>("name").ok()?);
    let attr = stanza.raw_get::<Table>("attr").ok()?;
    for name in ["to", "from", "id", "type"] {
        if let Ok(value) = attr.raw_get::<String>(name) {
            top.attrs.push((name.to_owned(), value));
        }
    }
    // Only the children's own attributes are looked at: the stanza may be
    // unreadable for its depth.
    let from_room = stanza.raw_get::<Table>("tags").is_ok_and(|tags| {
        tags.sequence_values::<Table>().any(|tag| {
            tag.ok()
                .and_then(|tag| tag.raw_get::<Table>("attr").ok())
                .and_then(|attr| attr.raw_get::<String>("xmlns").ok())
                .is_some_and(|xmlns| xmlns == MUC_USER)
        })
    });
    if from_room {
        top = top.with_child(Element::new("x").with_attr("xmlns", MUC_USER));
    }
    Envelope::of(&top).ok()
}

impl UserData for Delivery {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("fd", |_, this, ()| Ok(this.fd()));
        // The `whpk_` key that verifies this host's `v1a` signatures, or nil.
        methods.add_method("signing_public_key", |_, this, ()| {
            Ok(this.config().signing_key.as_ref().map(|k| k.public_key()))
        });
        methods.add_method("counts", |_, this, ()| Ok(this.counts()));
        // Stanzas accepted and not yet answered.
        methods.add_method("owes", |_, this, ()| Ok(this.in_flight()));
        // A reload: this delivery takes over from the one before (see
        // Delivery::take_over).
        methods.add_method("take_over", |_, this, old: mlua::UserDataRef<Delivery>| {
            this.take_over(&old);
            Ok(())
        });
        // What the admin is warned of at load, as lines.
        methods.add_method("warnings", |_, this, ()| Ok(this.config().warnings()));
        methods.add_method("forwards", |_, this, kind: String| {
            Ok(Kind::parse(&kind).is_some_and(|k| this.config().forwards(k)))
        });
        // nil, or for a stanza that cannot be read why, the stanza error
        // its sender gets (nil when it must not be answered), and whether
        // one was withheld (it came from a room).
        methods.add_method("post", |lua, this, stanza: Table| {
            let request = element_from_lua(lua, &stanza)
                .and_then(|e| conversion::request(&e).map_err(mlua::Error::external));
            Ok(match request {
                Ok(request) => {
                    this.submit(request);
                    (None, None, false)
                }
                Err(why) => {
                    let text = Some("could not forward the stanza");
                    let (reply, withheld) =
                        match unreadable_reply(&stanza, text, Some(this.room_jids())) {
                            Unreadable::Reply(reply) => (Some(element_to_lua(lua, &reply)?), false),
                            Unreadable::Nothing => (None, false),
                            Unreadable::Withheld => (None, true),
                        };
                    (Some(why.to_string()), reply, withheld)
                }
            })
        });
        methods.add_method("drain", |lua, this, ()| outcomes_to_lua(lua, this.drain()));
        methods.add_method("cancel_all", |lua, this, shutting_down: bool| {
            let why = if shutting_down {
                "the server is shutting down"
            } else {
                "the module was unloaded"
            };
            outcomes_to_lua(lua, this.cancel_all(why))
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

/// Stanzas, logs, reports, storage, statuses: see [`outcomes_to_lua`].
type Drained = (Table, Option<Table>, Table, Option<Table>, Option<Table>);

/// Outcomes as flat arrays, cheap to walk in Lua: the stanzas to send; the
/// log lines as level, message, level, message, ... (nil when there are
/// none, the usual case); for metrics label, seconds (-1 when not timed),
/// retries, whether an error was withheld from a room, label, ...; the storage instructions of durable delivery as
/// `{ op = "hold"|"forget"|"dead", id=, stanza=, received=, reason= }`
/// (nil when none); and the module's status changes as level, text,
/// override, ... (nil when none).
///
/// Built in one protected call with Lua's C API (see [`super::stanza`]):
/// Prosody's thread runs this once per wake, so its fixed cost counts.
fn outcomes_to_lua(lua: &Lua, outcomes: Vec<Outcome>) -> mlua::Result<Drained> {
    let stanza_mt = stanza_metatable(lua)?;
    let stanzas: Vec<&Element> = outcomes.iter().flat_map(|o| o.stanzas.iter()).collect();
    // Owned here, outside the raw code, which may only borrow.
    let statuses: Vec<(&str, String, bool)> = outcomes
        .iter()
        .filter_map(|o| o.status)
        .map(|s| (s.level().as_str(), s.text(), s.overrides()))
        .collect();
    // Safety: the closure holds borrows only (see super::stanza).
    unsafe {
        lua.exec_raw(&stanza_mt, |state| {
            push_stanzas(state, stanzas.iter().copied(), 1);

            let logs = outcomes.iter().filter_map(|o| o.log.as_ref());
            let mut list = List::nil_if_empty(state, logs.clone().count() * 2);
            for (level, line) in logs {
                list.push_str(level.as_str());
                list.push_str(line);
            }

            let reports = outcomes.iter().filter(|o| !o.label.is_empty());
            let mut list = List::new(state, reports.clone().count() * 4);
            for outcome in reports {
                list.push_str(outcome.label);
                ffi::lua_pushnumber(state, outcome.seconds.unwrap_or(-1.0));
                list.push_top();
                ffi::lua_pushinteger(state, outcome.retries.into());
                list.push_top();
                ffi::lua_pushboolean(state, c_int::from(outcome.error_withheld));
                list.push_top();
            }

            let storage = outcomes.iter().filter_map(|o| o.storage.as_ref());
            let mut list = List::nil_if_empty(state, storage.clone().count());
            for storage in storage {
                push_storage(state, storage);
                list.push_top();
            }

            let mut list = List::nil_if_empty(state, statuses.len() * 3);
            for (level, text, overrides) in &statuses {
                list.push_str(level);
                list.push_str(text);
                ffi::lua_pushboolean(state, c_int::from(*overrides));
                list.push_top();
            }
            // What is left on the stack is returned: the five, not the metatable.
            ffi::lua_remove(state, 1);
        })
    }
}

/// A Lua list being filled on top of the stack (raw code: may raise).
struct List {
    state: *mut ffi::lua_State,
    len: ffi::lua_Integer,
}

impl List {
    /// Pushes an empty list with room for `capacity` values.
    unsafe fn new(state: *mut ffi::lua_State, capacity: usize) -> List {
        ffi::lua_createtable(state, capacity as c_int, 0);
        List { state, len: 0 }
    }

    /// As `new`, but pushes nil when there will be nothing to list.
    unsafe fn nil_if_empty(state: *mut ffi::lua_State, capacity: usize) -> List {
        if capacity == 0 {
            ffi::lua_pushnil(state);
            return List { state, len: 0 };
        }
        List::new(state, capacity)
    }

    /// Appends the value on top of the stack (and pops it).
    unsafe fn push_top(&mut self) {
        self.len += 1;
        ffi::lua_rawseti(self.state, -2, self.len);
    }

    unsafe fn push_str(&mut self, s: &str) {
        push_str(self.state, s);
        self.push_top();
    }
}

/// Pushes one storage instruction as a table.
unsafe fn push_storage(state: *mut ffi::lua_State, storage: &Storage) {
    ffi::lua_createtable(state, 0, 5);
    let (op, record, reason) = match storage {
        Storage::Hold(record) => ("hold", Some(record), None),
        Storage::Forget(id) => {
            set_str(state, c"id", id);
            ("forget", None, None)
        }
        Storage::Dead(record, reason) => ("dead", Some(record), Some(reason)),
    };
    set_str(state, c"op", op);
    if let Some(record) = record {
        set_str(state, c"id", &record.id);
        set_str(state, c"stanza", &record.stanza);
        // Milliseconds since the epoch: exact in a float, and an integer
        // where Lua has them.
        ffi::lua_pushinteger(state, record.received as ffi::lua_Integer);
        ffi::lua_setfield(state, -2, c"received".as_ptr());
    }
    if let Some(reason) = reason {
        set_str(state, c"reason", reason);
    }
}

/// `t[key] = value` for the table on top of the stack.
unsafe fn set_str(state: *mut ffi::lua_State, key: &CStr, value: &str) {
    push_str(state, value);
    ffi::lua_setfield(state, -2, key.as_ptr());
}
