//! The Lua face of the core: `util.stanza` tables in and out ([`stanza`]),
//! a host's [`Delivery`] ([`delivery`]) and [`Rooms`] ([`rooms`]) as
//! userdata, errors turned into Lua errors. Everything Lua-specific lives
//! in this module; the rest of the crate knows nothing of mlua.

mod delivery;
mod durable;
mod effect;
mod push;
mod rooms;
mod stanza;

use std::sync::Once;

use std::time::Instant;

use mlua::{Lua, LuaSerdeExt, Table, UserDataRef, UserDataRefMut, Value};

use crate::clock::unix_secs;
use crate::config::{Config, Options};
use crate::conversion::request;
use crate::delivery::Delivery;
use crate::jid::prep;
use crate::options::{Default, ALL};
use crate::push::Endpoint;
use crate::receive::{receive, receive_unreadable, Host};
use effect::effects_to_lua;
use rooms::LuaRooms;
use stanza::{element_from_lua, top_from_lua};

/// Builds the table `require`/`package.loadlib` returns.
pub fn exports(lua: &Lua) -> mlua::Result<Table> {
    quiet_panics();
    let exports = lua.create_table()?;
    exports.set("version", env!("CARGO_PKG_VERSION"))?;
    exports.set("options", options_table(lua)?)?;
    exports.set("effects", effect::arities(lua)?)?;
    exports.set("new_delivery", lua.create_function(new_delivery)?)?;
    exports.set(
        "new_rooms",
        lua.create_function(
            |_, (delivery, nick): (mlua::UserDataRef<Delivery>, Option<String>)| {
                Ok(LuaRooms(delivery.rooms(nick.as_deref())))
            },
        )?,
    )?;
    // A retired delivery that owes nothing, let go now rather than at the
    // next garbage collection: its eventfd and its pooled connections close.
    exports.set(
        "close_delivery",
        lua.create_function(|_, delivery: mlua::AnyUserData| delivery.destroy())?,
    )?;
    // Durable delivery's admin, or nil when durable delivery is off.
    exports.set(
        "new_durable",
        lua.create_function(|_, delivery: UserDataRef<Delivery>| Ok(delivery.durable()))?,
    )?;
    // The host's push endpoint, or nil when it is off.
    exports.set(
        "new_push",
        lua.create_function(|_, delivery: mlua::UserDataRef<Delivery>| {
            Ok(delivery.push_endpoint())
        })?,
    )?;
    // The JID as it leaves the module (see jid.rs), or nil: for the
    // specs, which compare it with Prosody's own util.jid.prep.
    exports.set(
        "jid_prep",
        lua.create_function(|_, jid: mlua::LuaString| {
            Ok(jid.to_str().ok().and_then(|jid| prep(&jid)))
        })?,
    )?;
    exports.set(
        "request_json",
        lua.create_function(|lua, stanza: Table| {
            let request =
                request(&element_from_lua(lua, &stanza)?).map_err(mlua::Error::external)?;
            Ok(request.json)
        })?,
    )?;
    // A stanza to the component: its effects, and whether the module took
    // it (see receive.rs).
    exports.set(
        "receive",
        lua.create_function(
            |lua,
             (delivery, rooms, mut push, stanza): (
                UserDataRef<Delivery>,
                UserDataRef<LuaRooms>,
                Option<UserDataRefMut<Endpoint>>,
                Table,
            )| {
                let host = Host {
                    delivery: &delivery,
                    rooms: &mut rooms.lock(),
                    push: push.as_deref_mut(),
                };
                let (effects, taken) = match element_from_lua(lua, &stanza) {
                    Ok(stanza) => receive(host, &stanza, Instant::now(), unix_secs()),
                    Err(why) => receive_unreadable(host, &top_from_lua(&stanza), &why.to_string()),
                };
                Ok((effects_to_lua(lua, &effects)?, taken))
            },
        )?,
    )?;
    Ok(exports)
}

/// `native.options`: every option as `{ name=, key=, type=, default=,
/// alias= }`, for the shim to read with the `module:get_option_*` that
/// `type` names (see options.rs).
fn options_table(lua: &Lua) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(ALL.len(), 0)?;
    for option in ALL {
        let entry = lua.create_table_with_capacity(0, 5)?;
        entry.raw_set("name", option.name)?;
        entry.raw_set("key", option.key)?;
        entry.raw_set("type", option.reader())?;
        match option.default() {
            Default::None => {}
            Default::Number(n) => entry.raw_set("default", n)?,
            Default::Flag(on) => entry.raw_set("default", on)?,
            Default::Word(word) => entry.raw_set("default", word)?,
            Default::Words(words) => entry.raw_set("default", words.to_vec())?,
        }
        if let Some(alias) = option.alias {
            entry.raw_set("alias", alias)?;
        }
        list.raw_push(entry)?;
    }
    Ok(list)
}

/// One line per panic, and no backtrace: with RUST_BACKTRACE set, unwinding
/// with a backtrace costs Prosody's thread tens of milliseconds.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("mod_component_http: Rust panic: {info}");
        }));
    });
}

/// `new_delivery{ host=, url=, stanzas={...}, timeout=, ... }` (keyed as
/// `native.options` says) → a host's delivery, or nil and the
/// reason (a bad option), Lua style, so the shim can log it as one line.
fn new_delivery(lua: &Lua, table: Table) -> mlua::Result<(Option<Delivery>, Option<String>)> {
    let options: Options = match lua.from_value(Value::Table(table)) {
        Ok(options) => options,
        // Say, a header value that is not a string.
        Err(e) => return Ok((None, Some(format!("invalid option: {e}")))),
    };
    let delivery = Config::new(options)
        .map_err(|e| e.to_string())
        .and_then(|config| Delivery::new(config).map_err(|e| e.to_string()));
    Ok(match delivery {
        Ok(delivery) => (Some(delivery), None),
        Err(reason) => (None, Some(reason)),
    })
}
