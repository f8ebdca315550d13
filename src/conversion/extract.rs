//! Stanza → the structured keys of the request JSON (docs/contract.md §3.1):
//! chat states, corrections, reactions, replies, receipts, markers, files,
//! invitations, room and presence details, errors, data forms. Each key is present only
//! when the stanza has what it maps; `stanza` keeps the whole XML.

use serde::Serialize;

use super::envelope::Kind;
use super::ns;
use crate::forms;
use crate::jid;
use crate::stanza_error::XMLNS_STANZAS;
use crate::xml::Element;

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Thread {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Oob {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Reactions {
    pub id: String,
    pub reactions: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Reply {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Invite {
    pub room: String,
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct StanzaErrorKeys {
    #[serde(rename = "type")]
    pub error_type: String,
    pub condition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The structured keys of one stanza; `None` keys are left out of the JSON.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Keys {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<Thread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oob: Option<Oob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Reactions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// XEP-0424: the id of the message its sender retracts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retract: Option<String>,
    /// XEP-0359: a room's id of its message, which a retraction there names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stanza_id: Option<String>,
    /// A room message that mentions the bot (set by the rooms, §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentioned: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_receipt: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub markable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occupant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite: Option<Invite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_nick: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StanzaErrorKeys>,
    /// A data form in a message (§13.3), and its values as a map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

fn some_text(element: &Element) -> Option<String> {
    Some(element.text())
}

fn attr(element: &Element, name: &str) -> Option<String> {
    element.attr(name).map(str::to_owned)
}

/// The keys of `stanza` (of kind `kind`), read in one pass over its children.
pub fn keys(stanza: &Element, kind: Kind) -> Keys {
    let mut keys = Keys::default();
    // A child without xmlns is in the stanza's namespace (jabber:client).
    let inherited = stanza.attr("xmlns");
    let mut in_room = false;
    for child in stanza.elements() {
        let ns = child.attr("xmlns").or(inherited);
        let plain = ns.is_none_or(|ns| ns == "jabber:client" || ns == "jabber:server");
        match (kind, child.name.as_str(), ns) {
            (_, "error", _) if plain => keys.error = error_keys(child),
            (_, "delay", Some(ns::DELAY)) => keys.delay = attr(child, "stamp"),
            (_, "nick", Some(ns::NICK)) => keys.nick = some_text(child),
            (_, "occupant-id", Some(ns::OCCUPANT_ID)) => keys.occupant_id = attr(child, "id"),
            (_, "x", Some(ns::MUC_USER)) => match mediated_invite(stanza, child) {
                Some(invite) if kind == Kind::Message => keys.invite = Some(invite),
                // From an occupant: its presence, or a private message.
                _ => in_room = true,
            },
            (Kind::Message, "subject", _) if plain => keys.subject = some_text(child),
            (Kind::Message, "thread", _) if plain => {
                keys.thread = Some(Thread {
                    id: child.text(),
                    parent: attr(child, "parent"),
                })
            }
            (Kind::Message, name, Some(ns::CHATSTATES)) => {
                keys.state = ns::CHAT_STATES.iter().find(|s| **s == name).copied()
            }
            (Kind::Message, "x", Some(ns::OOB)) => {
                keys.oob = child.child("url", None).map(|url| Oob {
                    url: url.text(),
                    desc: child.child("desc", None).map(Element::text),
                })
            }
            (Kind::Message, "replace", Some(ns::CORRECTION)) => keys.replace = attr(child, "id"),
            (Kind::Message, "reactions", Some(ns::REACTIONS)) => {
                keys.reactions = child.attr("id").map(|id| Reactions {
                    id: id.to_owned(),
                    reactions: child
                        .elements()
                        .filter(|r| r.name == "reaction")
                        .map(Element::text)
                        .collect(),
                })
            }
            (Kind::Message, "reply", Some(ns::REPLY)) => {
                keys.reply = child.attr("id").map(|id| Reply {
                    id: id.to_owned(),
                    to: attr(child, "to"),
                })
            }
            (Kind::Message, "retract", Some(ns::RETRACT)) => keys.retract = attr(child, "id"),
            // Only the room's own id: the room removes any other by its JID.
            (Kind::Message, "stanza-id", Some(ns::STANZA_ID))
                if child.attr("by") == Some(jid::bare(stanza.attr("from").unwrap_or_default())) =>
            {
                keys.stanza_id = attr(child, "id")
            }
            (Kind::Message, "x", Some(forms::XMLNS)) if keys.form.is_none() => {
                keys.form = Some(forms::to_json(child));
                keys.data = Some(forms::data(child, &forms::FieldTypes::default()));
            }
            (Kind::Message, "request", Some(ns::RECEIPTS)) => keys.request_receipt = Some(true),
            (Kind::Message, "received", Some(ns::RECEIPTS)) => keys.received = attr(child, "id"),
            (Kind::Message, "markable", Some(ns::MARKERS)) => keys.markable = Some(true),
            (Kind::Message, "displayed", Some(ns::MARKERS)) => keys.displayed = attr(child, "id"),
            // A room mediating an invitation may add this too: the
            // mediated one, which names the inviter, wins.
            (Kind::Message, "x", Some(ns::CONFERENCE)) if keys.invite.is_none() => {
                keys.invite = child.attr("jid").map(|room| Invite {
                    room: room.to_owned(),
                    from: stanza.attr("from").unwrap_or_default().to_owned(),
                    reason: attr(child, "reason"),
                    password: attr(child, "password"),
                })
            }
            (Kind::Presence, "show", _) if plain => keys.show = some_text(child),
            (Kind::Presence, "status", _) if plain => keys.status = some_text(child),
            (Kind::Presence, "priority", _) if plain => {
                keys.priority = child.text().trim().parse().ok()
            }
            _ => {}
        }
    }
    let from = stanza.attr("from").unwrap_or_default();
    let groupchat = kind == Kind::Message && stanza.attr("type") == Some("groupchat");
    if groupchat || (in_room && kind != Kind::Iq) {
        keys.room = Some(jid::bare(from).to_owned());
        keys.room_nick = from.split_once('/').map(|(_, nick)| nick.to_owned());
    }
    if !groupchat {
        keys.stanza_id = None; // (a room's id is for its room messages)
    }
    keys
}

/// A XEP-0045 invitation: the room sends it, on behalf of `<invite from=…>`.
fn mediated_invite(stanza: &Element, x: &Element) -> Option<Invite> {
    let invite = x.child("invite", None)?;
    Some(Invite {
        room: jid::bare(stanza.attr("from").unwrap_or_default()).to_owned(),
        from: invite.attr("from").unwrap_or_default().to_owned(),
        reason: invite.child("reason", None).map(Element::text),
        password: x.child("password", None).map(Element::text),
    })
}

fn error_keys(error: &Element) -> Option<StanzaErrorKeys> {
    let condition = error
        .elements()
        .find(|e| e.name != "text" && e.attr("xmlns") == Some(XMLNS_STANZAS))?;
    Some(StanzaErrorKeys {
        error_type: error.attr("type").unwrap_or("cancel").to_owned(),
        condition: condition.name.clone(),
        text: error.child("text", Some(XMLNS_STANZAS)).map(Element::text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;
    use serde_json::{json, Value};

    fn json_of(stanza: &str) -> Value {
        let stanza = xml::parse(stanza).unwrap();
        let kind = Kind::parse(&stanza.name).unwrap();
        serde_json::to_value(keys(&stanza, kind)).unwrap()
    }

    #[test]
    fn every_message_key_from_its_element() {
        let got = json_of(
            "<message from='u@h/r' to='b@bot' type='chat'><body>hi</body>\
             <subject>topic</subject><thread parent='p1'>t1</thread>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/>\
             <x xmlns='jabber:x:oob'><url>https://x/a.png</url><desc>a cat</desc></x>\
             <replace xmlns='urn:xmpp:message-correct:0' id='m0'/>\
             <reactions xmlns='urn:xmpp:reactions:0' id='m9'><reaction>👍</reaction><reaction>🎉</reaction></reactions>\
             <reply xmlns='urn:xmpp:reply:0' id='m8' to='v@h/r'/>\
             <request xmlns='urn:xmpp:receipts'/><received xmlns='urn:xmpp:receipts' id='m7'/>\
             <markable xmlns='urn:xmpp:chat-markers:0'/><displayed xmlns='urn:xmpp:chat-markers:0' id='m6'/>\
             <delay xmlns='urn:xmpp:delay' stamp='2026-12-01T10:00:00Z'/>\
             <nick xmlns='http://jabber.org/protocol/nick'>Ann</nick>\
             <occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ1'/></message>",
        );
        assert_eq!(
            got,
            json!({
                "subject": "topic",
                "thread": {"id": "t1", "parent": "p1"},
                "state": "composing",
                "oob": {"url": "https://x/a.png", "desc": "a cat"},
                "replace": "m0",
                "reactions": {"id": "m9", "reactions": ["👍", "🎉"]},
                "reply": {"id": "m8", "to": "v@h/r"},
                "request_receipt": true,
                "received": "m7",
                "markable": true,
                "displayed": "m6",
                "delay": "2026-12-01T10:00:00Z",
                "nick": "Ann",
                "occupant_id": "occ1",
            })
        );
    }

    #[test]
    fn optional_parts_only_when_present() {
        let got = json_of(
            "<message from='u@h/r' to='b@bot'><thread>t1</thread>\
             <x xmlns='jabber:x:oob'><url>https://x/</url></x><reply xmlns='urn:xmpp:reply:0' id='m8'/></message>",
        );
        assert_eq!(
            got,
            json!({"thread": {"id": "t1"}, "oob": {"url": "https://x/"}, "reply": {"id": "m8"}})
        );
        // The same names in other namespaces are not these features.
        let got = json_of(
            "<message from='u@h/r' to='b@bot'><composing xmlns='urn:other'/><x xmlns='urn:x'><url>u</url></x>\
             <subject xmlns='urn:other'>s</subject></message>",
        );
        assert_eq!(got, json!({}));
    }

    #[test]
    fn room_and_nick_of_groupchat_and_occupants() {
        let got = json_of(
            "<message from='room@muc.h/Ann' to='b@bot' type='groupchat'><body>x</body></message>",
        );
        assert_eq!(got, json!({"room": "room@muc.h", "room_nick": "Ann"}));
        let got = json_of(
            "<message from='room@muc.h' to='b@bot' type='groupchat'><subject>s</subject></message>",
        );
        assert_eq!(got, json!({"subject": "s", "room": "room@muc.h"}));
        let private = "<message from='room@muc.h/Ann' to='b@bot' type='chat'><body>psst</body>\
                       <x xmlns='http://jabber.org/protocol/muc#user'/></message>";
        assert_eq!(
            json_of(private),
            json!({"room": "room@muc.h", "room_nick": "Ann"})
        );
        let presence = "<presence from='room@muc.h/Ann' to='b@bot/x'><show>away</show><status>lunch</status>\
                        <priority>-5</priority><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>";
        assert_eq!(
            json_of(presence),
            json!({"show": "away", "status": "lunch", "priority": -5, "room": "room@muc.h", "room_nick": "Ann"})
        );
    }

    #[test]
    fn a_retraction_and_the_rooms_own_stanza_id() {
        let retract = json_of(
            "<message from='a@h/r' to='b@c' type='chat'>\
             <retract xmlns='urn:xmpp:message-retract:1' id='m5'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='a@h' id='not-a-room'/></message>",
        );
        assert_eq!(retract["retract"], "m5");
        assert!(retract.get("stanza_id").is_none(), "only a room message's");
        let room = json_of(
            "<message from='lobby@muc.h/alice' to='b@c' type='groupchat'><body>x</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='forger@evil' id='fake'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='lobby@muc.h' id='s-1'/></message>",
        );
        assert_eq!(room["stanza_id"], "s-1");
    }

    #[test]
    fn invitations_direct_and_mediated() {
        let direct = "<message from='ann@h/r' to='b@bot'>\
                      <x xmlns='jabber:x:conference' jid='room@muc.h' reason='join us' password='pw'/></message>";
        assert_eq!(
            json_of(direct),
            json!({"invite": {"room": "room@muc.h", "from": "ann@h/r", "reason": "join us", "password": "pw"}})
        );
        let mediated =
            "<message from='room@muc.h' to='b@bot'><x xmlns='http://jabber.org/protocol/muc#user'>\
                        <invite from='ann@h/r'><reason>hi</reason></invite></x>\
                        <x xmlns='jabber:x:conference' jid='room@muc.h'/></message>";
        assert_eq!(
            json_of(mediated),
            json!({"invite": {"room": "room@muc.h", "from": "ann@h/r", "reason": "hi"}})
        );
    }

    #[test]
    fn an_error_stanza_says_its_error() {
        let got = json_of(
            "<message from='u@h' to='b@bot' type='error'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone away</text></error></message>",
        );
        assert_eq!(
            got,
            json!({"error": {"type": "cancel", "condition": "item-not-found", "text": "gone away"}})
        );
    }

    #[test]
    fn message_keys_are_not_read_from_presence() {
        let got = json_of("<presence from='u@h/r' to='b@bot'><subject>s</subject><priority>x</priority></presence>");
        assert_eq!(
            got,
            json!({}),
            "and a priority that is not a number is left out"
        );
    }

    #[test]
    fn a_data_form_in_a_message_gives_form_and_data() {
        let got = json_of(
            "<message from='u@h/r' to='b@bot'><x xmlns='jabber:x:data' type='submit'>\
             <field var='pizza' type='list-multi'><value>ham</value></field>\
             <field var='ok' type='boolean'><value>1</value></field></x>\
             <x xmlns='jabber:x:data' type='submit'><field var='second'/></x></message>",
        );
        assert_eq!(
            got,
            json!({"form": {"type": "submit", "fields": [
                      {"var": "pizza", "type": "list-multi", "value": ["ham"]},
                      {"var": "ok", "type": "boolean", "value": "1"}]},
                   "data": {"pizza": ["ham"], "ok": true}}),
            "the first form only"
        );
        let presence =
            json_of("<presence from='u@h/r' to='b@bot'><x xmlns='jabber:x:data'/></presence>");
        assert_eq!(presence, json!({}));
    }
}
