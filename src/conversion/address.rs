//! The addresses of what the web service sends (a reply, a push): both
//! prepared as Prosody prepares JIDs, `from` at the component's domain,
//! `to` anywhere else (docs/contract.md §4, §10).

use thiserror::Error;

use crate::jid;
use crate::xml::Element;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("'{0}' is not a valid JID: {1:?}")]
    Invalid(&'static str, String),
    #[error("'from' must be at the component's domain, not {0:?}")]
    Foreign(String),
    #[error("'to' is {0:?}, at the component itself: a loop")]
    Loop(String),
}

/// Prepares `to` and `from` of `stanza` in place (both must be set), and
/// checks where they point for the component `host`.
pub fn prepare(stanza: &mut Element, host: &str) -> Result<(), AddressError> {
    for key in ["to", "from"] {
        let given = stanza.attr(key).unwrap_or_default();
        let prepped =
            jid::prep(given).ok_or_else(|| AddressError::Invalid(key, given.to_owned()))?;
        stanza.set_attr(key, prepped);
    }
    let from = stanza.attr("from").unwrap_or_default();
    if !jid::host(from).eq_ignore_ascii_case(host) {
        return Err(AddressError::Foreign(from.to_owned()));
    }
    let to = stanza.attr("to").unwrap_or_default();
    if jid::host(to).eq_ignore_ascii_case(host) {
        return Err(AddressError::Loop(to.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(to: &str, from: &str) -> Element {
        Element::new("message")
            .with_attr("to", to)
            .with_attr("from", from)
    }

    #[test]
    fn addresses_are_prepared() {
        let mut s = stanza("Alice@LocalHost/Phone", "Echo@Bot.LocalHost");
        prepare(&mut s, "bot.localhost").unwrap();
        assert_eq!(s.attr("to"), Some("alice@localhost/Phone"));
        assert_eq!(s.attr("from"), Some("echo@bot.localhost"));
    }

    #[test]
    fn invalid_foreign_and_looping_addresses_are_refused() {
        let host = "bot.localhost";
        for (to, from, error) in [
            (
                "victim@localhost@bot.localhost",
                host,
                AddressError::Invalid("to", "victim@localhost@bot.localhost".into()),
            ),
            (
                "@bot.localhost",
                host,
                AddressError::Invalid("to", "@bot.localhost".into()),
            ),
            (
                "\u{202e}alice@localhost",
                host,
                AddressError::Invalid("to", "\u{202e}alice@localhost".into()),
            ),
            (
                "alice@localhost",
                "x@y@bot.localhost",
                AddressError::Invalid("from", "x@y@bot.localhost".into()),
            ),
            (
                "alice@localhost",
                "admin@localhost",
                AddressError::Foreign("admin@localhost".into()),
            ),
            (
                "echo@bot.localhost",
                host,
                AddressError::Loop("echo@bot.localhost".into()),
            ),
            (
                "BOT.localhost",
                host,
                AddressError::Loop("bot.localhost".into()),
            ),
        ] {
            assert_eq!(
                prepare(&mut stanza(to, from), host),
                Err(error),
                "{to} {from}"
            );
        }
    }
}
