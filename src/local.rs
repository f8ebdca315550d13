//! What the component answers on its own, without the web service: presence
//! as an always-online contact (docs/contract.md §7), and ping / disco#info for IQs when
//! IQs are not forwarded (docs/contract.md §6; with the commands feature
//! when the host has a menu, §13.1).

use crate::conversion::{Envelope, RoomJids};
use crate::effect::Effect;
use crate::face::{Face, XMLNS_VCARD};
use crate::jid;
use crate::log::LogLevel;
use crate::stanza_error::{ErrorType, StanzaError};
use crate::xml::Element;

const XMLNS_PING: &str = "urn:xmpp:ping";
const XMLNS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const XMLNS_COMMANDS: &str = "http://jabber.org/protocol/commands";

/// The resource the component's contacts appear online at.
const RESOURCE: &str = "default";

/// What a presence to the component gets when presences are not forwarded.
pub fn answer_presence(stanza: &Element) -> Vec<Effect> {
    presence(stanza).into_iter().map(Effect::Send).collect()
}

/// What an IQ to the component gets when IQs are not forwarded;
/// `commands`: whether the host offers a menu of commands (§13.1).
pub fn answer_iq(stanza: &Element, host: &str, commands: bool, face: &Face) -> Vec<Effect> {
    iq(stanza, host, commands, face)
        .into_iter()
        .map(Effect::Send)
        .collect()
}

/// What a stanza this module cannot read gets (too deep for Lua's stack,
/// say): the admin a log line that says why, and its sender a stanza error
/// (with `text`) unless it must not be answered (docs/contract.md §5), or
/// came from a room, which would kick the bot for an error (counted as
/// withheld). `top`: what could be read of it (its attributes, its children's
/// namespaces); `verb`: "forward" or "answer"; `rooms`: the rooms the host
/// is in, when known.
pub fn unreadable(
    top: &Element,
    verb: &str,
    why: &str,
    text: Option<&str>,
    rooms: Option<&RoomJids>,
) -> Vec<Effect> {
    let mut line = format!("Could not {verb} {}: {why}", top.top_tag());
    let Ok(mut envelope) = Envelope::of(top) else {
        return vec![Effect::Log(LogLevel::Error, line)];
    };
    envelope.from_room |= rooms.is_some_and(|r| r.contains(&envelope.from));
    let mut effects = Vec::with_capacity(2);
    if envelope.may_get_error() {
        let mut error = StanzaError::new(ErrorType::Cancel, "internal-server-error");
        if let Some(text) = text {
            error = error.with_text(text);
        }
        effects.push(Effect::Send(envelope.error_reply(&error)));
    } else if envelope.may_be_answered() && envelope.from_room {
        line.push_str(" (no error sent to the room: it would kick the bot)");
        effects.push(Effect::Withheld);
    }
    effects.insert(0, Effect::Log(LogLevel::Error, line));
    effects
}

/// A presence this module cannot read, when presences are answered locally:
/// only the admin hears of it (a presence gets no error here).
pub fn unreadable_presence(top: &Element, why: &str) -> Vec<Effect> {
    vec![Effect::Log(
        LogLevel::Error,
        format!("Could not answer {}: {why}", top.top_tag()),
    )]
}

/// Answers to a presence stanza sent to the component.
pub fn presence(stanza: &Element) -> Vec<Element> {
    let (Some(to), Some(from)) = (stanza.attr("to"), stanza.attr("from")) else {
        return Vec::new();
    };
    let contact = jid::bare(to);
    let online = format!("{contact}/{RESOURCE}");
    let presence = |to: &str, from: &str, kind: Option<&str>| {
        let p = Element::new("presence")
            .with_attr("to", to)
            .with_attr("from", from);
        match kind {
            Some(kind) => p.with_attr("type", kind),
            None => p,
        }
    };
    let user = jid::bare(from);
    match stanza.attr("type") {
        Some("probe") => vec![presence(from, &online, None)],
        Some("subscribe") => vec![
            presence(user, contact, Some("subscribed")),
            presence(user, &online, None),
        ],
        Some("unsubscribe") => vec![
            presence(user, contact, Some("unsubscribed")),
            presence(user, &online, Some("unavailable")),
        ],
        _ => Vec::new(),
    }
}

