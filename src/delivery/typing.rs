//! Typing while the web service thinks (docs/contract.md §17): a message
//! whose answer takes `component_post_typing` shows its sender XEP-0085
//! `composing`; the answer then carries `active`, or `active` follows it.

use super::outcome::Outcome;
use crate::conversion::{ns, Envelope, Kind};
use crate::xml::{Element, Node};

/// The chat state `state` from the JID `envelope` was sent to, back to its
/// sender (to the room, as `groupchat`, for a room message); `None` for
/// what gets no chat states: IQs, presences, messages without a body,
/// errors, headlines, private room messages aside.
pub fn chat_state(envelope: &Envelope, has_body: bool, state: &str) -> Option<Element> {
    if envelope.kind != Kind::Message || !has_body {
        return None;
    }
    let (to, kind) = match envelope.stanza_type.as_deref() {
        None | Some("chat" | "normal") => (envelope.from.as_str(), "chat"),
        Some("groupchat") => (crate::jid::bare(&envelope.from), "groupchat"),
        Some(_) => return None,
    };
    Some(
        Element::new("message")
            .with_attr("to", to)
            .with_attr("from", envelope.to.as_str())
            .with_attr("type", kind)
            .with_child(Element::new(state).with_attr("xmlns", ns::CHATSTATES)),
    )
}

/// After a `composing` was sent: the reply to its sender carries `active`,
/// unless it says a chat state itself; with no such reply (an error, or
/// none), `active` goes on its own, last.
pub fn with_active(mut outcome: Outcome, active: Element) -> Outcome {
    let to = active.attr("to").unwrap_or_default().to_owned();
    let reply = outcome.stanzas.iter_mut().find(|s| {
        s.name == "message" && s.attr("to") == Some(to.as_str()) && s.attr("type") != Some("error")
    });
    match reply {
        Some(reply) => {
            let has_state = reply
                .elements()
                .any(|c| c.attr("xmlns") == Some(ns::CHATSTATES));
            if !has_state {
                let state = active.elements().next().cloned();
                reply.children.extend(state.map(Node::Element));
            }
        }
        None => outcome.stanzas.push(active),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversion::examples::{envelope, message};
    use crate::xml::parse;

    #[test]
    fn who_sees_the_bot_typing() {
        let chat = envelope(&message("x"));
        let composing = chat_state(&chat, true, "composing").unwrap().to_xml();
        assert_eq!(
            composing,
            "<message to='user@localhost/res' from='echo@bot.localhost' type='chat'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
        assert!(chat_state(&chat, false, "composing").is_none(), "no body");
        let room = parse(
            "<message type='groupchat' from='lobby@muc.h/ann' to='bot.h'><body>x</body></message>",
        )
        .unwrap();
        let state = chat_state(&envelope(&room), true, "composing").unwrap();
        assert_eq!(state.attr("to"), Some("lobby@muc.h"));
        assert_eq!(state.attr("type"), Some("groupchat"));
        let mut headline = message("x");
        headline.set_attr("type", "headline");
        assert!(chat_state(&envelope(&headline), true, "composing").is_none());
    }

    #[test]
    fn active_joins_the_reply_or_follows_alone() {
        let chat = envelope(&message("x"));
        let active = || chat_state(&chat, true, "active").unwrap();
        let reply = parse("<message to='user@localhost/res' type='chat'><body>hi</body></message>")
            .unwrap();
        let o = with_active(
            Outcome {
                stanzas: vec![reply.clone()],
                ..Outcome::default()
            },
            active(),
        );
        assert_eq!(o.stanzas.len(), 1);
        assert!(o.stanzas[0]
            .to_xml()
            .ends_with("<active xmlns='http://jabber.org/protocol/chatstates'/></message>"));
        let paused = reply.with_child(Element::new("paused").with_attr("xmlns", ns::CHATSTATES));
        let o = with_active(
            Outcome {
                stanzas: vec![paused],
                ..Outcome::default()
            },
            active(),
        );
        assert!(
            !o.stanzas[0].to_xml().contains("<active"),
            "its own state wins"
        );
        let error =
            parse("<message to='user@localhost/res' type='error'><error/></message>").unwrap();
        let o = with_active(
            Outcome {
                stanzas: vec![error],
                ..Outcome::default()
            },
            active(),
        );
        assert_eq!(o.stanzas.len(), 2);
        assert_eq!(o.stanzas[1].to_xml(), active().to_xml(), "after the error");
    }
}
