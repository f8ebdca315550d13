//! Native core of mod_component_http: a Prosody component whose stanzas are
//! POSTed as JSON to a web service, and whose HTTP answers become replies.
//!
//! The core is plain Rust: [`conversion`] (stanza ⇄ JSON), [`errors`]
//! (HTTP status → stanza error), [`local`] (what the component answers on its
//! own), [`config`], [`delivery`] (HTTP off Prosody's thread), [`retry`]
//! and [`signing`] (Standard Webhooks), [`push`] (stanzas the service
//! sends on its own). [`lua`] is the only module that
//! knows about Lua.

pub mod config;
pub mod conversion;
pub mod delivery;
pub mod durable;
pub mod errors;
pub mod jid;
pub mod local;
pub mod lua;
pub mod push;
pub mod retry;
pub mod signing;
pub mod xml;

/// The entry point `package.loadlib(path, "luaopen_component_http")` finds.
#[cfg(feature = "module")]
#[mlua::lua_module]
fn component_http(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua::exports(lua)
}
