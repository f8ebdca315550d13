//! Stanza errors, and how an HTTP status maps to one (docs/contract.md §5).
//! Depends on nothing but the XML model: every other module may use it.

use std::fmt;

use crate::xml::{self, Element};

pub const XMLNS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

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
            // It may quote a web service's answer: what XML cannot carry (a
            // NUL, control characters) becomes U+FFFD.
            let text: String = text
                .chars()
                .map(|c| if xml::is_xml_char(c) { c } else { '\u{FFFD}' })
                .collect();
            error = error.with_child(
                Element::new("text")
                    .with_attr("xmlns", XMLNS_STANZAS)
                    .with_text(text),
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

    // Found by fuzz/fuzz_targets/reply.rs: a 5xx body quoted in the error
    // text carried a NUL into the stanza.
    #[test]
    fn text_xml_cannot_carry_becomes_a_replacement_character() {
        let mut error = for_status(503);
        error.text = Some("busy\0 later\u{1}".into());
        let xml = error.to_element().to_xml();
        assert!(xml.contains("busy\u{FFFD} later\u{FFFD}</text>"), "{xml}");
        crate::xml::parse(&xml).unwrap();
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
