//! The module's options, validated once at load against their declarations
//! in [`options`](crate::options) (docs/contract.md §1–§2 and the delivery
//! options). Every error names the option and, unless it is secret, the bad
//! value, so the admin's one log line says what to fix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use thiserror::Error;

use crate::allow::Allow;
use crate::commands::{menu, MenuItem};
use crate::conversion::Kind;
use crate::face::{Avatar, AvatarError, Face};
use crate::options::{self, Spec, Type};
use crate::signing::{KeyError, PublicKey, Secret, SecretError, SigningKey};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("component_post_url is not set: it must be the http(s) URL to POST stanzas to")]
    MissingUrl,
    /// `value` with any user and password in it masked.
    #[error("component_post_url = {value:?} is not a valid http(s) URL: {reason}")]
    BadUrl { value: String, reason: String },
    #[error("component_post_stanzas: unknown stanza kind {0:?} (use message, presence, iq)")]
    BadKind(String),
    #[error("{option} = {value} must be {expected}")]
    Invalid {
        option: &'static str,
        value: String,
        expected: String,
    },
    #[error("{option}: item {position} {why}")]
    BadItem {
        option: &'static str,
        /// From 1, as in the Lua list the admin wrote.
        position: usize,
        why: String,
    },
    #[error("component_post_headers: {0}")]
    BadHeader(String),
    #[error("component_post_ca_file = {path:?}: {reason}")]
    BadCaFile { path: String, reason: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Avatar(#[from] AvatarError),
}

/// Whether stanzas of one conversation wait for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Stanzas between one sender (bare JID) and one component JID are
    /// POSTed one at a time, in arrival order.
    Conversation,
    None,
}

/// One option's value as the shim hands it over, as Lua holds it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    Flag(bool),
    Number(f64),
    Text(String),
    List(Vec<Value>),
    Table(BTreeMap<String, Value>),
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Flag(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}

impl From<Vec<&str>> for Value {
    fn from(list: Vec<&str>) -> Value {
        Value::List(list.into_iter().map(Value::from).collect())
    }
}

impl From<Vec<(&str, &str)>> for Value {
    fn from(pairs: Vec<(&str, &str)>) -> Value {
        Value::Table(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect(),
        )
    }
}

/// The options as the admin wrote them, each under the key its
/// declaration ([`Spec::key`]) gives: the keys are written once, there. A
/// key that no option declares is an error, so a shim that passes one it
/// should not is caught by the tests.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub host: String,
    values: BTreeMap<&'static str, Value>,
}

impl<'de> serde::Deserialize<'de> for Options {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Options, D::Error> {
        use serde::de::Error;
        let mut options = Options::default();
        for (key, value) in BTreeMap::<String, Value>::deserialize(deserializer)? {
            if key == "host" {
                match value {
                    Value::Text(host) => options.host = host,
                    _ => return Err(D::Error::custom("host must be a string")),
                }
                continue;
            }
            let spec = options::ALL
                .iter()
                .find(|spec| spec.key == key)
                .ok_or_else(|| D::Error::custom(format!("no option has the key {key:?}")))?;
            options.values.insert(spec.key, value);
        }
        Ok(options)
    }
}

impl Options {
    pub fn new(host: &str) -> Options {
        Options {
            host: host.to_owned(),
            values: BTreeMap::new(),
        }
    }

    /// The option `spec` set to `value`.
    pub fn with(mut self, spec: &Spec, value: impl Into<Value>) -> Options {
        self.set(spec, value);
        self
    }

    pub fn set(&mut self, spec: &Spec, value: impl Into<Value>) {
        self.values.insert(spec.key, value.into());
    }

    pub fn unset(&mut self, spec: &Spec) {
        self.values.remove(spec.key);
    }

    fn number(&self, spec: &Spec) -> Result<Option<f64>, ConfigError> {
        match self.values.get(spec.key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(Some(*n)),
            Some(other) => Err(wrong_type(spec, other, "a number")),
        }
    }

