//! The module's options, validated once at load (SPEC §1–§2).

use std::time::Duration;

use reqwest::Url;
use thiserror::Error;

use crate::conversion::Kind;

pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;

/// A load error names the option and the bad value, so the admin's one log
/// line says what to fix.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("component_post_url is not set: it must be the http(s) URL to POST stanzas to")]
    MissingUrl,
    #[error("component_post_url = {value:?} is not a valid http(s) URL: {reason}")]
    BadUrl { value: String, reason: String },
    #[error("component_post_timeout = {0} must be a positive number of seconds")]
    BadTimeout(String),
    #[error("component_post_stanzas: unknown stanza kind {0:?} (use message, presence, iq)")]
    BadKind(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The component's domain: replies must come from it.
    pub host: String,
    pub url: Url,
    pub timeout: Duration,
    forwarded: Vec<Kind>,
}

impl Config {
    pub fn new(
        host: &str,
        url: Option<&str>,
        timeout_secs: Option<f64>,
        kinds: &[String],
    ) -> Result<Config, ConfigError> {
        let value = url.ok_or(ConfigError::MissingUrl)?;
        let bad_url = |reason: &str| ConfigError::BadUrl {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(value).map_err(|e| bad_url(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad_url("it has no host"));
        }
        let secs = timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(secs.is_finite() && secs > 0.0) {
            return Err(ConfigError::BadTimeout(secs.to_string()));
        }
        let forwarded = kinds
            .iter()
            .map(|k| Kind::parse(k).ok_or_else(|| ConfigError::BadKind(k.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Config {
            host: host.to_owned(),
            url,
            timeout: Duration::from_secs_f64(secs),
            forwarded,
        })
    }

    pub fn forwards(&self, kind: Kind) -> bool {
        self.forwarded.contains(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        url: Option<&str>,
        timeout: Option<f64>,
        kinds: &[&str],
    ) -> Result<Config, ConfigError> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        Config::new("bot.localhost", url, timeout, &kinds)
    }

    #[test]
    fn defaults() {
        let c = config(Some("https://example.com/api"), None, &["message"]).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(c.forwards(Kind::Message));
        assert!(!c.forwards(Kind::Iq));
        assert_eq!(c.url.as_str(), "https://example.com/api");
    }

    #[test]
    fn url_must_be_http_or_https() {
        assert_eq!(
            config(None, None, &[]).unwrap_err(),
            ConfigError::MissingUrl
        );
        for bad in [
            "",
            "example.com/api",
            "ftp://example.com/",
            "http://",
            "not a url",
        ] {
            let err = config(Some(bad), None, &[]).unwrap_err();
            assert!(matches!(err, ConfigError::BadUrl { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains("component_post_url"));
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn timeout_must_be_positive() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                config(Some("http://x/"), Some(bad), &[]),
                Err(ConfigError::BadTimeout(_))
            ));
        }
        let c = config(Some("http://x/"), Some(0.5), &[]).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(500));
    }

    #[test]
    fn kinds_are_checked() {
        let c = config(Some("http://x/"), None, &["message", "presence", "iq"]).unwrap();
        assert!(c.forwards(Kind::Presence) && c.forwards(Kind::Iq));
        assert_eq!(
            config(Some("http://x/"), None, &["mesage"]).unwrap_err(),
            ConfigError::BadKind("mesage".into())
        );
    }
}
