//! A stanza to the component, read once: whose business it is and what it
//! gets, as effects. In order: the answer to an upload's IQ (§14), to a
//! pushed IQ (docs/contract.md §10), the rooms' own presences and the room messages the web service
//! does not get (§12), the menu's disco and command steps (§13), then the
//! web service (POSTed, §3) or the component's own answer (§6, §7).

use std::time::Instant;

use crate::allow;
use crate::commands::{self, Route};
use crate::conversion::{Context, Envelope, Kind};
use crate::delivery::Delivery;
use crate::effect::Effect;
use crate::local;
use crate::log::LogLevel;
use crate::push::{Answer, Endpoint};
use crate::rooms::{self, Heard, Rooms};
use crate::xml::Element;

/// What a host has that a stanza may concern.
pub struct Host<'a> {
    pub delivery: &'a Delivery,
    pub rooms: &'a mut Rooms,
    /// The push endpoint, when it is on.
    pub push: Option<&'a mut Endpoint>,
}

/// The effects of a stanza to the component, and whether the module took
/// it: false leaves it to Prosody (a message when messages are not
/// forwarded, which Prosody answers `service-unavailable`).
pub fn receive(host: Host, stanza: &Element, now: Instant, unix_secs: u64) -> (Vec<Effect>, bool) {
    let config = host.delivery.config();
    let mut effects = Vec::new();
    // Who may talk to the bot (§16): judged where a stanza would be
    // POSTed; the module's own answers stay open to everyone.
    let from = stanza.attr("from").unwrap_or_default();
    let admitted = config.allow.admits(from, host.rooms.jids());
    match Kind::parse(&stanza.name) {
        Some(Kind::Iq) => {
            if host.delivery.upload_answer(stanza) {
                return (Vec::new(), true);
            }
            if let Some(answer) = pushed_iq_answer(host.push, stanza, true) {
                match answer {
                    Answer::Answered(effect) => return (vec![effect], true),
                    Answer::Foreign(log) => effects.push(log),
                    Answer::NotPushed => {}
                }
            }
            // The bot's vCard, whether or not IQs are forwarded (§15).
            if let Some(vcard) = config.face.answer(stanza) {
                return (vec![Effect::Send(vcard)], true);
            }
            // The menu's disco and command steps, whether or not IQs
            // are forwarded (§13).
            let commands = host.delivery.commands();
            let mut commands = commands::lock(&commands);
            match commands.route(stanza, now) {
                Route::Answer(reply) => effects.push(Effect::Send(reply)),
                Route::Post(_) if !admitted => effects.extend(allow::refuse(stanza)),
                Route::Post(step) => effects.extend(host.delivery.post_step(stanza, step)),
                Route::NotMine if config.forwards(Kind::Iq) && admitted => {
                    effects.extend(host.delivery.post(stanza))
                }
                // Not for the service's ears; a ping or disco still answered.
                Route::NotMine if config.forwards(Kind::Iq) && !local::is_open(stanza) => {
                    effects.extend(allow::refuse(stanza))
                }
                Route::NotMine => {
                    let offered = commands.offered();
                    effects.extend(local::answer_iq(
                        stanza,
                        &config.host,
                        offered,
                        &config.face,
                    ))
                }
            }
        }
        Some(Kind::Presence) => {
            let stamp = rooms::stamp(unix_secs);
            if let Some((rooms_effects, post)) = host.rooms.presence(stanza, now, &stamp) {
                effects.extend(rooms_effects);
                effects.push(host.rooms.wake(now));
                if post {
                    effects.extend(host.delivery.post(stanza));
                }
            } else if !admitted
                && (config.forwards(Kind::Presence) || stanza.attr("type") == Some("subscribe"))
            {
                effects.extend(allow::refuse(stanza));
            } else if config.forwards(Kind::Presence) {
                effects.extend(host.delivery.post(stanza));
            } else {
                effects.extend(local::answer_presence(stanza));
            }
        }
        Some(Kind::Message) => {
            if !config.forwards(Kind::Message) {
                return not_forwarded(stanza);
            }
            if !admitted {
                effects.extend(allow::refuse(stanza));
            } else if let Heard::Post { mentioned } = host.rooms.message(stanza) {
                let context = Context {
                    mentioned,
                    ..Context::default()
                };
                effects.extend(host.delivery.post_with(stanza, context));
            }
        }
        None => return (Vec::new(), false),
    }
    config.face.dress_all(&mut effects);
    (effects, true)
}

/// As [`receive`], for a stanza that could not be read whole (too deep for
/// Lua's stack, say): `top` is what could be (see `local::unreadable`).
pub fn receive_unreadable(host: Host, top: &Element, why: &str) -> (Vec<Effect>, bool) {
    let config = host.delivery.config();
    let mut effects = Vec::new();
    let kind = Kind::parse(&top.name);
    if kind == Some(Kind::Iq) {
        match pushed_iq_answer(host.push, top, false) {
            Some(Answer::Answered(effect)) => return (vec![effect], true),
            Some(Answer::Foreign(log)) => effects.push(log),
            _ => {}
        }
    }
    let admitted = config
        .allow
        .admits(top.attr("from").unwrap_or_default(), host.rooms.jids());
    match kind {
        Some(kind) if config.forwards(kind) && !admitted => effects.extend(allow::refuse(top)),
        Some(kind) if config.forwards(kind) => effects.extend(host.delivery.unreadable(top, why)),
        Some(Kind::Iq) => effects.extend(local::unreadable(top, "answer", why, None, None)),
        Some(Kind::Presence) => effects.extend(local::unreadable_presence(top, why)),
        Some(Kind::Message) => return not_forwarded(top),
        None => return (Vec::new(), false),
    }
    (effects, true)
}

fn pushed_iq_answer(
    push: Option<&mut Endpoint>,
    stanza: &Element,
    readable: bool,
) -> Option<Answer> {
    let answers = matches!(stanza.attr("type"), Some("result" | "error"));
    push.filter(|_| answers)
        .map(|push| push.iqs.answer(stanza, readable))
}

/// A message when messages are not forwarded: Prosody answers it
/// `service-unavailable`, except one from a room, which would kick the bot
/// for it (docs/contract.md §12): that one is dropped.
fn not_forwarded(stanza: &Element) -> (Vec<Effect>, bool) {
    match Envelope::of(stanza) {
        Ok(envelope) if envelope.from_room => {
            let line = format!("Not forwarding {} from a room", stanza.top_tag());
            (vec![Effect::Log(LogLevel::Debug, line)], true)
        }
        _ => (Vec::new(), false),
    }
}