    fn flag(&self, spec: &Spec) -> Result<Option<bool>, ConfigError> {
        match self.values.get(spec.key) {
            None => Ok(None),
            Some(Value::Flag(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(spec, other, "true or false")),
        }
    }

    fn text(&self, spec: &Spec) -> Result<Option<&str>, ConfigError> {
        match self.values.get(spec.key) {
            None => Ok(None),
            Some(Value::Text(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(spec, other, "a string")),
        }
    }

    /// A list of strings and tables; one of either is a list of one, an
    /// empty table none. `what` says what it must be.
    fn items(&self, spec: &Spec, what: &str) -> Result<Vec<Value>, ConfigError> {
        match self.values.get(spec.key) {
            None => Ok(Vec::new()),
            Some(Value::List(items)) => Ok(items.clone()),
            Some(Value::Table(t)) if t.is_empty() => Ok(Vec::new()),
            Some(item @ (Value::Text(_) | Value::Table(_))) => Ok(vec![item.clone()]),
            Some(other) => Err(wrong_type(spec, other, what)),
        }
    }

    /// A menu: a list of nodes or `{ node = , name = }` tables; one of
    /// either is a list of one.
    fn commands(&self, spec: &Spec) -> Result<Vec<MenuItem>, ConfigError> {
        let items = self.items(spec, "a list of commands")?;
        let mut menu: Vec<MenuItem> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let bad = |why: String| ConfigError::BadItem {
                option: spec.name,
                position: i + 1,
                why,
            };
            let text = |table: &BTreeMap<String, Value>, key: &str| match table.get(key) {
                None => Ok(None),
                Some(Value::Text(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("has a {key} that is not a string"))),
            };
            let item = match item {
                Value::Text(node) => MenuItem::new(node, None),
                Value::Table(table) => {
                    let node = text(table, "node")?.ok_or_else(|| {
                        bad("has no node: write { node = \"…\", name = \"…\" }".into())
                    })?;
                    MenuItem::new(&node, text(table, "name")?.as_deref())
                }
                _ => {
                    return Err(bad(
                        "must be a node name or { node = \"…\", name = \"…\" }".into()
                    ))
                }
            };
            menu::check(&menu, &item)
                .map_err(|why| bad(format!("({:?}): its node {why}", item.node)))?;
            menu.push(item);
        }
        Ok(menu)
    }

    /// Rooms: `room@service[/nick]` strings or `{ jid = , mentions_only = }`
    /// tables; one of either is a list of one.
    fn rooms(&self, spec: &Spec) -> Result<Vec<RoomItem>, ConfigError> {
        let items = self.items(spec, "a list of rooms")?;
        let mut rooms = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let bad = |why: &str| ConfigError::BadItem {
                option: spec.name,
                position: i + 1,
                why: why.to_owned(),
            };
            let shape = "must be \"room@service/nick\" or { jid = \"room@service/nick\", mentions_only = true }";
            let (jid, mentions_only) = match item {
                Value::Text(jid) => (jid.clone(), None),
                Value::Table(table) => {
                    let jid = match table.get("jid") {
                        Some(Value::Text(jid)) => jid.clone(),
                        _ => return Err(bad(shape)),
                    };
                    let mentions_only = match table.get("mentions_only") {
                        None => None,
                        Some(Value::Flag(on)) => Some(*on),
                        Some(_) => {
                            return Err(bad("has a mentions_only that is not true or false"))
                        }
                    };
                    (jid, mentions_only)
                }
                _ => return Err(bad(shape)),
            };
            rooms.push(RoomItem { jid, mentions_only });
        }
        Ok(rooms)
    }

    /// A list of strings; one string is a list of one.
    fn list(&self, spec: &Spec) -> Result<Vec<String>, ConfigError> {
        let items = match self.values.get(spec.key) {
            None => return Ok(Vec::new()),
            Some(Value::Text(s)) => return Ok(vec![s.clone()]),
            Some(Value::List(items)) => items,
            // An empty Lua table may read as either.
            Some(Value::Table(t)) if t.is_empty() => return Ok(Vec::new()),
            Some(other) => return Err(wrong_type(spec, other, "a list of strings")),
        };
        items
            .iter()
            .map(|item| match item {
                Value::Text(s) => Ok(s.clone()),
                other => Err(wrong_type(spec, other, "a list of strings")),
            })
            .collect()
    }

