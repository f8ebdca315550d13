//! The Lua face of the core: `util.stanza` tables in and out, a host's
//! [`Delivery`] as userdata, errors turned into Lua errors. Everything Lua-specific
//! lives here; the rest of the crate knows nothing of mlua.

use std::sync::Once;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mlua::{Lua, LuaSerdeExt, LuaString, Table, UserData, UserDataMethods, Value};

use crate::config::{Config, Options};
use crate::conversion::{self, Envelope, Kind};
use crate::delivery::{Delivery, Outcome, Record, Source, Storage};
use crate::local;
use crate::options::{self, Default};
use crate::push;
use crate::rooms::{self, Effect, Rooms};
use crate::stanza_error::{ErrorType, StanzaError};
use crate::xml::{Element, Node, MAX_DEPTH};

const STANZA_MT_KEY: &str = "mod_component_http.stanza_mt";

/// Builds the table `require`/`package.loadlib` returns.
pub fn exports(lua: &Lua) -> mlua::Result<Table> {
    quiet_panics();
    let exports = lua.create_table()?;
    exports.set("version", env!("CARGO_PKG_VERSION"))?;
    exports.set("options", options_table(lua)?)?;
    exports.set("new_delivery", lua.create_function(new_delivery)?)?;
    exports.set(
        "new_rooms",
        lua.create_function(|_, (host, nick): (String, Option<String>)| {
            Ok(LuaRooms(Rooms::new(&host, nick.as_deref())))
        })?,
    )?;
    exports.set(
        "request_json",
        lua.create_function(|_, stanza: Table| {
            let request = conversion::request(&element_from_lua(&stanza, 0)?)
                .map_err(mlua::Error::external)?;
            Ok(request.json)
        })?,
    )?;
    // What the component answers itself, and, for a stanza that cannot be
    // read, why (for the log).
    exports.set(
        "local_presence",
        lua.create_function(|lua, stanza: Table| {
            Ok(match element_from_lua(&stanza, 0) {
                Ok(stanza) => (stanzas_to_lua(lua, local::presence(&stanza).iter())?, None),
                Err(why) => (lua.create_table()?, Some(why.to_string())),
            })
        })?,
    )?;
    exports.set(
        "local_iq",
        lua.create_function(|lua, (stanza, host): (Table, String)| {
            let (answer, why) = match element_from_lua(&stanza, 0) {
                Ok(element) => (local::iq(&element, &host), None),
                Err(why) => (unreadable_reply(&stanza, None), Some(why.to_string())),
            };
            let answer = answer.map(|a| element_to_lua(lua, &a)).transpose()?;
            Ok((answer, why))
        })?,
    )?;
    Ok(exports)
}

/// `native.options`: every option as `{ name=, key=, type=, default=,
/// alias= }`, for the shim to read with the `module:get_option_*` that
/// `type` names (see [`crate::options`]).
fn options_table(lua: &Lua) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(options::ALL.len(), 0)?;
    for option in options::ALL {
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

/// The stanza error for a stanza this module cannot read, built from its
/// top-level attributes; none when it must not be answered (an error or an
/// IQ result: docs/contract.md §5) or has no addresses.
fn unreadable_reply(stanza: &Table, text: Option<&str>) -> Option<Element> {
    let mut top = Element::new(stanza.raw_get::<String>("name").ok()?);
    let attr = stanza.raw_get::<Table>("attr").ok()?;
    for name in ["to", "from", "id", "type"] {
        if let Ok(value) = attr.raw_get::<String>(name) {
            top.attrs.push((name.to_owned(), value));
        }
    }
    let envelope = Envelope::of(&top).ok()?;
    let mut error = StanzaError::new(ErrorType::Cancel, "internal-server-error");
    if let Some(text) = text {
        error = error.with_text(text);
    }
    envelope
        .may_be_answered()
        .then(|| envelope.error_reply(&error))
}

/// Authorization, webhook-id, webhook-timestamp, webhook-signature, body.
type PushHeaders = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    LuaString,
);

