//! The JSON contract (docs/contract.md §3–§6): a stanza becomes the request
//! JSON POSTed for it, and an HTTP answer becomes the reply it asks for.
//! Pure functions over [`Element`](crate::xml::Element); how a failed
//! delivery is answered is `delivery`'s.

mod address;
mod compose;
mod envelope;
mod extract;
pub(crate) mod ns;
mod reply;
mod request;
pub mod stream;

pub use address::{prepare as prepare_addresses, AddressError};
pub use envelope::{ConversionError, Envelope, Kind, RoomJids};
pub(crate) use reply::json_type_name;
pub use reply::{
    error_text, is_json, is_media_type, json_object, reply_for, stanza_from_object, HttpAnswer,
    ReplyError,
};
pub use request::{request, request_with, Context, Request};

#[cfg(test)]
pub(crate) mod examples {
    //! Stanzas and answers the tests of several modules share.
    use super::{Envelope, HttpAnswer};
    use crate::xml::Element;
    use serde_json::Value;

    pub fn envelope(stanza: &Element) -> Envelope {
        Envelope::of(stanza).unwrap()
    }

    pub fn json_answer(value: Value) -> HttpAnswer {
        HttpAnswer {
            status: 200,
            content_type: Some("application/json".into()),
            body: value.to_string().into_bytes(),
            ..Default::default()
        }
    }

    pub fn answer(status: u16, content_type: Option<&str>, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            content_type: content_type.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    pub fn message(body: &str) -> Element {
        Element::new("message")
            .with_attr("to", "echo@bot.localhost")
            .with_attr("from", "user@localhost/res")
            .with_attr("type", "chat")
            .with_attr("id", "m1")
            .with_child(Element::new("body").with_text(body))
    }

    pub fn iq(kind: &str) -> Element {
        Element::new("iq")
            .with_attr("to", "bot.localhost")
            .with_attr("from", "user@localhost/res")
            .with_attr("type", kind)
            .with_attr("id", "q1")
            .with_child(Element::new("query").with_attr("xmlns", "urn:x"))
    }
}