    /// A table of strings by name.
    fn table(&self, spec: &Spec) -> Result<BTreeMap<String, String>, ConfigError> {
        let entries = match self.values.get(spec.key) {
            None => return Ok(BTreeMap::new()),
            Some(Value::List(items)) if items.is_empty() => return Ok(BTreeMap::new()),
            Some(Value::Table(entries)) => entries,
            Some(other) => return Err(wrong_type(spec, other, "a table of names and strings")),
        };
        entries
            .iter()
            .map(|(name, value)| match value {
                Value::Text(s) => Ok((name.clone(), s.clone())),
                _ => Err(invalid(
                    spec,
                    format!("{{ {name} = … }}"),
                    "a table of names and strings",
                )),
            })
            .collect()
    }
}

/// The error for a value of the wrong type; secrets are not shown.
fn wrong_type(spec: &Spec, value: &Value, expected: &str) -> ConfigError {
    let shown = match value {
        Value::Flag(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Text(_) if matches!(spec.kind, Type::Secrets | Type::Token) => "…".into(),
        Value::Text(s) => format!("{s:?}"),
        Value::List(_) => "a list".into(),
        Value::Table(_) => "a table".into(),
    };
    invalid(spec, shown, expected)
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The component's domain: replies must come from it.
    pub host: String,
    pub url: Url,
    /// For one stanza, over all its attempts.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_inflight: usize,
    pub queue_size: usize,
    /// Stanzas one conversation may have waiting beyond the one POSTed.
    pub conversation_queue: usize,
    /// Bytes of request JSON the stanzas owed answers may come to.
    pub queue_bytes: usize,
    pub retries: u32,
    pub ordering: Ordering,
    pub secrets: Vec<Secret>,
    /// Signs requests `v1a` (ed25519) too.
    pub signing_key: Option<SigningKey>,
    /// Extra request headers, marked sensitive so they never show in logs.
    pub headers: HeaderMap,
    pub ca_certificates: Vec<reqwest::Certificate>,
    pub tls_verify: bool,
    pub max_response: usize,
    /// The push endpoint's token; without one the endpoint is off.
    pub push_token: Option<PushToken>,
    /// Pushes signed `v1a` with this key's secret half are accepted too;
    /// with it alone the endpoint is on.
    pub push_public_key: Option<PublicKey>,
    pub push_max_size: usize,
    /// Pushes a second (and burst).
    pub push_rate: f64,
    /// How long a pushed IQ waits for its answer.
    pub push_timeout: Duration,
    /// Failed authorisations per client address and minute.
    pub push_auth_failures: u32,
    /// Hold stanzas the service could not take, and deliver them later.
    pub durable: bool,
    /// How long a held stanza is tried before it is given up (dead-letter).
    pub max_age: Duration,
    /// At most this many stanzas held at once; past it they bounce.
    pub durable_limit: usize,
    /// At most this many bytes of held stanzas (as XML); past it they bounce.
    pub durable_bytes: usize,
    /// Dead letters older than this are deleted from storage.
    pub dead_letter_age: Duration,
    /// Group chats joined at load.
    pub rooms: Vec<RoomItem>,
    /// In rooms, only messages that mention the bot are POSTed (unless a
    /// room says otherwise).
    pub room_mentions_only: bool,
    /// Rooms the host may be in, configured ones included.
    pub max_rooms: usize,
    /// The nick in a room that names none (default: the domain's first label).
    pub nick: Option<String>,
    /// The configured menu of commands.
    pub commands: Vec<MenuItem>,
    /// How long a command's session is kept without a step.
    pub command_timeout: Duration,
    /// The XEP-0363 upload service; `None`: found by disco.
    pub upload_service: Option<String>,
    /// Bytes a file may have.
    pub max_upload: usize,
    /// How long a message waits for its answer before its sender sees the
    /// bot typing; `None`: never.
    pub typing: Option<Duration>,
    /// A streamed answer's corrections: at most one per this.
    pub stream_interval: Duration,
    /// A streamed answer's time in all, from its POST's start.
    pub stream_timeout: Duration,
    /// Who may talk to the bot.
    pub allow: Allow,
    /// The bot's name and avatar.
    pub face: Arc<Face>,
    forwarded: Vec<Kind>,
}

/// A room of `component_post_rooms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomItem {
    /// `room@service` or `room@service/nick`.
    pub jid: String,
    /// Its own `mentions_only`, over `component_post_room_mentions_only`.
    pub mentions_only: Option<bool>,
}