impl UserData for Delivery {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("fd", |_, this, ()| Ok(this.fd()));
        methods.add_method("counts", |_, this, ()| Ok(this.counts()));
        // The push endpoint's pushes a second, and seconds a pushed IQ waits.
        methods.add_method("push_limits", |_, this, ()| {
            let config = this.config();
            Ok((config.push_rate, config.push_timeout.as_secs_f64()))
        });
        methods.add_method("forwards", |_, this, kind: String| {
            Ok(Kind::parse(&kind).is_some_and(|k| this.config().forwards(k)))
        });
        // nil, or for a stanza that cannot be read why, and the stanza
        // error its sender gets (nil when it must not be answered).
        methods.add_method("post", |lua, this, stanza: Table| {
            let request = element_from_lua(&stanza, 0)
                .and_then(|e| conversion::request(&e).map_err(mlua::Error::external));
            Ok(match request {
                Ok(request) => {
                    this.submit(request);
                    (None, None)
                }
                Err(why) => {
                    let reply = unreadable_reply(&stanza, Some("could not forward the stanza"));
                    let reply = reply.map(|r| element_to_lua(lua, &r)).transpose()?;
                    (Some(why.to_string()), reply)
                }
            })
        });
        methods.add_method("drain", |lua, this, ()| outcomes_to_lua(lua, this.drain()));
        // Push endpoint: nil when allowed, else the HTTP status and why.
        methods.add_method(
            "push_authorize",
            |_, this, (authorization, id, timestamp, signature, body): PushHeaders| {
                let config = this.config();
                let Some(token) = &config.push_token else {
                    return Ok((Some(404), Some("push is not enabled".to_owned())));
                };
                if body.as_bytes().len() > config.push_max_size {
                    let why = format!("larger than {} bytes", config.push_max_size);
                    return Ok((Some(413), Some(why)));
                }
                let credentials = push::Credentials {
                    authorization: authorization.as_deref(),
                    webhook_id: id.as_deref(),
                    webhook_timestamp: timestamp.as_deref(),
                    webhook_signature: signature.as_deref(),
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                Ok(
                    match push::authorize(&token.0, &credentials, &body.as_bytes(), now) {
                        Ok(()) => (None, None),
                        Err(e) => (Some(e.status), Some(e.message)),
                    },
                )
            },
        );
        // The stanza a push describes, or nil, the HTTP status and why.
        methods.add_method(
            "push_stanza",
            |lua, this, (content_type, body): (Option<String>, LuaString)| {
                let host = &this.config().host;
                Ok(
                    match push::stanza(host, content_type.as_deref(), &body.as_bytes()) {
                        Ok(stanza) => (Some(element_to_lua(lua, &stanza)?), None, None),
                        Err(e) => (None, Some(e.status), Some(e.message)),
                    },
                )
            },
        );
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

/// A host's rooms (see [`crate::rooms`]); its methods answer with effects
/// as `{ op = "send", stanza = }`, `{ op = "log", level =, text = }`,
/// `{ op = "remember", room =, nick =, jid = }`, `{ op = "forget", room = }`.
struct LuaRooms(Rooms);

fn effects_to_lua(lua: &Lua, effects: Vec<Effect>) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(effects.len(), 0)?;
    for effect in effects {
        let entry = lua.create_table()?;
        match effect {
            Effect::Send(stanza) => {
                entry.raw_set("op", "send")?;
                entry.raw_set("stanza", element_to_lua(lua, &stanza)?)?;
            }
            Effect::Log(level, text) => {
                entry.raw_set("op", "log")?;
                entry.raw_set("level", level)?;
                entry.raw_set("text", text)?;
            }
            Effect::Remember { room, nick, jid } => {
                entry.raw_set("op", "remember")?;
                entry.raw_set("room", room)?;
                entry.raw_set("nick", nick)?;
                entry.raw_set("jid", jid)?;
            }
            Effect::Forget { room } => {
                entry.raw_set("op", "forget")?;
                entry.raw_set("room", room)?;
            }
        }
        list.raw_push(entry)?;
    }
    Ok(list)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl UserData for LuaRooms {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut(
            "add",
            |lua, this, (room, from): (String, Option<String>)| {
                effects_to_lua(lua, this.0.add(&room, from.as_deref()))
            },
        );
        // nil when the presence is not about our place in a room; else the
        // effects, and whether the web service hears of it.
        methods.add_method_mut("presence", |lua, this, stanza: Table| {
            let stanza = element_from_lua(&stanza, 0)?;
            let now = rooms::stamp(unix_seconds());
            match this.0.presence(&stanza, Instant::now(), &now) {
                Some((effects, post)) => Ok((Some(effects_to_lua(lua, effects)?), post)),
                None => Ok((None, false)),
            }
        });
        methods.add_method_mut("message", |_, this, stanza: Table| {
            Ok(this.0.message(&element_from_lua(&stanza, 0)?))
        });
        methods.add_method_mut("outgoing", |lua, this, stanza: Table| {
            effects_to_lua(lua, this.0.outgoing(&element_from_lua(&stanza, 0)?))
        });
        // Effects of the joins due now, and the seconds until the next (or nil).
        methods.add_method_mut("due", |lua, this, ()| {
            let now = Instant::now();
            let (effects, next) = this.0.due(now);
            let wait = next.map(|at| at.saturating_duration_since(now).as_secs_f64());
            Ok((effects_to_lua(lua, effects)?, wait))
        });
        // Seconds until a room's wait to be joined again ends (or nil); no effect.
        methods.add_method("next_wait", |_, this, ()| {
            let now = Instant::now();
            Ok(this
                .0
                .next_due()
                .map(|at| at.saturating_duration_since(now).as_secs_f64()))
        });
        methods.add_method("joined", |_, this, ()| Ok(this.0.joined()));
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

/// Storage instructions as `{ op = "hold"|"forget"|"dead", id=, stanza=,
/// received=, reason= }`, or nil when there are none (the usual case).
fn storage_to_lua(lua: &Lua, outcomes: &[Outcome]) -> mlua::Result<Option<Table>> {
    let mut list = None;
    for storage in outcomes.iter().filter_map(|o| o.storage.as_ref()) {
        let entry = match storage {
            Storage::Hold(record) => {
                let entry = record_to_lua(lua, record)?;
                entry.raw_set("op", "hold")?;
                entry
            }
            Storage::Forget(id) => {
                let entry = lua.create_table_with_capacity(0, 2)?;
                entry.raw_set("op", "forget")?;
                entry.raw_set("id", id.as_str())?;
                entry
            }
            Storage::Dead(record, reason) => {
                let entry = record_to_lua(lua, record)?;
                entry.raw_set("op", "dead")?;
                entry.raw_set("reason", reason.as_str())?;
                entry
            }
        };
        let table = match &list {
            Some(table) => table,
            None => list.insert(lua.create_table()?),
        };
        table.raw_push(entry)?;
    }
    Ok(list)
}

/// Stanzas, logs, reports, storage, statuses: see [`outcomes_to_lua`].
type Drained = (Table, Option<Table>, Table, Option<Table>, Option<Table>);

/// Outcomes as flat arrays, cheap to walk in Lua: the stanzas to send; the
/// log lines as level, message, level, message, ... (nil when there are
/// none, the usual case); for metrics label, seconds (-1 when not timed),
/// retries, label, ...; the storage instructions of durable delivery; and
/// the module's status changes as level, text, override, ... (nil when none).
fn outcomes_to_lua(lua: &Lua, outcomes: Vec<Outcome>) -> mlua::Result<Drained> {
    let stanzas = stanzas_to_lua(lua, outcomes.iter().flat_map(|o| o.stanzas.iter()))?;
    let mut logs = None;
    for (level, line) in outcomes.iter().filter_map(|o| o.log.as_ref()) {
        let table = match &logs {
            Some(table) => table,
            None => logs.insert(lua.create_table()?),
        };
        table.raw_push(level.as_str())?;
        table.raw_push(line.as_str())?;
    }
    let reports = lua.create_table_with_capacity(outcomes.len() * 3, 0)?;
    for outcome in outcomes.iter().filter(|o| !o.label.is_empty()) {
        reports.raw_push(outcome.label)?;
        reports.raw_push(outcome.seconds.unwrap_or(-1.0))?;
        reports.raw_push(outcome.retries)?;
    }
    let mut statuses = None;
    for status in outcomes.iter().filter_map(|o| o.status) {
        let table = match &statuses {
            Some(table) => table,
            None => statuses.insert(lua.create_table()?),
        };
        table.raw_push(status.level().as_str())?;
        table.raw_push(status.text())?;
        table.raw_push(status.overrides())?;
    }
    let storage = storage_to_lua(lua, &outcomes)?;
    Ok((stanzas, logs, reports, storage, statuses))
}

fn stanzas_to_lua<'a>(
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
fn element_from_lua(table: &Table, depth: usize) -> mlua::Result<Element> {
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
fn element_to_lua(lua: &Lua, element: &Element) -> mlua::Result<Table> {
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
