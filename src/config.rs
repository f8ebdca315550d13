//! The module's options, validated once at load against their declarations
//! in [`options`](crate::options) (docs/contract.md §1–§2 and the delivery
//! options). Every error names the option and, unless it is secret, the bad
//! value, so the admin's one log line says what to fix.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use thiserror::Error;

use crate::conversion::Kind;
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
    #[error("component_post_headers: {0}")]
    BadHeader(String),
    #[error("component_post_ca_file = {path:?}: {reason}")]
    BadCaFile { path: String, reason: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Whether stanzas of one conversation wait for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Stanzas between one sender (bare JID) and one component JID are
    /// POSTed one at a time, in arrival order.
    Conversation,
    None,
}

/// The options as the admin wrote them (numbers as Lua gives them), keyed
/// as [`Spec::key`] says; absent ones are `None` or empty.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Options {
    pub host: String,
    pub url: Option<String>,
    pub stanzas: Vec<String>,
    pub timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub max_inflight: Option<f64>,
    pub queue_size: Option<f64>,
    pub conversation_queue: Option<f64>,
    pub queue_bytes: Option<f64>,
    pub retries: Option<f64>,
    pub ordering: Option<String>,
    pub secrets: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub ca_file: Option<String>,
    pub tls_verify: Option<bool>,
    pub max_response: Option<f64>,
    pub push_token: Option<String>,
    pub push_public_key: Option<String>,
    pub signing_key: Option<String>,
    pub push_max_size: Option<f64>,
    pub push_rate: Option<f64>,
    pub push_timeout: Option<f64>,
    pub push_auth_failures: Option<f64>,
    pub durable: Option<bool>,
    pub max_age: Option<f64>,
    pub durable_limit: Option<f64>,
    pub durable_bytes: Option<f64>,
    pub dead_letter_age: Option<f64>,
    pub rooms: Vec<String>,
    pub max_rooms: Option<f64>,
    pub nick: Option<String>,
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
    /// Group chats joined at load, as `room@service` or `room@service/nick`.
    pub rooms: Vec<String>,
    /// Rooms the host may be in, configured ones included.
    pub max_rooms: usize,
    /// The nick in a room that names none (default: the domain's first label).
    pub nick: Option<String>,
    forwarded: Vec<Kind>,
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
        let value = options.url.as_deref().ok_or(ConfigError::MissingUrl)?;
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
            .stanzas
            .iter()
            .map(|k| Kind::parse(k).ok_or_else(|| ConfigError::BadKind(k.clone())))
            .collect::<Result<_, _>>()?;
        let ordering = match choice(&options::ORDERING, options.ordering.as_deref())? {
            "none" => Ordering::None,
            _ => Ordering::Conversation,
        };
        Ok(Config {
            host: options.host,
            url,
            timeout: seconds(&options::TIMEOUT, options.timeout)?,
            connect_timeout: seconds(&options::CONNECT_TIMEOUT, options.connect_timeout)?,
            max_inflight: count(&options::MAX_INFLIGHT, options.max_inflight)?,
            queue_size: count(&options::QUEUE_SIZE, options.queue_size)?,
            conversation_queue: count(&options::CONVERSATION_QUEUE, options.conversation_queue)?,
            queue_bytes: count(&options::QUEUE_BYTES, options.queue_bytes)?,
            retries: count(&options::RETRIES, options.retries)? as u32,
            ordering,
            secrets: options
                .secrets
                .iter()
                .map(|s| Secret::parse(s))
                .collect::<Result<_, _>>()?,
            signing_key: options
                .signing_key
                .as_deref()
                .map(|k| SigningKey::parse(k, options::SIGNING_KEY.name))
                .transpose()?,
            headers: headers(&options.headers)?,
            ca_certificates: match &options.ca_file {
                Some(path) => ca_certificates(path)?,
                None => Vec::new(),
            },
            tls_verify: flag(&options::TLS_VERIFY, options.tls_verify),
            max_response: count(&options::MAX_RESPONSE, options.max_response)?,
            push_token: options.push_token.map(push_token).transpose()?,
            push_public_key: options
                .push_public_key
                .as_deref()
                .map(|k| PublicKey::parse(k, options::PUSH_PUBLIC_KEY.name))
                .transpose()?,
            push_max_size: count(&options::PUSH_MAX_SIZE, options.push_max_size)?,
            push_rate: rate(&options::PUSH_RATE, options.push_rate)?,
            push_timeout: seconds(&options::PUSH_TIMEOUT, options.push_timeout)?,
            push_auth_failures: count(&options::PUSH_AUTH_FAILURES, options.push_auth_failures)?
                as u32,
            durable: flag(&options::DURABLE, options.durable),
            max_age: seconds(&options::MAX_AGE, options.max_age)?,
            durable_limit: count(&options::DURABLE_LIMIT, options.durable_limit)?,
            durable_bytes: count(&options::DURABLE_BYTES, options.durable_bytes)?,
            dead_letter_age: seconds(&options::DEAD_LETTER_AGE, options.dead_letter_age)?,
            rooms: rooms(&options.rooms)?,
            max_rooms: match count(&options::MAX_ROOMS, options.max_rooms)? {
                max if max < options.rooms.len() => {
                    let configured = format!(
                        "{max}, fewer than the {} rooms of component_post_rooms",
                        options.rooms.len()
                    );
                    return Err(invalid(&options::MAX_ROOMS, configured, "at least as many"));
                }
                max => max,
            },
            nick: match options.nick {
                Some(nick) if nick.is_empty() || nick.contains('/') => {
                    return Err(invalid(
                        &options::NICK,
                        format!("{nick:?}"),
                        "a nick without '/'",
                    ))
                }
                nick => nick,
            },
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
fn push_token(token: String) -> Result<PushToken, ConfigError> {
    let option = &options::PUSH_TOKEN;
    if token.chars().count() < 16 {
        let length = format!("{} characters long", token.chars().count());
        return Err(invalid(option, length, "at least 16 characters"));
    }
    if token.starts_with("whsec_") && Secret::parse(&token).is_err() {
        return Err(invalid(option, "whsec_…", "whsec_ and valid base64"));
    }
    Ok(PushToken(token))
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

fn rooms(rooms: &[String]) -> Result<Vec<String>, ConfigError> {
    for room in rooms {
        let bare = room.split('/').next().unwrap_or_default();
        let Some((node, service)) = bare.split_once('@') else {
            return Err(invalid(
                &options::ROOMS,
                format!("{room:?}"),
                "room@service or room@service/nick",
            ));
        };
        if node.is_empty() || service.is_empty() {
            return Err(invalid(
                &options::ROOMS,
                format!("{room:?}"),
                "room@service or room@service/nick",
            ));
        }
    }
    Ok(rooms.to_vec())
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

    fn options(url: &str) -> Options {
        Options {
            host: "bot.localhost".into(),
            url: Some(url.into()),
            stanzas: vec!["message".into()],
            ..Default::default()
        }
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
    fn url_must_be_http_or_https() {
        let missing = Options {
            url: None,
            ..options("")
        };
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
        let with = |f: fn(&mut Options)| {
            let mut o = options("http://x/");
            f(&mut o);
            o
        };
        assert!(error(with(|o| o.timeout = Some(0.0))).starts_with("component_post_timeout = 0 "));
        assert!(error(with(|o| o.timeout = Some(f64::NAN))).contains("component_post_timeout"));
        assert!(error(with(|o| o.connect_timeout = Some(-1.0)))
            .contains("component_post_connect_timeout"));
        assert!(
            error(with(|o| o.max_inflight = Some(0.0))).contains("component_post_max_inflight = 0")
        );
        assert!(
            error(with(|o| o.queue_size = Some(1.5))).contains("component_post_queue_size = 1.5")
        );
        assert!(error(with(|o| o.retries = Some(-1.0))).contains("component_post_retries"));
        assert!(error(with(|o| o.max_response = Some(0.0))).contains("component_post_max_response"));
        assert!(error(with(|o| o.max_age = Some(0.0))).contains("component_post_max_age"));
        assert!(
            error(with(|o| o.durable_limit = Some(0.0))).contains("component_post_durable_limit")
        );
        assert!(error(with(|o| o.push_rate = Some(0.0))).contains("component_push_rate = 0 "));
        assert!(error(with(|o| o.rooms = vec!["lobby".into()]))
            .contains("component_post_rooms = \"lobby\" must be room@service"));
        assert!(error(with(|o| o.nick = Some("a/b".into()))).contains("component_post_nick"));
        assert!(error(with(|o| o.push_timeout = Some(-2.0))).contains("component_push_timeout"));
        let c = Config::new(with(|o| {
            o.timeout = Some(0.5);
            o.queue_size = Some(0.0);
            o.retries = Some(0.0);
        }))
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!((c.queue_size, c.retries), (0, 0));
    }

    #[test]
    fn kinds_and_ordering_are_checked() {
        let mut o = options("http://x/");
        o.stanzas = vec!["message".into(), "presence".into(), "iq".into()];
        o.ordering = Some("none".into());
        let c = Config::new(o.clone()).unwrap();
        assert!(c.forwards(Kind::Presence) && c.forwards(Kind::Iq));
        assert_eq!(c.ordering, Ordering::None);
        o.ordering = Some("fifo".into());
        assert!(error(o.clone()).contains("component_post_ordering = \"fifo\""));
        o.stanzas = vec!["mesage".into()];
        assert_eq!(
            Config::new(o).unwrap_err(),
            ConfigError::BadKind("mesage".into())
        );
    }

    #[test]
    fn headers_are_checked_and_their_values_never_shown() {
        let mut o = options("http://x/");
        o.headers = [("Authorization".into(), "Bearer s3cret".into())].into();
        let c = Config::new(o.clone()).unwrap();
        assert!(c.headers["authorization"].is_sensitive());
        assert!(!format!("{c:?}").contains("s3cret"));
        o.headers = [("bad name".into(), "v".into())].into();
        assert!(error(o.clone()).contains("\"bad name\" is not a valid header name"));
        o.headers = [("X-Token".into(), "line\nbreak s3cret".into())].into();
        let e = error(o.clone());
        assert!(e.contains("X-Token") && !e.contains("s3cret"));
        o.headers = [("Content-Type".into(), "text/plain".into())].into();
        assert!(error(o.clone()).contains("set by the module"));
        o.headers = [("Webhook-Id".into(), "x".into())].into();
        assert!(error(o).contains("set by the module"));
    }

    #[test]
    fn secrets_are_parsed_and_never_shown() {
        let mut o = options("http://x/");
        o.secrets = vec!["whsec_c2VjcmV0".into(), "plain-s3cret".into()];
        let c = Config::new(o.clone()).unwrap();
        assert_eq!(c.secrets.len(), 2);
        assert!(!format!("{c:?}").contains("plain-s3cret"));
        o.secrets = vec!["whsec_***".into()];
        let e = error(o);
        assert!(e.contains("component_post_secret") && !e.contains("***"));
    }

    #[test]
    fn ca_file_must_hold_certificates() {
        let mut o = options("https://x/");
        o.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(error(o.clone()).contains("component_post_ca_file = \"/nonexistent/ca.pem\""));
        let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        o.ca_file = Some(empty.to_string_lossy().into_owned());
        assert!(error(o).contains("no certificate"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