/// The push token. Its text never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct PushToken(pub String);

impl std::fmt::Debug for PushToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushToken(..)")
    }
}

/// Headers this module sets itself.
const RESERVED_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

impl Config {
    pub fn new(options: Options) -> Result<Config, ConfigError> {
        use options::*;
        let value = options.text(&URL)?.ok_or(ConfigError::MissingUrl)?;
        let bad_url = |reason: &str| ConfigError::BadUrl {
            value: without_credentials(value),
            reason: reason.to_owned(),
        };
        let url = Url::parse(value).map_err(|e| bad_url(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad_url("it has no host"));
        }
        let forwarded = options
            .list(&STANZAS)?
            .iter()
            .map(|k| Kind::parse(k).ok_or_else(|| ConfigError::BadKind(k.clone())))
            .collect::<Result<_, _>>()?;
        let ordering = match choice(&ORDERING, options.text(&ORDERING)?)? {
            "none" => Ordering::None,
            _ => Ordering::Conversation,
        };
        let seconds = |spec: &Spec| seconds(spec, options.number(spec)?);
        let count = |spec: &Spec| count(spec, options.number(spec)?);
        let flag = |spec: &Spec| Ok::<_, ConfigError>(flag(spec, options.flag(spec)?));
        let configured_rooms = options.rooms(&ROOMS)?;
        Ok(Config {
            host: options.host.clone(),
            url,
            timeout: seconds(&TIMEOUT)?,
            connect_timeout: seconds(&CONNECT_TIMEOUT)?,
            max_inflight: count(&MAX_INFLIGHT)?,
            queue_size: count(&QUEUE_SIZE)?,
            conversation_queue: count(&CONVERSATION_QUEUE)?,
            queue_bytes: count(&QUEUE_BYTES)?,
            retries: count(&RETRIES)? as u32,
            ordering,
            secrets: options
                .list(&SECRET)?
                .iter()
                .map(|s| Secret::parse(s))
                .collect::<Result<_, _>>()?,
            signing_key: options
                .text(&SIGNING_KEY)?
                .map(|k| SigningKey::parse(k, SIGNING_KEY.name))
                .transpose()?,
            headers: headers(&options.table(&HEADERS)?)?,
            ca_certificates: match options.text(&CA_FILE)? {
                Some(path) => ca_certificates(path)?,
                None => Vec::new(),
            },
            tls_verify: flag(&TLS_VERIFY)?,
            max_response: count(&MAX_RESPONSE)?,
            push_token: options.text(&PUSH_TOKEN)?.map(push_token).transpose()?,
            push_public_key: options
                .text(&PUSH_PUBLIC_KEY)?
                .map(|k| PublicKey::parse(k, PUSH_PUBLIC_KEY.name))
                .transpose()?,
            push_max_size: count(&PUSH_MAX_SIZE)?,
            push_rate: rate(&PUSH_RATE, options.number(&PUSH_RATE)?)?,
            push_timeout: seconds(&PUSH_TIMEOUT)?,
            push_auth_failures: count(&PUSH_AUTH_FAILURES)? as u32,
            durable: flag(&DURABLE)?,
            max_age: seconds(&MAX_AGE)?,
            durable_limit: count(&DURABLE_LIMIT)?,
            durable_bytes: count(&DURABLE_BYTES)?,
            dead_letter_age: seconds(&DEAD_LETTER_AGE)?,
            max_rooms: match count(&MAX_ROOMS)? {
                max if max < configured_rooms.len() => {
                    let configured = format!(
                        "{max}, fewer than the {} rooms of component_post_rooms",
                        configured_rooms.len()
                    );
                    return Err(invalid(&MAX_ROOMS, configured, "at least as many"));
                }
                max => max,
            },
            rooms: rooms(configured_rooms)?,
            room_mentions_only: flag(&ROOM_MENTIONS_ONLY)?,
            nick: match options.text(&NICK)? {
                Some(nick) if nick.is_empty() || nick.contains('/') => {
                    return Err(invalid(&NICK, format!("{nick:?}"), "a nick without '/'"))
                }
                nick => nick.map(str::to_owned),
            },
            commands: options.commands(&COMMANDS)?,
            command_timeout: seconds(&COMMAND_TIMEOUT)?,
            upload_service: match options.text(&UPLOAD_SERVICE)? {
                None => None,
                Some(service) => Some(
                    crate::jid::prep(service)
                        .filter(|j| !j.contains(['@', '/']))
                        .ok_or_else(|| {
                            invalid(
                                &UPLOAD_SERVICE,
                                format!("{service:?}"),
                                "a service's domain, such as upload.example.com",
                            )
                        })?,
                ),
            },
            max_upload: count(&MAX_UPLOAD)?,
            typing: match options.number(&TYPING)? {
                None => None,
                Some(0.0) => None,
                on => Some(self::seconds(&TYPING, on)?),
            },
            stream_interval: seconds(&STREAM_INTERVAL)?,
            stream_timeout: seconds(&STREAM_TIMEOUT)?,
            allow: Allow::new(&options.list(&ALLOW)?)
                .map_err(|item| invalid(&ALLOW, format!("{item:?}"), "a bare JID or a domain"))?,
            face: Arc::new(Face {
                name: match options.text(&NAME)? {
                    Some(name) if name.trim().is_empty() => {
                        return Err(invalid(&NAME, format!("{name:?}"), "a name"))
                    }
                    name => name.map(str::to_owned),
                },
                avatar: options.text(&AVATAR)?.map(Avatar::read).transpose()?,
            }),
            forwarded,
        })
    }

