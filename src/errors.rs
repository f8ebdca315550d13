//! Stanza errors, and how an HTTP status maps to one (docs/contract.md §5).

use std::fmt;

use crate::xml::Element;

const XMLNS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The `type` attribute of a stanza `<error/>` (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// What the sender of an undeliverable stanza is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: &'static str,
    pub text: Option<String>,
}

impl StanzaError {
    pub fn new(kind: ErrorType, condition: &'static str) -> Self {
        StanzaError {
            kind,
            condition,
            text: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// The `<error/>` child, as Prosody's `st.error_reply` writes it.
    pub fn to_element(&self) -> Element {
        let mut error = Element::new("error")
            .with_attr("type", self.kind.as_str())
            .with_child(Element::new(self.condition).with_attr("xmlns", XMLNS_STANZAS));
        if let Some(text) = &self.text {
            error = error.with_child(
                Element::new("text")
                    .with_attr("xmlns", XMLNS_STANZAS)
                    .with_text(text.as_str()),
            );
        }
        error
    }
}

impl fmt::Display for StanzaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.condition)?;
        if let Some(text) = &self.text {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

/// The stanza error for a non-2xx HTTP status, with the table's default text.
/// The codes the original module mapped keep its mapping; other 4xx/5xx follow
/// the XEP-0086 table Prosody ships in `net/http/errors.lua`; anything else is
/// `cancel/service-unavailable`, as in the original.
pub fn for_status(status: u16) -> StanzaError {
    use ErrorType::*;
    let (kind, condition, text) = match status {
        400 => (Modify, "bad-request", None),
        401 => (Auth, "not-authorized", None),
        402 => (Auth, "forbidden", Some("Payment required")),
        403 => (Auth, "forbidden", None),
        404 => (Cancel, "item-not-found", None),
        405 => (Cancel, "not-allowed", None),
        406 => (Modify, "not-acceptable", None),
        407 => (Auth, "registration-required", None),
        408 => (Wait, "remote-server-timeout", None),
        409 => (Cancel, "conflict", None),
        410 => (Cancel, "gone", None),
        411 => (Modify, "bad-request", None),
        412 => (Cancel, "conflict", None),
        413 | 414 => (Modify, "resource-constraint", None),
        415 => (Cancel, "feature-not-implemented", None),
        416 | 422 => (Modify, "bad-request", None),
        423 | 429 => (Wait, "resource-constraint", None),
        431 => (Modify, "resource-constraint", None),
        451 => (Auth, "forbidden", None),
        500 => (Cancel, "internal-server-error", None),
        501 => (Cancel, "feature-not-implemented", None),
        502 => (Cancel, "remote-server-timeout", Some("Bad gateway")),
        503 | 504 => (Wait, "remote-server-timeout", None),
        _ => (Cancel, "service-unavailable", None),
    };
    StanzaError {
        kind,
        condition,
        text: text.map(str::to_owned),
    }
}

/// Why a stanza could not be delivered, or its answer not used. Each becomes
/// one log line for the admin and one stanza error for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Connection(String),
    #[error("HTTP {status}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Status { status: u16, text: Option<String> },
    #[error("invalid reply: {0}")]
    InvalidReply(String),
    #[error("reply refused: its from '{0}' is not at this component's domain")]
    ForeignFrom(String),
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    #[error("cancelled: {0}")]
    Cancelled(&'static str),
    #[error("refused: too many stanzas waiting for the web service")]
    QueueFull,
    #[error("not sent: the web service keeps failing (circuit open)")]
    CircuitOpen,
    #[error("not delivered in {} s: given up", .0.as_secs_f64())]
    Expired(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DeliveryError {
    /// What the sender is told (docs/contract.md §5).
    pub fn stanza_error(&self) -> StanzaError {
        use ErrorType::*;
        match self {
            DeliveryError::Timeout => {
                StanzaError::new(Wait, "remote-server-timeout").with_text("timed out")
            }
            DeliveryError::Connection(what) => {
                StanzaError::new(Cancel, "remote-server-timeout").with_text(what.as_str())
            }
            DeliveryError::Status { status, text } => {
                let mut error = for_status(*status);
                if text.is_some() {
                    error.text.clone_from(text);
                }
                error
            }
            DeliveryError::Cancelled(_) => {
                StanzaError::new(Cancel, "service-unavailable").with_text(self.to_string())
            }
            DeliveryError::QueueFull => StanzaError::new(Wait, "resource-constraint")
                .with_text("too many stanzas waiting for the web service"),
            DeliveryError::CircuitOpen => StanzaError::new(Wait, "remote-server-timeout")
                .with_text("the bot's web service is failing; try again later"),
            DeliveryError::Expired(_) => {
                StanzaError::new(Cancel, "remote-server-timeout").with_text(self.to_string())
            }
            DeliveryError::InvalidReply(_)
            | DeliveryError::ForeignFrom(_)
            | DeliveryError::TooLarge(_)
            | DeliveryError::Internal(_) => StanzaError::new(Cancel, "internal-server-error")
                .with_text(format!("the bot's web service failed: {self}")),
        }
    }

    /// The metrics label of this way of failing.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::Timeout => "timeout",
            DeliveryError::Connection(_) => "unreachable",
            DeliveryError::Status { status, .. } => status_class(*status),
            DeliveryError::InvalidReply(_) | DeliveryError::ForeignFrom(_) => "invalid_reply",
            DeliveryError::TooLarge(_) => "too_large",
            DeliveryError::Cancelled(_) => "cancelled",
            DeliveryError::QueueFull => "refused",
            DeliveryError::CircuitOpen => "circuit_open",
            DeliveryError::Expired(_) => "expired",
            DeliveryError::Internal(_) => "internal",
        }
    }

    /// How loudly the admin hears of it: a bot that answers nonsense needs
    /// fixing; a service that is down for a moment is only a warning.
    pub fn log_level(&self) -> LogLevel {
        match self {
            DeliveryError::InvalidReply(_)
            | DeliveryError::ForeignFrom(_)
            | DeliveryError::Internal(_) => LogLevel::Error,
            DeliveryError::Cancelled(_) => LogLevel::Info,
            // A flood refuses many stanzas: the admin hears of it once, when
            // the queue fills up, not once per stanza.
            DeliveryError::QueueFull => LogLevel::Debug,
            // Said once, when the circuit opens.
            DeliveryError::CircuitOpen => LogLevel::Debug,
            _ => LogLevel::Warn,
        }
    }
}

/// Prosody's log levels that this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The metrics label of an HTTP status: its class.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(status: u16) -> (&'static str, &'static str, Option<String>) {
        let e = for_status(status);
        (e.kind.as_str(), e.condition, e.text)
    }

