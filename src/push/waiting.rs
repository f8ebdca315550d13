//! Pushed IQs waiting for their answer (docs/contract.md §10). An IQ get or
//! set that the web service pushes is answered over HTTP with the IQ's
//! answer; the answer is taken only from the JID the IQ went to (or, for
//! one to a bare JID, one of its resources): its id alone could be guessed
//! and answered by anyone.

use std::collections::HashMap;

use crate::conversion;
use crate::effect::Effect;
use crate::jid;
use crate::log::LogLevel;
use crate::xml::Element;

/// What an IQ result or error to the component is to the pushed IQs.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Not the answer to a pushed IQ: handle it as any IQ.
    NotPushed,
    /// Its id is a pushed IQ's, but it comes from elsewhere: ignored (the
    /// log line says so), and handled as any IQ.
    Foreign(Effect),
    /// The answer: the HTTP response to the push that sent the IQ.
    Answered(Effect),
}

/// The pushed IQs of one host waiting for their answer, by id.
#[derive(Debug, Default)]
pub struct PushedIqs {
    waiting: HashMap<String, Recipient>,
}

#[derive(Debug)]
struct Recipient {
    /// Prepared, as the IQ was sent.
    to: String,
    /// Sent to a bare JID: any of its resources may answer.
    bare: bool,
}

impl PushedIqs {
    /// Waits for the answer to IQ `id`, sent to `to` (prepared); false when
    /// an IQ with this id is waiting already.
    pub fn expect(&mut self, id: &str, to: &str) -> bool {
        if self.waiting.contains_key(id) {
            return false;
        }
        let bare = !to.contains('/');
        let recipient = Recipient {
            to: to.to_owned(),
            bare,
        };
        self.waiting.insert(id.to_owned(), recipient);
        true
    }

    /// No longer waits (it timed out, or the module stops).
    pub fn forget(&mut self, id: &str) {
        self.waiting.remove(id);
    }

    /// `stanza`, an IQ result or error (read whole, or only its top element
    /// when it could not be read: then the push gets 502).
    pub fn answer(&mut self, stanza: &Element, readable: bool) -> Answer {
        let Some(id) = stanza.attr("id") else {
            return Answer::NotPushed;
        };
        let Some(recipient) = self.waiting.get(id) else {
            return Answer::NotPushed;
        };
        let from = stanza.attr("from").and_then(jid::prep);
        let from = from.as_deref().unwrap_or_default();
        if from != recipient.to && !(recipient.bare && jid::bare(from) == recipient.to) {
            return Answer::Foreign(Effect::Log(
                LogLevel::Warn,
                format!(
                    "Ignoring an answer to pushed iq {id} from {}: it went to {}",
                    stanza.attr("from").unwrap_or("nobody"),
                    recipient.to
                ),
            ));
        }
        let id = id.to_owned();
        self.waiting.remove(&id);
        let request = readable.then(|| conversion::request(stanza).ok()).flatten();
        Answer::Answered(match request {
            Some(request) => Effect::PushAnswer {
                id,
                status: 200,
                body: request.json,
            },
            None => Effect::PushAnswer {
                id,
                status: 502,
                body: serde_json::json!({ "error": "the answer could not be read" }).to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    fn result(from: &str, id: &str) -> Element {
        xml::parse(&format!(
            "<iq type='result' to='bot.h' from='{from}' id='{id}'/>"
        ))
        .unwrap()
    }

    #[test]
    fn only_the_recipient_answers() {
        let mut iqs = PushedIqs::default();
        assert!(iqs.expect("p1", "alice@h/phone"));
        assert!(!iqs.expect("p1", "alice@h/phone"), "one at a time per id");
        assert!(matches!(
            iqs.answer(&result("bob@h/pc", "p1"), true),
            Answer::Foreign(_)
        ));
        assert!(matches!(
            iqs.answer(&result("alice@h/pc", "p1"), true),
            Answer::Foreign(_)
        ));
        assert_eq!(
            iqs.answer(&result("alice@h/other", "p2"), true),
            Answer::NotPushed
        );
        let Answer::Answered(Effect::PushAnswer { id, status, body }) =
            iqs.answer(&result("Alice@H/phone", "p1"), true)
        else {
            panic!("not answered");
        };
        assert_eq!((id.as_str(), status), ("p1", 200));
        assert!(body.contains("\"kind\":\"iq\""));
        assert_eq!(
            iqs.answer(&result("alice@h/phone", "p1"), true),
            Answer::NotPushed
        );
    }

    #[test]
    fn any_resource_answers_an_iq_to_a_bare_jid_and_an_unreadable_answer_is_a_502() {
        let mut iqs = PushedIqs::default();
        iqs.expect("p1", "alice@h");
        let answer = iqs.answer(&result("alice@h/phone", "p1"), false);
        assert!(matches!(
            answer,
            Answer::Answered(Effect::PushAnswer { status: 502, .. })
        ));
        iqs.expect("p2", "alice@h");
        iqs.forget("p2");
        assert_eq!(
            iqs.answer(&result("alice@h", "p2"), true),
            Answer::NotPushed
        );
    }
}