    pub fn forwards(&self, kind: Kind) -> bool {
        self.forwarded.contains(&kind)
    }

    /// What the admin is warned of at load: secrets that would travel in
    /// the clear, certificates not checked.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let secret = if !self.secrets.is_empty() {
            Some(options::SECRET.name)
        } else if self.signing_key.is_some() {
            Some(options::SIGNING_KEY.name)
        } else if !self.headers.is_empty() {
            Some(options::HEADERS.name)
        } else {
            None
        };
        if let Some(secret) =
            secret.filter(|_| self.url.scheme() == "http" && !is_loopback(&self.url))
        {
            warnings.push(format!(
                "component_post_url is http://: {secret} goes to {} unencrypted; use https://",
                self.url.host_str().unwrap_or_default()
            ));
        }
        if !self.tls_verify {
            warnings.push(
                "component_post_tls_verify = false: the web service's certificate is not checked"
                    .into(),
            );
        }
        warnings
    }
}

/// Whether `url` stays on this machine (127.0.0.0/8, ::1, localhost).
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// A URL as written, for an error message, with the user and password (if
/// any) masked: `http://***@host/`.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// The push token: at least 16 characters (a bearer token is all an
/// attacker must guess), and a `whsec_` one valid base64.
fn push_token(token: &str) -> Result<PushToken, ConfigError> {
    let option = &options::PUSH_TOKEN;
    if token.chars().count() < 16 {
        let length = format!("{} characters long", token.chars().count());
        return Err(invalid(option, length, "at least 16 characters"));
    }
    if token.starts_with("whsec_") && Secret::parse(token).is_err() {
        return Err(invalid(option, "whsec_…", "whsec_ and valid base64"));
    }
    Ok(PushToken(token.to_owned()))
}

