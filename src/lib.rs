//! Native core of mod_component_http: a Prosody component whose stanzas are
//! POSTed as JSON to a web service, and whose HTTP answers become replies.
//!
//! The core is plain Rust, each module depending only on those listed
//! before it: [`xml`], [`jid`], [`stanza_error`] (stanza errors, HTTP
//! status → stanza error), [`conversion`] (the JSON contract: stanza →
//! request, HTTP answer → reply), [`local`] (what the component answers on
//! its own), [`signing`] (Standard Webhooks), [`options`] (every option, declared
//! once), [`config`] (the options validated),
//! [`delivery`] (HTTP off Prosody's thread: ordering, retries, durable
//! delivery), [`push`] (stanzas the service sends on its own). [`lua`] is
//! the only module that knows about Lua.

pub mod config;
pub mod conversion;
pub mod delivery;
pub mod jid;
pub mod local;
pub mod lua;
pub mod options;
pub mod push;
pub mod signing;
pub mod stanza_error;
pub mod xml;

/// The entry point `package.loadlib(path, "luaopen_component_http")` finds.
#[cfg(feature = "module")]
#[mlua::lua_module]
fn component_http(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua::exports(lua)
}
