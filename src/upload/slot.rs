//! XEP-0363 (`urn:xmpp:http:upload:0`): the slot request the component
//! sends, and what the upload service's answer says: where to PUT (with
//! which headers) and where the file will be (GET), or why not.

use super::file::File;
use super::UploadError;
use crate::xml::Element;

pub const XMLNS: &str = "urn:xmpp:http:upload:0";
const XMLNS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The headers a slot may ask the PUT to carry (XEP-0363 §5); others are
/// dropped.
const PUT_HEADERS: [&str; 3] = ["authorization", "cookie", "expires"];

/// Where to upload a file and where it will be.
#[derive(Clone, PartialEq, Eq)]
pub struct Slot {
    pub put: String,
    pub headers: Vec<(String, String)>,
    pub get: String,
}

impl std::fmt::Debug for Slot {
    // The PUT URL and its headers may carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("get", &self.get)
            .finish_non_exhaustive()
    }
}

/// The slot request for `file`, from the component `host` to `service`.
pub fn request(id: &str, host: &str, service: &str, file: &File) -> Element {
    Element::new("iq")
        .with_attr("type", "get")
        .with_attr("from", host)
        .with_attr("to", service)
        .with_attr("id", id)
        .with_child(
            Element::new("request")
                .with_attr("xmlns", XMLNS)
                .with_attr("filename", file.name.as_str())
                .with_attr("size", file.data.len().to_string())
                .with_attr("content-type", file.content_type.as_str()),
        )
}

fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.contains(char::is_whitespace)
}

/// The service's answer to a slot request: the slot, or why there is none.
pub fn read(answer: &Element) -> Result<Slot, UploadError> {
    if answer.attr("type") == Some("error") {
        return Err(refusal(answer));
    }
    let refused = |why: &str| UploadError::Unavailable(format!("the upload service's slot {why}"));
    let slot = answer
        .child("slot", Some(XMLNS))
        .ok_or_else(|| refused("answer has no <slot/>"))?;
    let put = slot
        .child("put", None)
        .ok_or_else(|| refused("has no <put/>"))?;
    let get = slot
        .child("get", None)
        .ok_or_else(|| refused("has no <get/>"))?;
    let (Some(put_url), Some(get_url)) = (put.attr("url"), get.attr("url")) else {
        return Err(refused("lacks a URL"));
    };
    if !is_http(put_url) || !is_http(get_url) {
        return Err(refused("URLs are not http(s)"));
    }
    let headers = put
        .elements()
        .filter(|h| h.name == "header")
        .filter_map(|h| {
            let name = h.attr("name")?.to_ascii_lowercase();
            let value = h.text();
            let safe = PUT_HEADERS.contains(&name.as_str()) && !value.contains(['\r', '\n']);
            safe.then_some((name, value))
        })
        .collect();
    Ok(Slot {
        put: put_url.to_owned(),
        headers,
        get: get_url.to_owned(),
    })
}

/// A slot refused: too large (`file-too-large`, `not-acceptable`), over
/// the quota (`resource-constraint`), not allowed (`forbidden`: Prosody
/// 13's `http_file_share_access`), or anything else.
fn refusal(answer: &Element) -> UploadError {
    let error = answer.child("error", None);
    let condition = error
        .and_then(|e| {
            e.elements()
                .find(|c| c.attr("xmlns") == Some(XMLNS_STANZAS) && c.name != "text")
        })
        .map_or("undefined-condition", |c| c.name.as_str());
    let text = error
        .and_then(|e| e.child("text", Some(XMLNS_STANZAS)))
        .map(|t| format!(": {}", t.text()))
        .unwrap_or_default();
    let too_large = error.is_some_and(|e| e.child("file-too-large", Some(XMLNS)).is_some());
    let why = format!("the upload service refused the slot ({condition}{text})");
    match condition {
        _ if too_large => UploadError::TooLarge(why),
        "not-acceptable" => UploadError::TooLarge(why),
        "resource-constraint" => UploadError::Quota(why),
        "forbidden" | "not-allowed" => UploadError::Forbidden(why),
        _ => UploadError::Unavailable(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn file() -> File {
        File {
            data: vec![1, 2, 3],
            name: "a b.png".into(),
            content_type: "image/png".into(),
            desc: None,
        }
    }

    #[test]
    fn the_request_names_the_file() {
        assert_eq!(
            request("u1", "bot.localhost", "upload.localhost", &file()).to_xml(),
            "<iq type='get' from='bot.localhost' to='upload.localhost' id='u1'>\
             <request xmlns='urn:xmpp:http:upload:0' filename='a b.png' size='3' content-type='image/png'/></iq>"
        );
    }

    #[test]
    fn a_slot_keeps_only_the_headers_xep_0363_allows() {
        let answer = parse(
            "<iq type='result' id='u1'><slot xmlns='urn:xmpp:http:upload:0'>\
             <put url='https://up.example/put/1'><header name='Authorization'>Basic x</header>\
             <header name='Cookie'>c=1</header><header name='Host'>evil</header>\
             <header name='Expires'>Tue</header></put><get url='https://up.example/get/1'/></slot></iq>",
        )
        .unwrap();
        let slot = read(&answer).unwrap();
        assert_eq!(slot.put, "https://up.example/put/1");
        assert_eq!(slot.get, "https://up.example/get/1");
        assert_eq!(
            slot.headers,
            [
                ("authorization".into(), "Basic x".into()),
                ("cookie".into(), "c=1".into()),
                ("expires".into(), "Tue".into())
            ]
        );
        assert_eq!(
            format!("{slot:?}"),
            "Slot { get: \"https://up.example/get/1\", .. }"
        );
    }

    #[test]
    fn a_bad_slot_or_a_refusal_says_which() {
        for (xml, expected) in [
            ("<iq type='result'/>", "Unavailable"),
            ("<iq type='result'><slot xmlns='urn:xmpp:http:upload:0'><put url='ftp://x'/><get url='https://x'/></slot></iq>", "Unavailable"),
            ("<iq type='error'><error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
              <file-too-large xmlns='urn:xmpp:http:upload:0'><max-file-size>10</max-file-size></file-too-large></error></iq>", "TooLarge"),
            ("<iq type='error'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
              <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>quota</text></error></iq>", "Quota"),
            ("<iq type='error'><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", "Forbidden"),
            ("<iq type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", "Unavailable"),
        ] {
            let refused = read(&parse(xml).unwrap()).unwrap_err();
            assert!(format!("{refused:?}").starts_with(expected), "{xml}: {refused:?}");
        }
        let quota = read(&parse("<iq type='error'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
              <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>quota</text></error></iq>").unwrap()).unwrap_err();
        assert_eq!(
            quota.to_string(),
            "the upload service refused the slot (resource-constraint: quota)"
        );
    }
}
