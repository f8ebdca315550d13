//! Whether a room message mentions the bot (docs/contract.md §12): its
//! nick as a word of the body, whatever the case (so also `@Nick` and
//! `Nick:`), or a XEP-0372 mention of its occupant JID.

use crate::conversion::ns::REFERENCE;
use crate::jid;
use crate::xml::Element;

/// Whether `message`, in `room`, mentions the occupant `nick`.
pub fn mentions(message: &Element, room: &str, nick: &str) -> bool {
    let in_body = message
        .child("body", None)
        .is_some_and(|body| has_word(&body.text(), nick));
    in_body
        || message
            .elements()
            .filter(|c| c.name == "reference" && c.attr("xmlns") == Some(REFERENCE))
            .any(|r| r.attr("type") == Some("mention") && names(r.attr("uri"), room, nick))
}

/// Whether `word` is in `text` between word boundaries: any character that
/// is not a Unicode letter or digit, or either end.
fn has_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let (text, word) = (text.to_lowercase(), word.to_lowercase());
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(&word).any(|(at, _)| {
        boundary(text[..at].chars().next_back()) && boundary(text[at + word.len()..].chars().next())
    })
}

/// Whether a reference's `xmpp:` URI is the occupant `room/nick`.
fn names(uri: Option<&str>, room: &str, nick: &str) -> bool {
    let Some(address) = uri.and_then(|u| u.strip_prefix("xmpp:")) else {
        return false;
    };
    let address = percent_decoded(address.split(['?', '#']).next().unwrap_or_default());
    match address.split_once('/') {
        Some((bare, resource)) => bare.eq_ignore_ascii_case(jid::bare(room)) && resource == nick,
        None => false,
    }
}

/// `%XX` escapes decoded (RFC 3986); invalid ones and non-UTF-8 left as
/// they are.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn said(body: &str) -> bool {
        let message = Element::new("message").with_child(Element::new("body").with_text(body));
        mentions(&message, "lobby@muc.h", "Helper")
    }

    #[test]
    fn the_nick_as_a_word_whatever_the_case() {
        for yes in [
            "helper, what time is it?",
            "Hey @Helper",
            "HELPER: status",
            "ask Helper.",
            "«Helper»",
            "Helper",
        ] {
            assert!(said(yes), "{yes}");
        }
        for no in [
            "helpers are nice",
            "unhelper",
            "Helper2 is another bot",
            "help",
            "Helperé",
        ] {
            assert!(!said(no), "{no}");
        }
        // Boundaries are Unicode letters and digits, not ASCII only.
        let message =
            Element::new("message").with_child(Element::new("body").with_text("Ünïcödé: hi"));
        assert!(mentions(&message, "r@m", "ünïcödé"));
        assert!(!mentions(&message, "r@m", "cödé"));
    }

    #[test]
    fn a_reference_to_the_occupant_jid() {
        let with = |uri: &str, kind: &str| {
            parse(&format!(
                "<message><body>hi there</body><reference xmlns='urn:xmpp:reference:0' \
                 type='{kind}' uri='{uri}' begin='0' end='2'/></message>"
            ))
            .unwrap()
        };
        let room = "lobby@muc.h";
        assert!(mentions(
            &with("xmpp:lobby@muc.h/Helper", "mention"),
            room,
            "Helper"
        ));
        assert!(mentions(
            &with("xmpp:Lobby@muc.h/Help%20Bot", "mention"),
            room,
            "Help Bot"
        ));
        assert!(!mentions(
            &with("xmpp:lobby@muc.h/Helper", "data"),
            room,
            "Helper"
        ));
        assert!(!mentions(
            &with("xmpp:lobby@muc.h/Other", "mention"),
            room,
            "Helper"
        ));
        assert!(!mentions(
            &with("xmpp:other@muc.h/Helper", "mention"),
            room,
            "Helper"
        ));
        assert!(!mentions(
            &with("https://lobby@muc.h/Helper", "mention"),
            room,
            "Helper"
        ));
        assert_eq!(percent_decoded("a%2Fb%zz%e2%9c%93"), "a/b%zz✓");
    }
}
