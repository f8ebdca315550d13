//! Finding the upload service (docs/contract.md §14) when
//! `component_post_upload_service` is not set: disco#items of the domain
//! above the component's, then disco#info of each item in the order listed
//! until one offers `urn:xmpp:http:upload:0`.

use super::slot::XMLNS as XMLNS_UPLOAD;
use crate::jid;
use crate::xml::Element;

const XMLNS_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const XMLNS_INFO: &str = "http://jabber.org/protocol/disco#info";

/// The domain whose items are asked: the component's without its first
/// label (`example.com` for `bot.example.com`); none for a one-label one.
pub fn parent(host: &str) -> Option<&str> {
    host.split_once('.')
        .map(|(_, parent)| parent)
        .filter(|p| !p.is_empty())
}

fn query(kind: &str, id: &str, host: &str, to: &str, xmlns: &str) -> Element {
    Element::new("iq")
        .with_attr("type", kind)
        .with_attr("from", host)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_child(Element::new("query").with_attr("xmlns", xmlns))
}

pub fn items_request(id: &str, host: &str, domain: &str) -> Element {
    query("get", id, host, domain, XMLNS_ITEMS)
}

pub fn info_request(id: &str, host: &str, item: &str) -> Element {
    query("get", id, host, item, XMLNS_INFO)
}

/// The JIDs a disco#items answer lists, in order, but `host` (the
/// component itself) and items with a node (not services).
pub fn items(answer: &Element, host: &str) -> Vec<String> {
    let Some(query) = answer.child("query", Some(XMLNS_ITEMS)) else {
        return Vec::new();
    };
    query
        .elements()
        .filter(|i| i.name == "item" && i.attr("node").is_none())
        .filter_map(|i| i.attr("jid"))
        .filter(|j| !jid::bare(j).eq_ignore_ascii_case(host))
        .map(str::to_owned)
        .collect()
}

/// Whether a disco#info answer offers HTTP upload.
pub fn offers_upload(answer: &Element) -> bool {
    answer.attr("type") == Some("result")
        && answer.child("query", Some(XMLNS_INFO)).is_some_and(|q| {
            q.elements()
                .any(|f| f.name == "feature" && f.attr("var") == Some(XMLNS_UPLOAD))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    #[test]
    fn the_parent_domain_drops_the_first_label() {
        assert_eq!(parent("bot.example.com"), Some("example.com"));
        assert_eq!(parent("bot.localhost"), Some("localhost"));
        assert_eq!(parent("localhost"), None);
        assert_eq!(parent("bot."), None);
    }

    #[test]
    fn items_in_order_without_the_component_or_nodes() {
        let answer = parse(
            "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#items'>\
             <item jid='conference.localhost'/><item jid='bot.localhost'/>\
             <item jid='localhost' node='x'/><item jid='upload.localhost'/></query></iq>",
        )
        .unwrap();
        assert_eq!(
            items(&answer, "bot.localhost"),
            ["conference.localhost", "upload.localhost"]
        );
        assert!(items(&parse("<iq type='error'/>").unwrap(), "bot.localhost").is_empty());
    }

    #[test]
    fn a_service_offers_upload_by_its_feature() {
        let info = |feature: &str| {
            parse(&format!(
                "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info'>\
                 <feature var='{feature}'/></query></iq>"
            ))
            .unwrap()
        };
        assert!(offers_upload(&info("urn:xmpp:http:upload:0")));
        assert!(!offers_upload(&info("http://jabber.org/protocol/muc")));
        assert!(!offers_upload(&parse("<iq type='error'/>").unwrap()));
    }
}