/// Whether the module answers `stanza` itself even to a sender it does not
/// POST for (§16): a ping or a disco#info of the component.
pub fn is_open(stanza: &Element) -> bool {
    let payload = stanza.elements().next();
    let ns = payload.and_then(|p| p.attr("xmlns"));
    stanza.attr("type") == Some("get")
        && match (payload.map(|p| p.name.as_str()), ns) {
            (Some("ping"), Some(XMLNS_PING)) => true,
            (Some("query"), Some(XMLNS_DISCO_INFO)) => {
                payload.and_then(|p| p.attr("node")).is_none()
            }
            _ => false,
        }
}

/// The answer to an IQ when IQs are not forwarded: ping and disco#info are
/// answered, any other get/set gets `service-unavailable`; results and errors
/// get nothing.
pub fn iq(stanza: &Element, host: &str, commands: bool, face: &Face) -> Option<Element> {
    let envelope = Envelope::of(stanza).ok()?;
    if !envelope.is_iq_request() {
        return None;
    }
    let payload = stanza.elements().next();
    let payload_ns = payload.and_then(|p| p.attr("xmlns"));
    let is_get = envelope.stanza_type.as_deref() == Some("get");
    match (payload.map(|p| p.name.as_str()), payload_ns) {
        (Some("ping"), Some(XMLNS_PING)) if is_get => Some(envelope.iq_result()),
        (Some("query"), Some(XMLNS_DISCO_INFO)) if is_get => {
            let node = payload.and_then(|p| p.attr("node"));
            Some(match node {
                Some(_) => {
                    envelope.error_reply(&StanzaError::new(ErrorType::Cancel, "item-not-found"))
                }
                None => envelope
                    .iq_result()
                    .with_child(disco_info(host, commands, face)),
            })
        }
        _ => {
            Some(envelope.error_reply(&StanzaError::new(ErrorType::Cancel, "service-unavailable")))
        }
    }
}

