//! `util.stanza` tables to and from the core's [`Element`]: read without
//! copying more than the strings, built as real stanza objects (with their
//! metatable and `tags`) so Prosody routes them like its own.
//!
//! Both directions use Lua's C API inside one protected call per batch
//! (`Lua::exec_raw`). Through mlua's safe API every table read or write is
//! a protected call of its own, and those were most of what this module
//! cost Prosody's thread (see README, Performance). The rules that keep the
//! raw code sound:
//! - building calls functions that may raise a Lua error (out of memory),
//!   so while it runs no Rust value that owns memory is alive: the builder
//!   only holds borrows, and a raised error unwinds into the protected call;
//! - reading does own memory (the [`Element`] it builds), so it calls only
//!   functions that never raise: the stack is grown and the keys are pushed
//!   first, then only raw gets, `lua_next`, type checks and conversions of
//!   strings and numbers that allocate nothing.

use std::ffi::{c_char, c_int};

use mlua::{ffi, Lua, Table};

use crate::xml::{Element, Node, MAX_DEPTH};

const STANZA_MT_KEY: &str = "mod_component_http.stanza_mt";

/// Room for the builder's stack at `depth`: each level holds its table and
/// its `tags`, the deepest two more. Raises a Lua error when there is none.
pub(super) unsafe fn ensure_stack(state: *mut ffi::lua_State, depth: usize) {
    if ffi::lua_checkstack(state, 2 * depth as c_int + 8) == 0 {
        push_str(state, "stanza too deep for Lua's stack");
        ffi::lua_error(state);
    }
}

pub(super) fn depth_of(element: &Element) -> usize {
    1 + element
        .children
        .iter()
        .filter_map(|child| match child {
            Node::Element(child) => Some(depth_of(child)),
            Node::Text(_) => None,
        })
        .max()
        .unwrap_or(0)
}

pub(super) unsafe fn push_str(state: *mut ffi::lua_State, s: &str) {
    ffi::lua_pushlstring(state, s.as_ptr() as *const c_char, s.len());
}

/// Pushes `element` as a stanza: `{ name=, attr={}, tags={}, children... }`
/// with `util.stanza`'s metatable (at stack index `mt`).
pub(super) unsafe fn push_stanza(state: *mut ffi::lua_State, element: &Element, mt: c_int) {
    ffi::lua_createtable(state, element.children.len() as c_int, 3);
    let table = ffi::lua_gettop(state);
    push_str(state, &element.name);
    ffi::lua_setfield(state, table, c"name".as_ptr());
    ffi::lua_createtable(state, 0, element.attrs.len() as c_int);
    for (key, value) in &element.attrs {
        push_str(state, key);
        push_str(state, value);
        ffi::lua_rawset(state, -3);
    }
    ffi::lua_setfield(state, table, c"attr".as_ptr());
    let elements = element
        .children
        .iter()
        .filter(|c| matches!(c, Node::Element(_)))
        .count();
    ffi::lua_createtable(state, elements as c_int, 0);
    let tags = table + 1;
    let mut tag = 0;
    for (i, child) in element.children.iter().enumerate() {
        match child {
            Node::Text(text) => push_str(state, text),
            Node::Element(child) => {
                push_stanza(state, child, mt);
                ffi::lua_pushvalue(state, -1);
                tag += 1;
                ffi::lua_rawseti(state, tags, tag);
            }
        }
        ffi::lua_rawseti(state, table, i as ffi::lua_Integer + 1);
    }
    ffi::lua_setfield(state, table, c"tags".as_ptr());
    ffi::lua_pushvalue(state, mt);
    ffi::lua_setmetatable(state, table);
}

/// Reads a `util.stanza` table: name, attr, and numbered children (strings
/// are text nodes).
pub(super) fn element_from_lua(lua: &Lua, stanza: &Table) -> mlua::Result<Element> {
    let mut read = Err("not read");
    // Safety: see the module's rules. Everything that may raise (growing
    // the stack, pushing the keys) happens before `read` owns anything.
    unsafe {
        lua.exec_raw::<()>(stanza, |state| {
            if ffi::lua_checkstack(state, MAX_DEPTH as c_int + 16) == 0 {
                read = Err("stanza too deep for Lua's stack");
                return;
            }
            push_str(state, "name");
            push_str(state, "attr");
            let keys = Keys { name: 2, attr: 3 };
            ffi::lua_pushvalue(state, 1);
            read = read_element(state, &keys, 0);
        })?;
    }
    read.map_err(mlua::Error::runtime)
}

/// Stack indices of the interned keys.
struct Keys {
    name: c_int,
    attr: c_int,
}

/// Reads the table on top of the stack (and pops it). Calls nothing that
/// may raise a Lua error.
unsafe fn read_element(
    state: *mut ffi::lua_State,
    keys: &Keys,
    depth: usize,
) -> Result<Element, &'static str> {
    let table = ffi::lua_gettop(state);
    let result = read_table(state, table, keys, depth);
    ffi::lua_settop(state, table - 1);
    result
}

