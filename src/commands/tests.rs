use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::conversion::examples::{answer as http, json_answer};
use crate::xml::parse;

const ALICE: &str = "alice@localhost/phone";

fn commands() -> Commands {
    Commands::new(
        vec![
            MenuItem::new("weather", Some("Weather")),
            MenuItem::new("help", None),
        ],
        Duration::from_secs(600),
    )
}

fn iq(kind: &str, from: &str, payload: &str) -> Element {
    parse(&format!(
        "<iq type='{kind}' to='echo@bot.localhost' from='{from}' id='c1'>{payload}</iq>"
    ))
    .unwrap()
}

fn command(attrs: &str, inner: &str) -> Element {
    iq(
        "set",
        ALICE,
        &format!("<command xmlns='http://jabber.org/protocol/commands' {attrs}>{inner}</command>"),
    )
}

fn answered(route: Route) -> String {
    match route {
        Route::Answer(reply) => reply.to_xml(),
        other => panic!("not answered: {other:?}"),
    }
}

fn posted(route: Route) -> Step {
    match route {
        Route::Post(step) => step,
        other => panic!("not posted: {other:?}"),
    }
}

#[test]
fn disco_of_the_menu_is_answered_here() {
    let mut c = commands();
    let now = Instant::now();
    let items = iq(
        "get",
        ALICE,
        "<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>",
    );
    let xml = answered(c.route(&items, now));
    assert!(xml.starts_with(
        "<iq to='alice@localhost/phone' from='echo@bot.localhost' id='c1' type='result'>"
    ));
    assert!(xml.contains(
        "<item jid='echo@bot.localhost' node='weather' name='Weather'/><item jid='echo@bot.localhost' node='help' name='help'/>"
    ));
    let info = iq(
        "get",
        ALICE,
        "<query xmlns='http://jabber.org/protocol/disco#info' node='weather'/>",
    );
    assert!(answered(c.route(&info, now)).contains("type='command-node'"));
    // Other disco is not the commands' business.
    for payload in [
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        "<query xmlns='http://jabber.org/protocol/disco#info' node='other'/>",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        "<ping xmlns='urn:xmpp:ping'/>",
    ] {
        assert!(
            matches!(c.route(&iq("get", ALICE, payload), now), Route::NotMine),
            "{payload}"
        );
    }
    assert!(c.offered());
    assert!(!Commands::new(Vec::new(), Duration::from_secs(1)).offered());
}

#[test]
fn a_first_step_opens_a_session_and_later_steps_carry_the_form() {
    let mut c = commands();
    let now = Instant::now();
    let first = posted(c.route(&command("node='weather'", ""), now));
    assert_eq!(first.action, Action::Execute);
    assert_eq!(first.sessionid.len(), 32, "128 bits, in hex");
    assert_eq!(
        first.json,
        json!({"node": "weather", "action": "execute", "sessionid": first.sessionid})
    );
    let again = posted(c.route(&command("node='weather' action='execute'", ""), now));
    assert_ne!(again.sessionid, first.sessionid);
    let form =
        "<x xmlns='jabber:x:data' type='submit'><field var='city'><value>paris</value></field></x>";
    let next = posted(c.route(
        &command(
            &format!(
                "node='weather' action='next' sessionid='{}'",
                first.sessionid
            ),
            form,
        ),
        now,
    ));
    assert_eq!(
        next.json,
        json!({"node": "weather", "action": "next", "sessionid": first.sessionid,
               "form": {"type": "submit", "fields": [{"var": "city", "value": "paris"}]},
               "data": {"city": "paris"}})
    );
    assert_eq!(c.sessions(), 2);
}

#[test]
fn steps_that_are_not_the_sessions_are_refused_in_order() {
    let mut c = commands();
    let now = Instant::now();
    let id = posted(c.route(&command("node='weather'", ""), now)).sessionid;
    let not_found = answered(c.route(&command("node='nope' action='next' sessionid='x'", ""), now));
    assert!(
        not_found.contains("type='cancel'><item-not-found"),
        "{not_found}"
    );
    let bad_action = answered(c.route(&command("node='weather' action='dance'", ""), now));
    assert!(bad_action.contains(
        "<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
         <malformed-action xmlns='http://jabber.org/protocol/commands'/></error>"
    ));
    let first_next = answered(c.route(&command("node='weather' action='next'", ""), now));
    assert!(first_next.contains("<malformed-action"));
    for (attrs, from) in [
        ("node='weather' sessionid='guess'".to_owned(), ALICE),
        (format!("node='help' sessionid='{id}'"), ALICE),
        (
            format!("node='weather' sessionid='{id}'"),
            "mallory@localhost/phone",
        ),
        (
            format!("node='weather' sessionid='{id}'"),
            "alice@localhost/laptop",
        ),
    ] {
        let step = iq(
            "set",
            from,
            &format!("<command xmlns='http://jabber.org/protocol/commands' {attrs}/>"),
        );
        let xml = answered(c.route(&step, now));
        assert!(
            xml.contains("<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><bad-sessionid xmlns='http://jabber.org/protocol/commands'/>"),
            "{attrs} from {from}: {xml}"
        );
    }
    // Still Alice's, for weather.
    posted(c.route(
        &command(&format!("node='weather' sessionid='{id}'"), ""),
        now,
    ));
    let expired = now + Duration::from_secs(601);
    answered(c.route(
        &command(&format!("node='weather' sessionid='{id}'"), ""),
        expired,
    ));
}

