//! What every target checks of the stanzas it gets back.

use component_http::jid;
use component_http::xml::{self, Element};

pub const HOST: &str = "bot.localhost";

/// Output XML always parses again, and serialises to the same XML.
pub fn reparses(element: &Element) {
    let text = element.to_xml();
    let again = xml::parse(&text).unwrap_or_else(|e| panic!("{text:?} does not re-parse: {e}"));
    assert_eq!(again.to_xml(), text, "{text:?} re-parses differently");
}

/// A stanza this module sends is from the component's domain.
pub fn from_the_component(stanza: &Element) {
    let from = stanza.attr("from").unwrap_or_default();
    assert!(
        jid::host(from).eq_ignore_ascii_case(HOST),
        "sent from {from:?}, not at {HOST}"
    );
}