unsafe fn read_table(
    state: *mut ffi::lua_State,
    table: c_int,
    keys: &Keys,
    depth: usize,
) -> Result<Element, &'static str> {
    if depth > MAX_DEPTH {
        return Err("stanza nested too deeply");
    }
    if ffi::lua_type(state, table) != ffi::LUA_TTABLE {
        return Err("not a stanza: not a table");
    }
    ffi::lua_pushvalue(state, keys.name);
    ffi::lua_rawget(state, table);
    let name = string_at(state, -1).ok_or("not a stanza: it has no name")?;
    let mut element = Element::new(name?.to_owned());
    ffi::lua_settop(state, table);

    ffi::lua_pushvalue(state, keys.attr);
    ffi::lua_rawget(state, table);
    if ffi::lua_type(state, -1) == ffi::LUA_TTABLE {
        let attr = ffi::lua_gettop(state);
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, attr) != 0 {
            // Keys that are not strings (none in a stanza) are skipped, as
            // are values that are neither strings nor numbers.
            if ffi::lua_type(state, -2) == ffi::LUA_TSTRING {
                if let Some(value) = attribute_value(state, -1)? {
                    if let Some(key) = string_at(state, -2) {
                        element.attrs.push((key?.to_owned(), value));
                    }
                }
            }
            ffi::lua_settop(state, attr + 1);
        }
    }
    ffi::lua_settop(state, table);

    let len = ffi::lua_rawlen(state, table);
    // A border of Lua's choosing: reserve no more than a stanza would need.
    element.children.reserve(len.min(256));
    for i in 1..=len {
        match ffi::lua_rawgeti(state, table, i as ffi::lua_Integer) {
            ffi::LUA_TSTRING => {
                if let Some(text) = string_at(state, -1) {
                    element.children.push(Node::Text(text?.to_owned()));
                }
                ffi::lua_settop(state, table);
            }
            ffi::LUA_TTABLE => {
                let child = read_element(state, keys, depth + 1)?;
                element.children.push(Node::Element(child));
            }
            _ => ffi::lua_settop(state, table),
        }
    }
    Ok(element)
}

/// The string at `index` (only when it is one: numbers are not converted in
/// place), as UTF-8.
unsafe fn string_at<'a>(
    state: *mut ffi::lua_State,
    index: c_int,
) -> Option<Result<&'a str, &'static str>> {
    if ffi::lua_type(state, index) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0;
    let ptr = ffi::lua_tolstring(state, index, &mut len);
    let bytes = std::slice::from_raw_parts(ptr as *const u8, len);
    Some(std::str::from_utf8(bytes).map_err(|_| "not UTF-8"))
}

/// An attribute's value: strings as they are, numbers written out (an
/// integral one without a fraction), anything else skipped.
unsafe fn attribute_value(
    state: *mut ffi::lua_State,
    index: c_int,
) -> Result<Option<String>, &'static str> {
    match ffi::lua_type(state, index) {
        ffi::LUA_TSTRING => Ok(string_at(state, index).transpose()?.map(str::to_owned)),
        ffi::LUA_TNUMBER => {
            if ffi::lua_isinteger(state, index) != 0 {
                return Ok(Some(
                    ffi::lua_tointegerx(state, index, std::ptr::null_mut()).to_string(),
                ));
            }
            Ok(Some(
                ffi::lua_tonumberx(state, index, std::ptr::null_mut()).to_string(),
            ))
        }
        _ => Ok(None),
    }
}

/// `util.stanza`'s metatable, looked up once per batch.
pub(super) fn stanza_metatable(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(mt) = lua.named_registry_value::<Table>(STANZA_MT_KEY) {
        return Ok(mt);
    }
    let require: mlua::Function = lua.globals().get("require")?;
    let util_stanza: Table = require.call("util.stanza")?;
    let mt: Table = util_stanza.get("stanza_mt")?;
    lua.set_named_registry_value(STANZA_MT_KEY, &mt)?;
    Ok(mt)
}

/// What can be read of a stanza that [`element_from_lua`] could not: its
/// name, its string attributes, and its children's names and namespaces
/// (not deeper: it may be unreadable for its depth).
pub(super) fn top_from_lua(stanza: &Table) -> Element {
    let name = stanza.raw_get::<String>("name");
    let mut top = Element::new(name.unwrap_or_else(|_| "stanza".into()));
    if let Ok(attr) = stanza.raw_get::<Table>("attr") {
        for (key, value) in attr.pairs::<String, String>().flatten() {
            top.attrs.push((key, value));
        }
    }
    if let Ok(tags) = stanza.raw_get::<Table>("tags") {
        for tag in tags.sequence_values::<Table>().flatten() {
            let mut child = Element::new(tag.raw_get::<String>("name").unwrap_or_default());
            let xmlns = tag
                .raw_get::<Table>("attr")
                .and_then(|a| a.raw_get::<String>("xmlns"));
            if let Ok(xmlns) = xmlns {
                child = child.with_attr("xmlns", xmlns);
            }
            top = top.with_child(child);
        }
    }
    top
}