    #[test]
    fn original_modules_codes_keep_their_mapping() {
        assert_eq!(mapped(400), ("modify", "bad-request", None));
        assert_eq!(mapped(401), ("auth", "not-authorized", None));
        assert_eq!(
            mapped(402),
            ("auth", "forbidden", Some("Payment required".into()))
        );
        assert_eq!(mapped(403), ("auth", "forbidden", None));
        assert_eq!(mapped(404), ("cancel", "item-not-found", None));
        assert_eq!(mapped(410), ("cancel", "gone", None));
        assert_eq!(mapped(500), ("cancel", "internal-server-error", None));
        assert_eq!(mapped(501), ("cancel", "feature-not-implemented", None));
        assert_eq!(
            mapped(502),
            (
                "cancel",
                "remote-server-timeout",
                Some("Bad gateway".into())
            )
        );
        assert_eq!(mapped(503), ("wait", "remote-server-timeout", None));
        assert_eq!(mapped(504), ("wait", "remote-server-timeout", None));
    }

    #[test]
    fn other_errors_follow_xep_0086() {
        assert_eq!(mapped(405).1, "not-allowed");
        assert_eq!(mapped(408), ("wait", "remote-server-timeout", None));
        assert_eq!(mapped(409).1, "conflict");
        assert_eq!(mapped(413), ("modify", "resource-constraint", None));
        assert_eq!(mapped(429), ("wait", "resource-constraint", None));
    }

    #[test]
    fn unmapped_statuses_are_service_unavailable() {
        for status in [100, 301, 302, 304, 418, 499, 505, 599] {
            assert_eq!(mapped(status), ("cancel", "service-unavailable", None));
        }
    }

    #[test]
    fn error_element_matches_prosodys_error_reply() {
        let e = StanzaError::new(ErrorType::Wait, "remote-server-timeout").with_text("timed out");
        assert_eq!(
            e.to_element().to_xml(),
            "<error type='wait'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>timed out</text></error>"
        );
    }
}
