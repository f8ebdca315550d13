//! `util.stanza` tables to and from the core's [`Element`]: read without
//! copying more than the strings, built as real stanza objects (with their
//! metatable and `tags`) so Prosody routes them like its own.

use mlua::{Lua, Table, Value};

use crate::xml::{Element, Node, MAX_DEPTH};

const STANZA_MT_KEY: &str = "mod_component_http.stanza_mt";

pub(super) fn stanzas_to_lua<'a>(
    lua: &Lua,
    stanzas: impl Iterator<Item = &'a Element>,
) -> mlua::Result<Table> {
    let list = lua.create_table()?;
    let mut stanzas = stanzas.peekable();
    if stanzas.peek().is_some() {
        // Looked up once per batch, not once per stanza.
        let stanza_mt = stanza_metatable(lua)?;
        for stanza in stanzas {
            list.raw_push(build_stanza(lua, stanza, &stanza_mt)?)?;
        }
    }
    Ok(list)
}

/// Reads a `util.stanza` table: name, attr, and numbered children (strings
/// are text nodes).
pub(super) fn element_from_lua(table: &Table, depth: usize) -> mlua::Result<Element> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::runtime("stanza nested too deeply"));
    }
    let name: mlua::LuaString = table
        .raw_get("name")
        .map_err(|_| mlua::Error::runtime("not a stanza: it has no name"))?;
    let mut element = Element::new(name.to_str()?.to_owned());
    if let Some(attr) = table.raw_get::<Option<Table>>("attr")? {
        attr.for_each(|key: mlua::LuaString, value: Value| {
            let value = match value {
                Value::String(s) => s.to_str()?.to_owned(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Ok(()),
            };
            element.attrs.push((key.to_str()?.to_owned(), value));
            Ok(())
        })?;
    }
    let len = table.raw_len();
    element.children.reserve(len);
    for i in 1..=len {
        match table.raw_get::<Value>(i)? {
            Value::String(text) => element.children.push(Node::Text(text.to_str()?.to_owned())),
            Value::Table(child) => element
                .children
                .push(Node::Element(element_from_lua(&child, depth + 1)?)),
            _ => {}
        }
    }
    Ok(element)
}

/// Builds a real `util.stanza` object (with its metatable and `tags`), so
/// Prosody routes it like any stanza of its own.
pub(super) fn element_to_lua(lua: &Lua, element: &Element) -> mlua::Result<Table> {
    let stanza_mt = stanza_metatable(lua)?;
    build_stanza(lua, element, &stanza_mt)
}

fn build_stanza(lua: &Lua, element: &Element, stanza_mt: &Table) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(element.children.len(), 3)?;
    table.raw_set("name", element.name.as_str())?;
    let attr = lua.create_table_with_capacity(0, element.attrs.len())?;
    for (key, value) in &element.attrs {
        attr.raw_set(key.as_str(), value.as_str())?;
    }
    table.raw_set("attr", attr)?;
    let tags = lua.create_table()?;
    for child in &element.children {
        match child {
            Node::Text(text) => table.raw_push(text.as_str())?,
            Node::Element(child) => {
                let child = build_stanza(lua, child, stanza_mt)?;
                table.raw_push(&child)?;
                tags.raw_push(child)?;
            }
        }
    }
    table.raw_set("tags", tags)?;
    table.set_metatable(Some(stanza_mt.clone()))?;
    Ok(table)
}

fn stanza_metatable(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(mt) = lua.named_registry_value::<Table>(STANZA_MT_KEY) {
        return Ok(mt);
    }
    let require: mlua::Function = lua.globals().get("require")?;
    let util_stanza: Table = require.call("util.stanza")?;
    let mt: Table = util_stanza.get("stanza_mt")?;
    lua.set_named_registry_value(STANZA_MT_KEY, &mt)?;
    Ok(mt)
}