fn invalid(option: &Spec, value: impl ToString, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option: option.name,
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn seconds(option: &Spec, value: Option<f64>) -> Result<Duration, ConfigError> {
    let Type::Seconds(default) = option.kind else {
        unreachable!("{} is not a duration", option.name)
    };
    let secs = value.unwrap_or(default);
    // Past a billion seconds (31 years) a duration only overflows clocks.
    if !(secs.is_finite() && secs > 0.0 && secs <= 1e9) {
        return Err(invalid(
            option,
            secs,
            "a positive number of seconds, at most 1e9",
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn rate(option: &Spec, value: Option<f64>) -> Result<f64, ConfigError> {
    let Type::Rate(default) = option.kind else {
        unreachable!("{} is not a rate", option.name)
    };
    let rate = value.unwrap_or(default);
    if !(rate.is_finite() && rate > 0.0) {
        return Err(invalid(option, rate, "a positive number (per second)"));
    }
    Ok(rate)
}

/// A whole number, at least the option's minimum; at most a billion, which
/// is plenty for any count here and keeps conversions exact.
fn count(option: &Spec, value: Option<f64>) -> Result<usize, ConfigError> {
    let Type::Count { default, min } = option.kind else {
        unreachable!("{} is not a count", option.name)
    };
    let Some(n) = value else {
        return Ok(default);
    };
    if n.fract() != 0.0 || !(min as f64..=1e9).contains(&n) {
        let expected = if min == 0 {
            "a whole number, 0 or more"
        } else {
            "a whole number, 1 or more"
        };
        return Err(invalid(option, n, expected));
    }
    Ok(n as usize)
}

fn flag(option: &Spec, value: Option<bool>) -> bool {
    let Type::Flag(default) = option.kind else {
        unreachable!("{} is not a flag", option.name)
    };
    value.unwrap_or(default)
}

/// One of the option's words (the first by default).
fn choice<'a>(option: &Spec, value: Option<&'a str>) -> Result<&'a str, ConfigError> {
    let Type::Choice(words) = option.kind else {
        unreachable!("{} is not a choice", option.name)
    };
    let word = value.unwrap_or(words[0]);
    if !words.contains(&word) {
        let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
        return Err(invalid(option, format!("{word:?}"), quoted.join(" or ")));
    }
    Ok(word)
}

fn rooms(rooms: Vec<RoomItem>) -> Result<Vec<RoomItem>, ConfigError> {
    for room in &rooms {
        let bare = room.jid.split('/').next().unwrap_or_default();
        let valid = bare
            .split_once('@')
            .is_some_and(|(node, service)| !node.is_empty() && !service.is_empty());
        if !valid {
            return Err(invalid(
                &options::ROOMS,
                format!("{:?}", room.jid),
                "room@service or room@service/nick",
            ));
        }
    }
    Ok(rooms)
}

fn headers(pairs: &BTreeMap<String, String>) -> Result<HeaderMap, ConfigError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::BadHeader(format!("{name:?} is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("webhook-") {
            return Err(ConfigError::BadHeader(format!(
                "{name:?} is set by the module itself"
            )));
        }
        // The value is not quoted: it may be a credential.
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::BadHeader(format!("the value of {name:?} is not a valid header value"))
        })?;
        value.set_sensitive(true);
        map.append(header, value);
    }
    Ok(map)
}