/// The identity (named by the face, else the domain) and the features.
fn disco_info(host: &str, commands: bool, face: &Face) -> Element {
    let feature = |var: &str| Element::new("feature").with_attr("var", var);
    let mut query = Element::new("query")
        .with_attr("xmlns", XMLNS_DISCO_INFO)
        .with_child(
            Element::new("identity")
                .with_attr("category", "component")
                .with_attr("type", "generic")
                .with_attr("name", face.identity_name(host)),
        )
        .with_child(feature(XMLNS_DISCO_INFO))
        .with_child(feature(XMLNS_PING));
    if commands {
        query = query.with_child(feature(XMLNS_COMMANDS));
    }
    if face.is_set() {
        query = query.with_child(feature(XMLNS_VCARD));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence_of(kind: Option<&str>, to: &str) -> Vec<String> {
        let mut p = Element::new("presence")
            .with_attr("to", to)
            .with_attr("from", "user@localhost/res");
        if let Some(kind) = kind {
            p.set_attr("type", kind);
        }
        presence(&p).iter().map(Element::to_xml).collect()
    }

    #[test]
    fn probe_gets_available_presence() {
        assert_eq!(
            presence_of(Some("probe"), "echo@bot.localhost"),
            ["<presence to='user@localhost/res' from='echo@bot.localhost/default'/>"]
        );
    }

    #[test]
    fn subscribe_is_accepted_for_domain_bare_and_full_jids() {
        for (to, contact) in [
            ("bot.localhost", "bot.localhost"),
            ("echo@bot.localhost", "echo@bot.localhost"),
            ("echo@bot.localhost/x", "echo@bot.localhost"),
        ] {
            assert_eq!(
                presence_of(Some("subscribe"), to),
                [
                    format!("<presence to='user@localhost' from='{contact}' type='subscribed'/>"),
                    format!("<presence to='user@localhost' from='{contact}/default'/>"),
                ]
            );
        }
    }

    #[test]
    fn unsubscribe_gets_unsubscribed_then_unavailable() {
        assert_eq!(
            presence_of(Some("unsubscribe"), "echo@bot.localhost"),
            [
                "<presence to='user@localhost' from='echo@bot.localhost' type='unsubscribed'/>",
                "<presence to='user@localhost' from='echo@bot.localhost/default' type='unavailable'/>",
            ]
        );
    }

    #[test]
    fn other_presence_gets_nothing() {
        for kind in [
            None,
            Some("unavailable"),
            Some("subscribed"),
            Some("unsubscribed"),
            Some("error"),
        ] {
            assert!(
                presence_of(kind, "echo@bot.localhost").is_empty(),
                "{kind:?}"
            );
        }
    }

    fn iq_to(kind: &str, payload: Option<Element>) -> Element {
        let iq = Element::new("iq")
            .with_attr("to", "bot.localhost")
            .with_attr("from", "user@localhost/res")
            .with_attr("id", "i1")
            .with_attr("type", kind);
        match payload {
            Some(p) => iq.with_child(p),
            None => iq,
        }
    }

    #[test]
    fn ping_is_answered() {
        let ping = Element::new("ping").with_attr("xmlns", XMLNS_PING);
        assert_eq!(
            iq(
                &iq_to("get", Some(ping)),
                "bot.localhost",
                false,
                &Face::default()
            )
            .unwrap()
            .to_xml(),
            "<iq to='user@localhost/res' from='bot.localhost' id='i1' type='result'/>"
        );
    }

    #[test]
    fn disco_info_lists_what_is_supported() {
        let query = Element::new("query").with_attr("xmlns", XMLNS_DISCO_INFO);
        let answer = iq(
            &iq_to("get", Some(query.clone())),
            "bot.localhost",
            false,
            &Face::default(),
        )
        .unwrap();
        assert_eq!(
            answer.to_xml(),
            "<iq to='user@localhost/res' from='bot.localhost' id='i1' type='result'>\
             <query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='component' type='generic' name='bot.localhost'/>\
             <feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:ping'/>\
             </query></iq>"
        );
        let with_menu = iq(
            &iq_to("get", Some(query.clone())),
            "bot.localhost",
            true,
            &Face::default(),
        )
        .unwrap();
        assert!(with_menu
            .to_xml()
            .ends_with("<feature var='http://jabber.org/protocol/commands'/></query></iq>"));
        let face = Face {
            name: Some("Helper".into()),
            avatar: None,
        };
        let named = iq(
            &iq_to("get", Some(query.clone())),
            "bot.localhost",
            false,
            &face,
        )
        .unwrap();
        let named = named.to_xml();
        assert!(named.contains("name='Helper'/>"), "{named}");
        assert!(
            named.ends_with("<feature var='vcard-temp'/></query></iq>"),
            "{named}"
        );
        let with_node = query.with_attr("node", "n");
        let answer = iq(
            &iq_to("get", Some(with_node)),
            "bot.localhost",
            false,
            &Face::default(),
        )
        .unwrap();
        assert!(answer.to_xml().contains("item-not-found"));
    }

    #[test]
    fn anything_else_is_service_unavailable_and_results_get_nothing() {
        let vcard = Element::new("vCard").with_attr("xmlns", "vcard-temp");
        let answer = iq(
            &iq_to("get", Some(vcard)),
            "bot.localhost",
            false,
            &Face::default(),
        )
        .unwrap();
        assert!(answer.to_xml().contains("<service-unavailable"));
        let ping = Element::new("ping").with_attr("xmlns", XMLNS_PING);
        let answer = iq(
            &iq_to("set", Some(ping)),
            "bot.localhost",
            false,
            &Face::default(),
        )
        .unwrap();
        assert!(answer.to_xml().contains("<service-unavailable"));
        assert_eq!(
            iq(
                &iq_to("result", None),
                "bot.localhost",
                false,
                &Face::default()
            ),
            None
        );
        assert_eq!(
            iq(
                &iq_to("error", None),
                "bot.localhost",
                false,
                &Face::default()
            ),
            None
        );
    }
}