fn step(action: Action) -> Step {
    Step {
        node: "weather".into(),
        sessionid: "s1".into(),
        action,
        json: Value::Null,
    }
}

fn envelope() -> Envelope {
    Envelope::of(&command("node='weather'", "")).unwrap()
}

fn result_of(action: Action, answer: HttpAnswer) -> Result<(String, Settled), String> {
    super::answer(&envelope(), &step(action), &answer)
        .map(|(reply, settled)| (reply.to_xml(), settled))
        .map_err(|e| e.to_string())
}

use crate::conversion::HttpAnswer;

const RESULT: &str =
    "<iq to='alice@localhost/phone' from='echo@bot.localhost' id='c1' type='result'>";

#[test]
fn an_answer_builds_the_command_result_in_xep_0050_order() {
    let (xml, settled) = result_of(
        Action::Execute,
        json_answer(json!({"command": {
            "note": {"type": "warn", "text": "Which city?"},
            "actions": {"execute": "next", "next": true, "prev": false, "complete": true},
            "form": {"type": "form", "title": "Weather", "fields": [
                {"var": "city", "type": "list-single", "label": "City", "required": true,
                 "options": [{"label": "Paris", "value": "paris"}]}]}}})),
    )
    .unwrap();
    assert_eq!(
        xml,
        format!(
            "{RESULT}<command xmlns='http://jabber.org/protocol/commands' node='weather' sessionid='s1' \
             status='executing'><actions execute='next'><next/><complete/></actions>\
             <note type='warn'>Which city?</note><x xmlns='jabber:x:data' type='form'><title>Weather</title>\
             <field var='city' type='list-single' label='City'><required/>\
             <option label='Paris'><value>paris</value></option></field></x></command></iq>"
        )
    );
    let form =
        parse("<x xmlns='jabber:x:data'><field var='city' type='list-single'/></x>").unwrap();
    assert_eq!(
        settled,
        Settled::Keep {
            sessionid: "s1".into(),
            sent: Some(FieldTypes::of(&form))
        }
    );
}

#[test]
fn simple_answers_complete_the_command() {
    let completed = |note: &str| {
        let head = format!(
            "{RESULT}<command xmlns='http://jabber.org/protocol/commands' node='weather' sessionid='s1' \
             status='completed'"
        );
        match note {
            "" => format!("{head}/></iq>"),
            note => format!("{head}>{note}</command></iq>"),
        }
    };
    let closed = Settled::Close("s1".into());
    for answer in [
        json_answer(json!({})),
        json_answer(Value::Null),
        http(200, Some("text/plain"), "ok"),
        http(204, None, ""),
        http(200, Some("application/json"), "  "),
    ] {
        assert_eq!(
            result_of(Action::Execute, answer).unwrap(),
            (completed(""), closed.clone())
        );
    }
    assert_eq!(
        result_of(Action::Next, json_answer(json!({"body": "Sunny, 21 °C"}))).unwrap(),
        (
            completed("<note type='info'>Sunny, 21 °C</note>"),
            closed.clone()
        )
    );
    assert_eq!(
        result_of(
            Action::Execute,
            json_answer(json!({"command": {"note": "Done"}, "body": "ignored"}))
        )
        .unwrap()
        .0,
        completed("<note type='info'>Done</note>")
    );
    // A result form shows the output; actions only go with executing.
    let (xml, settled) = result_of(
        Action::Complete,
        json_answer(json!({"command": {"actions": {"next": true},
            "form": {"type": "result", "reported": [{"var": "t"}], "items": [[{"var": "t", "value": "21"}]]}}})),
    )
    .unwrap();
    assert!(
        xml.contains("status='completed'><x xmlns='jabber:x:data' type='result'><reported>"),
        "{xml}"
    );
    assert_eq!(settled, closed);
    let (xml, settled) = result_of(
        Action::Execute,
        json_answer(json!({"command": {"status": "executing"}})),
    )
    .unwrap();
    assert!(xml.contains("status='executing'/>"));
    assert!(matches!(settled, Settled::Keep { sent: None, .. }));
}

