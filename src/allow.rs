//! Who may talk to the bot (docs/contract.md §16): `component_post_allow`,
//! a list of bare JIDs and domains. A stanza from anyone else is not
//! POSTed: a message or IQ request gets `auth`/`forbidden`, a subscription
//! request `unsubscribed`, anything else nothing. Room traffic is judged by
//! the room. The module's own answers (ping, disco, vCard, probes) stay
//! open to everyone.

use std::collections::HashSet;

use crate::conversion::{Envelope, Kind, RoomJids};
use crate::effect::Effect;
use crate::jid;
use crate::log::LogLevel;
use crate::stanza_error::{ErrorType, StanzaError};
use crate::xml::Element;

/// The allow list; `None`: everyone (the default).
#[derive(Debug, Clone, Default)]
pub struct Allow(Option<HashSet<String>>);

impl Allow {
    /// From the option's items, prepared; `Err` names the first item that
    /// is not a bare JID or a domain.
    pub fn new(items: &[String]) -> Result<Allow, String> {
        if items.is_empty() {
            return Ok(Allow(None));
        }
        let mut set = HashSet::with_capacity(items.len());
        for item in items {
            match jid::prep(item) {
                Some(prepped) if !prepped.contains('/') => set.insert(prepped),
                _ => return Err(item.clone()),
            };
        }
        Ok(Allow(Some(set)))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `from` may talk to the bot: its bare JID or its domain is
    /// listed (a domain, not its subdomains), or it is a room this host is
    /// in, or one of its occupants.
    pub fn admits(&self, from: &str, rooms: &RoomJids) -> bool {
        let Some(allowed) = &self.0 else {
            return true;
        };
        let bare = jid::bare(from);
        let domain = bare.rsplit_once('@').map_or(bare, |(_, domain)| domain);
        allowed.contains(bare) || allowed.contains(domain) || rooms.contains(from)
    }
}

/// What a stanza from a sender not allowed gets: a message or IQ request
/// `auth`/`forbidden`, a subscription request `unsubscribed` from the bare
/// JID written to; errors, results and other presences nothing. Counted.
pub fn refuse(stanza: &Element) -> Vec<Effect> {
    let Ok(envelope) = Envelope::of(stanza) else {
        return Vec::new();
    };
    let line = format!(
        "Not forwarding {}: the sender is not in component_post_allow",
        stanza.top_tag()
    );
    let mut effects = vec![
        Effect::Log(LogLevel::Debug, line),
        Effect::Disallowed(envelope.kind.as_str()),
    ];
    match envelope.kind {
        Kind::Presence if envelope.stanza_type.as_deref() == Some("subscribe") => {
            let unsubscribed = Element::new("presence")
                .with_attr("to", jid::bare(&envelope.from))
                .with_attr("from", jid::bare(&envelope.to))
                .with_attr("type", "unsubscribed");
            effects.push(Effect::Send(unsubscribed));
        }
        Kind::Presence => {}
        Kind::Message | Kind::Iq if envelope.may_get_error() => {
            if envelope.kind == Kind::Message || envelope.is_iq_request() {
                let error = StanzaError::new(ErrorType::Auth, "forbidden")
                    .with_text("this bot does not take messages from you");
                effects.push(Effect::Send(envelope.error_reply(&error)));
            }
        }
        Kind::Message | Kind::Iq => {}
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn allow(items: &[&str]) -> Allow {
        Allow::new(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn bare_jids_and_domains_only() {
        let a = allow(&["example.com", "Alice@Other.Example"]);
        let rooms = RoomJids::default();
        assert!(a.admits("bob@example.com/phone", &rooms));
        assert!(a.admits("example.com", &rooms));
        assert!(a.admits("alice@other.example/x", &rooms));
        assert!(!a.admits("carol@other.example/x", &rooms));
        assert!(!a.admits("bob@sub.example.com/x", &rooms), "not subdomains");
        assert!(!a.admits("mallory@evil.example", &rooms));
        rooms.insert("lobby@muc.example");
        assert!(
            a.admits("lobby@muc.example/mallory", &rooms),
            "judged by the room"
        );
        assert!(Allow::new(&["alice@example.com/phone".into()]).is_err());
        assert!(Allow::new(&["not a jid@".into()]).is_err());
        assert!(allow(&[]).admits("anyone@anywhere", &rooms));
        assert!(!allow(&[]).is_on());
    }

    fn refused(xml: &str) -> Vec<String> {
        refuse(&parse(xml).unwrap())
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send(s) => Some(s.to_xml()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn what_a_refused_sender_gets() {
        let message =
            refused("<message from='m@evil/r' to='bot.h' id='1'><body>hi</body></message>");
        assert!(message[0].contains("type='error'") && message[0].contains("<forbidden"));
        assert!(message[0].contains("<error type='auth'>"));
        let get = refused("<iq type='get' from='m@evil/r' to='bot.h' id='2'><q xmlns='x'/></iq>");
        assert!(get[0].contains("<forbidden"));
        assert_eq!(
            refused("<presence type='subscribe' from='m@evil/r' to='b@bot.h/x'/>"),
            ["<presence to='m@evil' from='b@bot.h' type='unsubscribed'/>"]
        );
        for silent in [
            "<presence from='m@evil/r' to='bot.h'/>",
            "<presence type='probe' from='m@evil/r' to='bot.h'/>",
            "<iq type='result' from='m@evil/r' to='bot.h' id='3'/>",
            "<message type='error' from='m@evil/r' to='bot.h'/>",
        ] {
            assert_eq!(refused(silent), Vec::<String>::new(), "{silent}");
        }
        let effects = refuse(&parse("<presence from='m@evil/r' to='bot.h'/>").unwrap());
        assert_eq!(effects[1..], [Effect::Disallowed("presence")]);
    }
}
