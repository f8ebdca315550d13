//! The rooms state machine, case by case, with a clock in hand.

use super::*;
use crate::xml;

const NOW: &str = "2026-12-01T10:00:00Z";

fn parse(s: &str) -> Element {
    xml::parse(s).unwrap()
}

fn joined(rooms: &mut Rooms, now: Instant) {
    let own = parse(
        "<presence from='room@muc.h/bot' to='bot.h'><x xmlns='http://jabber.org/protocol/muc#user'>\
         <item role='participant'/><status code='110'/></x></presence>",
    );
    assert!(!rooms.presence(&own, now, NOW).unwrap().1);
}

#[test]
fn stamps_are_utc_rfc3339() {
    assert_eq!(stamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(stamp(1_796_126_400), "2026-12-01T12:00:00Z");
    assert_eq!(stamp(951_782_400), "2000-02-29T00:00:00Z");
}

#[test]
fn joins_asking_for_no_history_with_the_default_nick() {
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    let effects = rooms.add("Room@muc.h", None, None);
    assert_eq!(
        effects,
        [Effect::Send(parse(
            "<presence to='room@muc.h/bot' from='bot.h'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>"
        ))]
    );
    assert!(rooms.joined().is_empty());
    joined(&mut rooms, Instant::now());
    assert_eq!(rooms.joined(), ["room@muc.h/bot"]);
    assert!(matches!(
        &rooms.add("nonsense", None, None)[0],
        Effect::Log(LogLevel::Error, _)
    ));
}

#[test]
fn history_subject_and_own_messages_are_not_posted() {
    let mut rooms = Rooms::new("bot.h", Some("bot"), RoomJids::default(), 100);
    rooms.add("room@muc.h/bot", None, None);
    let msg = |from: &str, inner: &str| {
        parse(&format!(
            "<message type='groupchat' from='{from}' to='bot.h'>{inner}</message>"
        ))
    };
    assert!(!posted(
        &mut rooms,
        &msg("room@muc.h/ann", "<body>before the join</body>")
    ));
    joined(&mut rooms, Instant::now());
    let history = msg(
        "room@muc.h/ann",
        "<body>old</body><delay xmlns='urn:xmpp:delay' stamp='2026-12-01T09:00:00Z'/>",
    );
    assert!(!posted(&mut rooms, &history));
    assert!(!posted(
        &mut rooms,
        &msg("room@muc.h", "<subject>topic</subject>")
    ));
    assert!(posted(
        &mut rooms,
        &msg("room@muc.h/ann", "<body>live</body>")
    ));
    assert!(!posted(
        &mut rooms,
        &msg("room@muc.h/bot", "<body>my own</body>")
    ));
    assert!(
        !posted(&mut rooms, &history),
        "delayed from before the join"
    );
    assert!(posted(
        &mut rooms,
        &msg("room@muc.h", "<subject>new topic</subject>")
    ));
    assert!(posted(
        &mut rooms,
        &msg("other@muc.h/x", "<body>not ours</body>")
    ));
    // Joined again where we already were (a reload): no history, no
    // subject; the first live message is posted.
    let mut again = Rooms::new("bot.h", Some("bot"), RoomJids::default(), 100);
    again.add("room@muc.h/bot", None, None);
    joined(&mut again, Instant::now());
    assert!(posted(
        &mut again,
        &msg("room@muc.h/ann", "<body>live at once</body>")
    ));
    let private =
        parse("<message type='chat' from='room@muc.h/ann' to='bot.h'><body>psst</body></message>");
    assert!(posted(&mut rooms, &private));
}

#[test]
fn mentions_only_rooms_hear_mentions_and_every_room_says_mentioned() {
    let msg = |body: &str| {
        parse(&format!(
            "<message type='groupchat' from='room@muc.h/ann' to='bot.h'><body>{body}</body></message>"
        ))
    };
    // (host setting, the room's own) → what a plain and a mentioning message get.
    for (host, room, plain) in [
        (false, None, Heard::Post { mentioned: false }),
        (true, None, Heard::Ignore),
        (false, Some(true), Heard::Ignore),
        (true, Some(false), Heard::Post { mentioned: false }),
    ] {
        let mut rooms = Rooms::new("bot.h", Some("bot"), RoomJids::default(), 100)
            .with_configured(Vec::new(), host);
        rooms.add("room@muc.h/bot", None, room);
        joined(&mut rooms, Instant::now());
        assert_eq!(rooms.message(&msg("hello all")), plain, "{host} {room:?}");
        assert_eq!(
            rooms.message(&msg("@bot hello")),
            Heard::Post { mentioned: true },
            "{host} {room:?}"
        );
        let private = parse(
            "<message type='chat' from='room@muc.h/ann' to='bot.h'><body>psst</body></message>",
        );
        assert_eq!(rooms.message(&private), Heard::Post { mentioned: false });
    }
    // The configured rooms, with their own setting.
    let configured = vec![RoomItem {
        jid: "room@muc.h/bot".into(),
        mentions_only: Some(true),
    }];
    let mut rooms =
        Rooms::new("bot.h", None, RoomJids::default(), 100).with_configured(configured, false);
    assert_eq!(rooms.join_configured().len(), 1);
    joined(&mut rooms, Instant::now());
    assert_eq!(rooms.message(&msg("hello all")), Heard::Ignore);
}

#[test]
fn a_join_by_the_service_may_ask_for_mentions_only_and_the_mark_is_not_sent() {
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    let join = join_presence("bot.h", "room@muc.h", "bot")
        .with_child(Element::new(MENTIONS_ONLY).with_attr("xmlns", NS_INTERNAL));
    let effects = rooms.sending(vec![Effect::Send(join)], Instant::now());
    assert!(matches!(
        &effects[0],
        Effect::RememberRoom {
            mentions_only: true,
            ..
        }
    ));
    let Effect::Send(sent) = &effects[1] else {
        panic!("{effects:?}")
    };
    assert!(!sent.to_xml().contains(NS_INTERNAL), "{}", sent.to_xml());
    joined(&mut rooms, Instant::now());
    let plain = parse(
        "<message type='groupchat' from='room@muc.h/ann' to='bot.h'><body>hi</body></message>",
    );
    assert_eq!(rooms.message(&plain), Heard::Ignore);
}

/// The shim sends every presence through `outgoing`, the rooms' own joins
/// too: those are not the web service's, and a configured room must not be
/// remembered in storage for them.
#[test]
fn the_rooms_own_joins_are_not_taken_for_the_web_services() {
    let t0 = Instant::now();
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    let [Effect::Send(join)] = &rooms.add("room@muc.h", None, None)[..] else {
        panic!("no join");
    };
    assert_eq!(rooms.outgoing(join), (Vec::new(), true));
    joined(&mut rooms, t0);
    let gone = parse(
        "<presence type='unavailable' from='room@muc.h/bot' to='bot.h'>\
         <x xmlns='http://jabber.org/protocol/muc#user'><status code='332'/><status code='110'/></x></presence>",
    );
    rooms.presence(&gone, t0, NOW).unwrap();
    let effects = rooms.due(t0 + Duration::from_secs(1));
    let [Effect::Send(again)] = &effects[..] else {
        panic!("no join again");
    };
    assert_eq!(rooms.outgoing(again), (Vec::new(), true));
    // The web service's own join of that room is its to remember.
    let mut theirs = join.clone();
    theirs.set_attr("from", "helper@bot.h");
    assert!(matches!(
        &rooms.outgoing(&theirs).0[..],
        [Effect::RememberRoom { .. }]
    ));
}

/// A reply or a push on its way out: its presences go through the rooms.
#[test]
fn what_the_web_service_sends_goes_through_the_rooms() {
    let now = Instant::now();
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 1);
    let message = Effect::Send(parse("<message to='a@h'><body>hi</body></message>"));
    let untouched = vec![Effect::Log(LogLevel::Info, "x".into()), message.clone()];
    assert_eq!(rooms.sending(untouched.clone(), now), untouched);
    let join = |room: &str| {
        Effect::Send(parse(&format!(
            "<presence to='{room}@muc.h/Bot' from='bot.h'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
    };
    let sent = rooms.sending(vec![message.clone(), join("one")], now);
    assert!(matches!(
        &sent[..],
        [m, Effect::RememberRoom { room, .. }, Effect::Send(_), Effect::WakeRooms(None)]
            if *m == message && room == "one@muc.h"
    ));
    // Past the cap of one room: said, and not sent.
    let refused = rooms.sending(vec![join("two")], now);
    assert!(matches!(
        &refused[..],
        [Effect::Log(LogLevel::Error, why), Effect::WakeRooms(None)] if why.contains("Not joining")
    ));
}

#[test]
fn a_room_that_goes_away_is_joined_again_with_backoff() {
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    rooms.add("room@muc.h", None, None);
    let t0 = Instant::now();
    joined(&mut rooms, t0);
    let gone = parse(
        "<presence type='unavailable' from='room@muc.h/bot' to='bot.h'>\
         <x xmlns='http://jabber.org/protocol/muc#user'><status code='332'/><status code='110'/></x></presence>",
    );
    let (effects, post) = rooms.presence(&gone, t0, NOW).unwrap();
    assert!(!post);
    assert!(
        matches!(&effects[0], Effect::Log(LogLevel::Warn, l) if l.contains("joining again in 1 s"))
    );
    assert!(rooms.due(t0).is_empty());
    let effects = rooms.due(t0 + Duration::from_secs(1));
    assert!(matches!(&effects[0], Effect::Send(p) if p.attr("to") == Some("room@muc.h/bot")));
    let busy = parse(
        "<presence type='error' from='room@muc.h/bot' to='bot.h'><error type='wait'>\
         <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
    );
    let (effects, _) = rooms.presence(&busy, t0, NOW).unwrap();
    assert!(matches!(&effects[0], Effect::Log(_, l) if l.contains("again in 2 s")));
    assert!(rooms.due(t0).is_empty());
    assert_eq!(rooms.next_due(), Some(t0 + Duration::from_secs(2)));
}

#[test]
fn a_kick_or_ban_is_not_undone_and_is_posted() {
    for code in ["307", "301"] {
        let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
        rooms.add("room@muc.h", None, None);
        let now = Instant::now();
        joined(&mut rooms, now);
        rooms.outgoing(&join_presence("bot.h", "room@muc.h", "bot"));
        let kicked = parse(&format!(
            "<presence type='unavailable' from='room@muc.h/bot' to='bot.h'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><status code='{code}'/><status code='110'/></x></presence>"
        ));
        let (effects, post) = rooms.presence(&kicked, now, NOW).unwrap();
        assert!(post);
        assert!(effects.contains(&Effect::ForgetRoom {
            room: "room@muc.h".into()
        }));
        assert!(rooms.due(now + MAX_RETRY).is_empty(), "not joined again");
        assert!(rooms.joined().is_empty());
    }
}

#[test]
fn the_web_service_joins_and_leaves() {
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    let join = join_presence("bot.h", "Room@muc.h", "Helper");
    assert_eq!(
        rooms.outgoing(&join),
        (
            vec![Effect::RememberRoom {
                room: "room@muc.h".into(),
                nick: "Helper".into(),
                jid: "bot.h".into(),
                mentions_only: false,
            }],
            true
        )
    );
    let leave = parse("<presence type='unavailable' to='room@muc.h/Helper' from='bot.h'/>");
    assert_eq!(
        rooms.outgoing(&leave).0[1],
        Effect::ForgetRoom {
            room: "room@muc.h".into()
        }
    );
    let other = parse("<presence to='u@h/r' from='bot.h'><show>away</show></presence>");
    assert_eq!(rooms.outgoing(&other), (vec![], true));
}

#[test]
fn rooms_are_capped_configured_ones_included() {
    let jids = RoomJids::default();
    let mut rooms = Rooms::new("bot.h", None, jids.clone(), 2);
    rooms.add("one@muc.h", None, None);
    let (effects, send) = rooms.outgoing(&join_presence("bot.h", "two@muc.h", "b"));
    assert!(send && matches!(effects[0], Effect::RememberRoom { .. }));
    let third = join_presence("bot.h", "three@muc.h", "b");
    assert_eq!(
        refuse_join(&third, &jids, 2).as_deref(),
        Some("joining three@muc.h would make more rooms than component_post_max_rooms = 2")
    );
    let (effects, send) = rooms.outgoing(&third);
    assert!(!send);
    assert!(
        matches!(&effects[0], Effect::Log(LogLevel::Error, l) if l.contains("component_post_max_rooms = 2"))
    );
    // A room it is in already may be joined again; one left makes room.
    assert!(rooms.outgoing(&join_presence("bot.h", "two@muc.h", "c")).1);
    rooms.outgoing(&parse("<presence type='unavailable' to='two@muc.h/c'/>"));
    assert!(rooms.outgoing(&third).1);
    // Remembered rooms beyond the cap at load are not joined.
    assert!(matches!(
        &rooms.add("four@muc.h/b", Some("bot.h"), None)[0],
        Effect::Log(LogLevel::Error, _)
    ));
}

#[test]
fn a_room_that_cannot_be_joined_for_a_day_is_forgotten() {
    let jids = RoomJids::default();
    let mut rooms = Rooms::new("bot.h", None, jids.clone(), 100);
    rooms.outgoing(&join_presence("bot.h", "gone@far.example", "b"));
    let unreachable = parse(
        "<presence type='error' from='gone@far.example/b' to='bot.h'><error type='cancel'>\
         <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
    );
    let t0 = Instant::now();
    let (effects, _) = rooms.presence(&unreachable, t0, NOW).unwrap();
    assert!(matches!(&effects[0], Effect::Log(LogLevel::Warn, l) if l.contains("joining again")));
    let later = t0 + GIVE_UP_AFTER - Duration::from_secs(1);
    let (effects, _) = rooms.presence(&unreachable, later, NOW).unwrap();
    assert!(matches!(&effects[0], Effect::Log(LogLevel::Warn, l) if l.contains("joining again")));
    let (effects, _) = rooms
        .presence(&unreachable, t0 + GIVE_UP_AFTER, NOW)
        .unwrap_or_default();
    assert!(matches!(&effects[0], Effect::Log(LogLevel::Warn, l)
        if l == "Forgetting room gone@far.example (remote-server-not-found): it could not be joined for 24 hours"));
    assert_eq!(
        effects[1],
        Effect::ForgetRoom {
            room: "gone@far.example".into()
        }
    );
    assert!(!jids.contains("gone@far.example") && rooms.next_due().is_none());
}

#[test]
fn its_own_messages_are_known_by_the_nick_the_room_gave() {
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    rooms.add("room@muc.h/Bot", None, None);
    let given = parse(
        "<presence from='room@muc.h/Bot2' to='bot.h'><x xmlns='http://jabber.org/protocol/muc#user'>\
         <status code='110'/><status code='210'/></x></presence>",
    );
    rooms.presence(&given, Instant::now(), NOW).unwrap();
    assert_eq!(rooms.joined(), ["room@muc.h/Bot2"]);
    let own = parse(
        "<message type='groupchat' from='room@muc.h/Bot2' to='bot.h'><body>mine</body></message>",
    );
    let live = parse(
        "<message type='groupchat' from='room@muc.h/ann' to='bot.h'><body>hi</body></message>",
    );
    assert!(posted(&mut rooms, &live));
    assert!(!posted(&mut rooms, &own), "its own, reflected");
}

#[test]
fn other_occupants_presence_is_not_the_rooms_business() {
    let mut rooms = Rooms::new("bot.h", None, RoomJids::default(), 100);
    rooms.add("room@muc.h", None, None);
    let ann = parse("<presence from='room@muc.h/ann' to='bot.h'><x xmlns='http://jabber.org/protocol/muc#user'/></presence>");
    assert!(rooms.presence(&ann, Instant::now(), NOW).is_none());
    let stranger = parse("<presence from='u@h/r' to='bot.h'/>");
    assert!(rooms.presence(&stranger, Instant::now(), NOW).is_none());
}

#[test]
fn the_deliveries_know_every_room_until_it_is_left() {
    let jids = RoomJids::default();
    let mut rooms = Rooms::new("bot.h", None, jids.clone(), 100);
    rooms.add("Room@muc.h/bot", None, None);
    assert!(jids.contains("room@muc.h/alice") && jids.contains("ROOM@muc.h"));
    assert!(!jids.contains("other@muc.h/alice"));
    let join = parse(
        "<presence to='other@muc.h/b' from='bot.h'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
    );
    rooms.outgoing(&join);
    assert!(jids.contains("other@muc.h/carol"));
    rooms.outgoing(&parse("<presence to='other@muc.h/b' type='unavailable'/>"));
    assert!(!jids.contains("other@muc.h/carol") && jids.contains("room@muc.h"));
}

/// Whether the message goes to the web service.
fn posted(rooms: &mut Rooms, message: &Element) -> bool {
    matches!(rooms.message(message), Heard::Post { .. })
}

#[test]
fn a_retraction_in_a_room_names_the_rooms_id_of_the_bots_message() {
    let mut rooms = Rooms::new("bot.h", Some("bot"), RoomJids::default(), 100);
    rooms.add("room@muc.h/bot", None, None);
    joined(&mut rooms, Instant::now());
    let reflected = parse(
        "<message type='groupchat' from='room@muc.h/bot' to='bot.h' id='mine-1'><body>oops</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.h' id='room-77'/></message>",
    );
    assert!(!posted(&mut rooms, &reflected), "its own: not POSTed");
    let retract = |id: &str, to: &str| {
        parse(&format!(
            "<message type='groupchat' to='{to}' from='bot.h'>\
             <retract xmlns='urn:xmpp:message-retract:1' id='{id}'/><body>fallback</body></message>"
        ))
    };
    let id_sent = |effects: Vec<Effect>| match &effects[..] {
        [Effect::Send(m)] => m
            .child("retract", None)
            .unwrap()
            .attr("id")
            .unwrap()
            .to_owned(),
        other => panic!("{other:?}"),
    };
    let now = Instant::now();
    let sent = rooms.sending(vec![Effect::Send(retract("mine-1", "room@muc.h"))], now);
    assert_eq!(id_sent(sent), "room-77");
    // An id it does not know (a room's id already, or another's): as it is.
    let sent = rooms.sending(vec![Effect::Send(retract("room-12", "room@muc.h"))], now);
    assert_eq!(id_sent(sent), "room-12");
    let sent = rooms.sending(vec![Effect::Send(retract("mine-1", "other@muc.h"))], now);
    assert_eq!(id_sent(sent), "mine-1");
}