#[test]
fn a_cancel_is_canceled_whatever_the_answer_unless_an_error() {
    for answer in [
        json_answer(json!({"command": {"status": "executing", "form": {"fields": []}}})),
        json_answer(json!({})),
    ] {
        let (xml, settled) = result_of(Action::Cancel, answer).unwrap();
        assert!(xml.contains("status='canceled'"), "{xml}");
        assert_eq!(settled, Settled::Close("s1".into()));
    }
    assert_eq!(
        step(Action::Cancel).settled_on_error(),
        Settled::Close("s1".into())
    );
    assert_eq!(
        step(Action::Next).settled_on_error(),
        Settled::Keep {
            sessionid: "s1".into(),
            sent: None
        }
    );
    assert_eq!(
        result_of(Action::Cancel, http(503, Some("text/plain"), "down")).unwrap_err(),
        "HTTP 503 (down)"
    );
}

#[test]
fn wrong_types_refuse_the_answer_naming_the_key() {
    for (answer, key) in [
        (json!({"command": "done"}), "'command' must be an object"),
        (
            json!({"command": {"status": "finished"}}),
            "'command.status' must be one of executing, completed, canceled",
        ),
        (json!({"command": {"note": 3}}), "'command.note' must be"),
        (
            json!({"command": {"note": {"type": "debug", "text": "x"}}}),
            "'command.note.type' must be one of",
        ),
        (
            json!({"command": {"note": {"type": "info"}}}),
            "'command.note.text' must be a string",
        ),
        (
            json!({"command": {"actions": []}}),
            "'command.actions' must be an object",
        ),
        (
            json!({"command": {"actions": {"execute": "finish"}}}),
            "'command.actions.execute' must be one of",
        ),
        (
            json!({"command": {"actions": {"next": "yes"}}}),
            "'command.actions.next' must be true or false",
        ),
        (
            json!({"command": {"form": {"type": "submit", "fields": [{"value": "x"}]}}}),
            "'command.form.fields[0].var' is missing",
        ),
        (
            json!({"command": {"form": {"fields": [{"var": "a", "options": [{"label": "x"}]}]}}}),
            "'command.form.fields[0].options[0].value' is missing",
        ),
        (json!({"body": 5}), "'body' must be a string"),
        (
            json!({"command": {"note": "a\u{0}b"}}),
            "not allowed in XML",
        ),
        (json!([1]), "expected a JSON object"),
    ] {
        let why = result_of(Action::Execute, json_answer(answer.clone())).unwrap_err();
        assert!(why.contains(key), "{answer}: {why}");
    }
}

#[test]
fn settling_closes_or_remembers() {
    let mut c = commands();
    let now = Instant::now();
    let id = posted(c.route(&command("node='weather'", ""), now)).sessionid;
    let form = parse("<x xmlns='jabber:x:data'><field var='ok' type='boolean'/></x>").unwrap();
    c.settle(Settled::Keep {
        sessionid: id.clone(),
        sent: Some(FieldTypes::of(&form)),
    });
    let submit =
        "<x xmlns='jabber:x:data' type='submit'><field var='ok'><value>1</value></field></x>";
    let next = posted(c.route(
        &command(
            &format!("node='weather' sessionid='{id}' action='next'"),
            submit,
        ),
        now,
    ));
    assert_eq!(next.json["data"], json!({"ok": true}));
    c.settle(Settled::Close(id.clone()));
    answered(c.route(
        &command(&format!("node='weather' sessionid='{id}'"), ""),
        now,
    ));
    assert_eq!(c.sessions(), 0);
}

#[test]
fn a_kept_menu_is_restored_and_a_bad_one_refused() {
    let mut c = commands();
    let mut pushed = commands();
    pushed
        .menu
        .push(Some(vec![MenuItem::new("ping", Some("Ping"))]));
    c.restore(&pushed.menu.pushed_json().unwrap()).unwrap();
    assert_eq!(c.menu.items(), [MenuItem::new("ping", Some("Ping"))]);
    assert!(c.restore("{").is_err());
    assert_eq!(
        c.restore("[1]").unwrap_err(),
        "'commands[0]' must be a node name or {\"node\", \"name\"}"
    );
    assert_eq!(c.menu.items()[0].node, "ping", "left as it was");
}