fn ca_certificates(path: &str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let bad = |reason: String| ConfigError::BadCaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::*;

    fn options(url: &str) -> Options {
        Options::new("bot.localhost")
            .with(&URL, url)
            .with(&STANZAS, vec!["message"])
    }

    fn error(options: Options) -> String {
        Config::new(options).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::new(options("https://example.com/api")).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!((c.max_inflight, c.queue_size, c.retries), (64, 1000, 2));
        assert_eq!(c.ordering, Ordering::Conversation);
        assert!(c.secrets.is_empty() && c.headers.is_empty() && c.ca_certificates.is_empty());
        assert!(c.tls_verify);
        assert_eq!(c.max_response, 1024 * 1024);
        assert!(c.forwards(Kind::Message));
        assert!(!c.forwards(Kind::Iq));
        assert!(!c.durable);
        assert_eq!(c.max_age, Duration::from_secs(86_400));
        assert_eq!(c.durable_limit, 100_000);
        assert_eq!(c.push_rate, 10.0);
        assert_eq!(c.push_timeout, Duration::from_secs(30));
    }

    #[test]
    fn the_menu_is_nodes_or_tables_and_a_bad_item_is_named_by_position() {
        let table = |pairs: Vec<(&str, &str)>| Value::from(pairs);
        let menu = |value: Value| Config::new(options("http://x/").with(&COMMANDS, value));
        let c = menu(Value::List(vec![
            table(vec![("node", "weather"), ("name", "Weather")]),
            "help".into(),
        ]))
        .unwrap();
        assert_eq!(
            c.commands,
            [
                MenuItem::new("weather", Some("Weather")),
                MenuItem::new("help", None)
            ]
        );
        assert_eq!(c.command_timeout, Duration::from_secs(600));
        // One item alone, as Lua writes it without the outer braces.
        assert_eq!(menu("help".into()).unwrap().commands.len(), 1);
        assert_eq!(menu(table(vec![("node", "w")])).unwrap().commands.len(), 1);
        assert!(Config::new(options("http://x/"))
            .unwrap()
            .commands
            .is_empty());
        for (value, why) in [
            (
                Value::List(vec!["a".into(), 3.0.into()]),
                "component_post_commands: item 2 must be a node name or { node = \"…\", name = \"…\" }",
            ),
            (
                Value::List(vec!["a".into(), table(vec![("name", "x")])]),
                "component_post_commands: item 2 has no node",
            ),
            (
                Value::List(vec![Value::Table(
                    [("node".to_owned(), Value::Flag(true))].into_iter().collect(),
                )]),
                "component_post_commands: item 1 has a node that is not a string",
            ),
            (
                Value::List(vec!["a".into(), "b".into(), "a".into()]),
                "component_post_commands: item 3 (\"a\"): its node is in the menu already",
            ),
            (3.0.into(), "component_post_commands = 3 must be a list of commands"),
        ] {
            let refused = menu(value).unwrap_err().to_string();
            assert!(refused.starts_with(why), "{refused}");
        }
    }

    #[test]
    fn url_must_be_http_or_https() {
        let mut missing = options("");
        missing.unset(&URL);
        assert_eq!(Config::new(missing).unwrap_err(), ConfigError::MissingUrl);
        for bad in [
            "",
            "example.com/api",
            "ftp://example.com/",
            "http://",
            "not a url",
        ] {
            let err = Config::new(options(bad)).unwrap_err();
            assert!(matches!(err, ConfigError::BadUrl { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains("component_post_url"));
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn numbers_are_checked() {
        let with = |spec: &Spec, value: Value| options("http://x/").with(spec, value);
        assert!(error(with(&TIMEOUT, 0.0.into())).starts_with("component_post_timeout = 0 "));
        assert!(error(with(&TIMEOUT, f64::NAN.into())).contains("component_post_timeout"));
        assert!(
            error(with(&CONNECT_TIMEOUT, (-1.0).into())).contains("component_post_connect_timeout")
        );
        assert!(error(with(&MAX_INFLIGHT, 0.0.into())).contains("component_post_max_inflight = 0"));
        assert!(error(with(&QUEUE_SIZE, 1.5.into())).contains("component_post_queue_size = 1.5"));
        assert!(error(with(&RETRIES, (-1.0).into())).contains("component_post_retries"));
        assert!(error(with(&MAX_RESPONSE, 0.0.into())).contains("component_post_max_response"));
        assert!(error(with(&MAX_AGE, 0.0.into())).contains("component_post_max_age"));
        assert!(error(with(&DURABLE_LIMIT, 0.0.into())).contains("component_post_durable_limit"));
        assert!(error(with(&PUSH_RATE, 0.0.into())).contains("component_push_rate = 0 "));
        assert!(error(with(&ROOMS, vec!["lobby"].into()))
            .contains("component_post_rooms = \"lobby\" must be room@service"));
        assert!(error(with(&NICK, "a/b".into())).contains("component_post_nick"));
        let table = |flag: Value| {
            let mut room = BTreeMap::from([("jid".to_owned(), Value::from("r@m.h/Bot"))]);
            room.insert("mentions_only".into(), flag);
            Value::List(vec![Value::from("plain@m.h"), Value::Table(room)])
        };
        let rooms = Config::new(with(&ROOMS, table(Value::Flag(true))))
            .unwrap()
            .rooms;
        assert_eq!(rooms[0].mentions_only, None);
        assert_eq!(rooms[1].jid, "r@m.h/Bot");
        assert_eq!(rooms[1].mentions_only, Some(true));
        assert!(error(with(&ROOMS, table("yes".into()))).contains(
            "component_post_rooms: item 2 has a mentions_only that is not true or false"
        ));
        assert!(error(with(&PUSH_TIMEOUT, (-2.0).into())).contains("component_push_timeout"));
        let c = Config::new(
            options("http://x/")
                .with(&TIMEOUT, 0.5)
                .with(&QUEUE_SIZE, 0.0)
                .with(&RETRIES, 0.0),
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!((c.queue_size, c.retries), (0, 0));
    }

    #[test]
    fn kinds_and_ordering_are_checked() {
        let mut o = options("http://x/");
        o.set(&STANZAS, vec!["message", "presence", "iq"]);
        o.set(&ORDERING, "none");
        let c = Config::new(o.clone()).unwrap();
        assert!(c.forwards(Kind::Presence) && c.forwards(Kind::Iq));
        assert_eq!(c.ordering, Ordering::None);
        o.set(&ORDERING, "fifo");
        assert!(error(o.clone()).contains("component_post_ordering = \"fifo\""));
        o.set(&STANZAS, vec!["mesage"]);
        assert_eq!(
            Config::new(o).unwrap_err(),
            ConfigError::BadKind("mesage".into())
        );
    }

    #[test]
    fn headers_are_checked_and_their_values_never_shown() {
        let mut o = options("http://x/");
        o.set(&HEADERS, vec![("Authorization", "Bearer s3cret")]);
        let c = Config::new(o.clone()).unwrap();
        assert!(c.headers["authorization"].is_sensitive());
        assert!(!format!("{c:?}").contains("s3cret"));
        o.set(&HEADERS, vec![("bad name", "v")]);
        assert!(error(o.clone()).contains("\"bad name\" is not a valid header name"));
        o.set(&HEADERS, vec![("X-Token", "line\nbreak s3cret")]);
        let e = error(o.clone());
        assert!(e.contains("X-Token") && !e.contains("s3cret"));
        o.set(&HEADERS, vec![("Content-Type", "text/plain")]);
        assert!(error(o.clone()).contains("set by the module"));
        o.set(&HEADERS, vec![("Webhook-Id", "x")]);
        assert!(error(o).contains("set by the module"));
    }

    #[test]
    fn secrets_are_parsed_and_never_shown() {
        let mut o = options("http://x/");
        o.set(&SECRET, vec!["whsec_c2VjcmV0", "plain-s3cret"]);
        let c = Config::new(o.clone()).unwrap();
        assert_eq!(c.secrets.len(), 2);
        assert!(!format!("{c:?}").contains("plain-s3cret"));
        o.set(&SECRET, vec!["whsec_***"]);
        let e = error(o);
        assert!(e.contains("component_post_secret") && !e.contains("***"));
    }

    #[test]
    fn ca_file_must_hold_certificates() {
        let mut o = options("https://x/");
        o.set(&CA_FILE, "/nonexistent/ca.pem");
        assert!(error(o.clone()).contains("component_post_ca_file = \"/nonexistent/ca.pem\""));
        let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        o.set(&CA_FILE, &*empty.to_string_lossy());
        assert!(error(o).contains("no certificate"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_declared_keys_are_read_and_each_has_its_type() {
        let read = |json: serde_json::Value| serde_json::from_value::<Options>(json);
        let o =
            read(serde_json::json!({"host": "bot.localhost", "url": "http://x/", "timeout": 2}))
                .unwrap();
        assert_eq!(Config::new(o).unwrap().timeout, Duration::from_secs(2));
        let unknown = read(serde_json::json!({"host": "h", "url": "http://x/", "time_out": 2}));
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("no option has the key \"time_out\""));
        // Every declared key is taken: the shim passes what native.options lists.
        for spec in ALL {
            assert!(
                read(serde_json::json!({"host": "h", spec.key: "x"})).is_ok(),
                "{}",
                spec.key
            );
        }
        let o =
            read(serde_json::json!({"host": "h", "url": "http://x/", "timeout": "soon"})).unwrap();
        assert_eq!(
            error(o),
            "component_post_timeout = \"soon\" must be a number"
        );
        let o = read(serde_json::json!({"host": "h", "url": "http://x/", "secrets": [1]})).unwrap();
        assert_eq!(
            error(o),
            "component_post_secret = 1 must be a list of strings"
        );
        let o =
            read(serde_json::json!({"host": "h", "url": "http://x/", "push_token": 5})).unwrap();
        assert!(error(o).contains("component_push_token"));
        let o = read(serde_json::json!({"host": "h", "url": "http://x/", "headers": {"X-A": 1}}))
            .unwrap();
        assert!(error(o).contains("component_post_headers = { X-A = … } must be a table"));
    }
}
