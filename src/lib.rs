//! Native core of mod_component_http: a Prosody component whose stanzas are
//! POSTed as JSON to a web service, and whose HTTP answers become replies.
//!
//! The core is plain Rust, in modules that never depend on themselves
//! through others (a test checks it): [`effect`] (what Rust asks Lua to
//! do: the one protocol of the boundary), [`backoff`] (the one rule of waiting
//! before trying again), [`clock`] (the one reading of the wall clock),
//! [`log`] (log levels), [`xml`], [`jid`], [`stanza_error`] (stanza errors, HTTP
//! status → stanza error), [`conversion`] (the JSON contract: stanza →
//! request, HTTP answer → reply), [`local`] (what the component answers on
//! its own), [`signing`] (Standard Webhooks), [`options`] (every option, declared
//! once), [`config`] (the options validated),
//! [`delivery`] (HTTP off Prosody's thread: ordering, retries, durable
//! delivery), [`push`] (stanzas the service sends on its own), [`rooms`]
//! (group chat: the rooms a host is in). [`lua`] is
//! the only module that knows about Lua.

pub mod allow;
pub mod backoff;
pub mod clock;
pub mod commands;
pub mod config;
pub mod conversion;
pub mod delivery;
pub mod effect;
pub mod face;
pub mod forms;
pub mod jid;
pub mod json;
pub mod local;
pub mod log;
pub mod lua;
pub mod options;
pub mod push;
pub mod receive;
pub mod rooms;
pub mod signing;
pub mod stanza_error;
pub mod upload;
pub mod xml;

/// The entry point `package.loadlib(path, "luaopen_component_http")` finds.
#[cfg(feature = "module")]
#[mlua::lua_module]
fn component_http(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua::exports(lua)
}

#[cfg(test)]
mod layers {
    //! The modules form layers: none uses, directly or not, one that uses it.
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The top-level modules each file of `module` names as `crate::x`.
    fn uses(src: &Path, module: &str) -> BTreeSet<String> {
        let mut files = vec![src.join(format!("{module}.rs"))];
        let dir = src.join(module);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.map(|e| e.unwrap().path()));
        }
        let mut used = BTreeSet::new();
        for file in files.iter().filter(|f| f.exists()) {
            let text = std::fs::read_to_string(file).unwrap();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module && !name.is_empty() {
                    used.insert(name);
                }
            }
        }
        used
    }

    /// Whether `graph` has a cycle through `start`.
    fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(next) = todo.pop() {
            if next == start {
                return true;
            }
            if seen.insert(next) {
                todo.extend(graph.get(next).into_iter().flatten());
            }
        }
        false
    }

    /// Inside a folder module the files form layers too: each names its
    /// siblings as `super::x`; `mod.rs` (the API on top) and tests aside.
    #[test]
    fn no_file_of_a_folder_module_depends_on_itself() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for folder in ["delivery", "conversion", "lua", "push"] {
            let mut graph = BTreeMap::new();
            for entry in std::fs::read_dir(src.join(folder)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                if name == "mod" || name == "tests" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let used: BTreeSet<String> = code
                    .match_indices("super::")
                    .map(|(i, _)| {
                        code[i + 7..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .filter(|used| !used.is_empty() && *used != name)
                    .collect();
                graph.insert(name, used);
            }
            for file in graph.keys() {
                assert!(
                    !cycle_through(&graph, file),
                    "{folder}/{file}.rs depends on itself: {graph:?}"
                );
            }
        }
    }

    /// What `src/lua/` may name of the crate: the types it converts to and
    /// from Lua, the types it exposes as userdata, and the entry points it
    /// calls. Nothing that decides (a stanza error, an envelope, a rule):
    /// a binding that named `Envelope`, `StanzaError` or `may_get_error`
    /// would have to be listed here first.
    const BINDING_MAY_NAME: &[&str] = &[
        // Converted: util.stanza tables, effects, options, records, credentials.
        "xml::Element",
        "xml::Node",
        "xml::MAX_DEPTH",
        "effect::Effect",
        "config::Options",
        "options::ALL",
        "options::Default",
        "delivery::Record",
        "delivery::Source",
        "delivery::Stop",
        "push::Credentials",
        "push::Pushed",
        // Inputs read where Lua calls: the clock.
        "clock::unix_secs",
        // Exposed as userdata.
        "delivery::Delivery",
        "delivery::DurableAdmin",
        "rooms::Rooms",
        "rooms::SharedRooms",
        "rooms::lock",
        "push::Endpoint",
        // Entry points called.
        "config::Config",
        "conversion::request",
        "jid::prep",
        "receive::Host",
        "receive::receive",
        "receive::receive_unreadable",
    ];

    /// Every `crate::` path the files of `src/lua/` name, with `use`
    /// groups spread out (`crate::a::{b, c}` → `a::b`, `a::c`).
    fn binding_names(src: &Path) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(src.join("lua")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + 7..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let path = path.trim_end_matches(':');
                if rest[path.len()..].starts_with("::{") {
                    let group = &rest[path.len() + 3..rest.find('}').unwrap()];
                    for item in group.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                        names.insert(format!("{path}::{item}"));
                    }
                } else {
                    names.insert(path.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn the_binding_only_converts() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let names = binding_names(&src);
        assert!(names.contains("effect::Effect"), "{names:?}");
        let unexpected: Vec<&String> = names
            .iter()
            .filter(|n| !BINDING_MAY_NAME.contains(&n.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "src/lua/ names {unexpected:?}: move the decision to the module that owns it, \
             or list a conversion type in BINDING_MAY_NAME"
        );
        let unused: Vec<&&str> = BINDING_MAY_NAME
            .iter()
            .filter(|n| !names.contains(**n))
            .collect();
        assert!(
            unused.is_empty(),
            "BINDING_MAY_NAME lists {unused:?}, unused"
        );
    }

    #[test]
    fn no_module_depends_on_itself() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let modules: Vec<&str> = lib
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        assert!(modules.len() > 10, "{modules:?}");
        let graph: BTreeMap<String, BTreeSet<String>> = modules
            .iter()
            .map(|m| (m.to_string(), uses(&src, m)))
            .collect();
        for module in &modules {
            assert!(
                !cycle_through(&graph, module),
                "{module} depends on itself: {graph:?}"
            );
        }
    }
}
