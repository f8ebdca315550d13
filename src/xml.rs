//! A small XML element tree shaped like Prosody's `util.stanza`: serialised the
//! way Prosody serialises, parsed from the XML a web service sends back.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use thiserror::Error;

/// Deeper nesting than this is refused: no real stanza needs it, and it keeps
/// every recursive walk over a tree bounded.
pub const MAX_DEPTH: usize = 64;

/// More attributes on one element than this are refused, for the same
/// reason (a real stanza's elements have a handful).
pub const MAX_ATTRIBUTES: usize = 128;

/// Namespaces a stream declares as its default; Prosody's parser leaves them
/// off a top-level stanza, so parsed replies do the same.
const STREAM_NAMESPACES: [&str; 3] = ["jabber:client", "jabber:server", "jabber:component:accept"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    /// In document order; Prosody keeps attributes in a hash, so order carries
    /// no meaning, only reproducibility.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    #[error("no element in the XML")]
    Empty,
    #[error("more than one top-level element")]
    TrailingContent,
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not allowed in XML: {0}")]
    NotXml(String),
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Builder: sets an attribute (replacing an earlier value).
    pub fn with_attr(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Builder: appends a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends a text node.
    /// Adds a text node (none for empty text, which XML cannot tell from
    /// no text: `<a></a>` parses as `<a/>`).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        if !text.is_empty() {
            self.children.push(Node::Text(text));
        }
        self
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key.to_owned(), value)),
        }
    }

    pub fn remove_attr(&mut self, key: &str) {
        self.attrs.retain(|(k, _)| k != key);
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element called `name` (in namespace `xmlns`, when given;
    /// a child with no `xmlns` inherits its parent's).
    pub fn child(&self, name: &str, xmlns: Option<&str>) -> Option<&Element> {
        self.elements().find(|e| {
            e.name == name
                && xmlns.is_none_or(|ns| e.attr("xmlns").or(self.attr("xmlns")) == Some(ns))
        })
    }

    /// Concatenated text of this element's direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Whether every name, attribute and text is one XML can carry: no
    /// character outside XML 1.0's (a NUL, most control characters) and no
    /// name that would not parse as one. A stanza that fails this would make
    /// its recipient's parser close the stream.
    pub fn check(&self) -> Result<(), XmlError> {
        check_name(&self.name)?;
        for (key, value) in &self.attrs {
            match key.split_once('\u{1}') {
                // Prosody's key of a namespaced attribute: "namespace\1name".
                Some((ns, local)) if !ns.is_empty() && !local.contains(':') => {
                    check_chars(ns, "an attribute's namespace")?;
                    check_name(local)?;
                }
                _ => check_name(key)?,
            }
            check_chars(value, "an attribute value")?;
        }
        for child in &self.children {
            match child {
                Node::Element(element) => element.check()?,
                Node::Text(text) => check_chars(text, "text")?,
            }
        }
        Ok(())
    }

    /// Serialises exactly as Prosody's `tostring(stanza)` does.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_xml(&mut out, None);
        out
    }

    /// Its start tag alone, as Prosody's `stanza:top_tag()`: for log lines.
    pub fn top_tag(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_start(&mut out, None);
        out.push('>');
        out
    }

    fn write_xml(&self, out: &mut String, parent_ns: Option<&str>) {
        self.write_start(out, parent_ns);
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        let own_ns = self.attr("xmlns");
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_xml(out, own_ns),
                Node::Text(t) => escape_into(out, t),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    /// `<name attrs`, unclosed.
    fn write_start(&self, out: &mut String, parent_ns: Option<&str>) {
        out.push('<');
        out.push_str(&self.name);
        let mut ns_id = 0;
        for (key, value) in &self.attrs {
            if let Some((ns, local)) = key.split_once('\u{1}') {
                // Prosody's key for a namespaced attribute is "namespace\1name".
                ns_id += 1;
                out.push_str(&format!(" xmlns:ns{ns_id}='"));
                escape_into(out, ns);
                out.push_str(&format!("' ns{ns_id}:{local}='"));
            } else if key == "xmlns" && Some(value.as_str()) == parent_ns {
                continue;
            } else {
                out.push(' ');
                out.push_str(key);
                out.push_str("='");
            }
            escape_into(out, value);
            out.push('\'');
        }
    }
}

/// XML 1.0's `Char`: tab, newline, carriage return, and the rest of
/// Unicode but the other C0 controls, surrogates and U+FFFE/U+FFFF.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_chars(text: &str, what: &str) -> Result<(), XmlError> {
    match text.chars().find(|c| !is_xml_char(*c)) {
        Some(c) => Err(XmlError::NotXml(format!("U+{:04X} in {what}", c as u32))),
        None => Ok(()),
    }
}

/// A name as a start tag can carry it (a simplified XML `Name`: not empty,
/// no space, markup or quote, not starting with a digit, '-' or '.').
fn check_name(name: &str) -> Result<(), XmlError> {
    let bad = |c: char| c.is_whitespace() || "<>&'\"=/!?".contains(c) || !is_xml_char(c);
    let first_bad = |c: char| c.is_ascii_digit() || c == '-' || c == '.';
    match name.chars().next() {
        Some(first) if !first_bad(first) && !name.chars().any(bad) => Ok(()),
        _ => Err(XmlError::NotXml(format!("the name {name:?}"))),
    }
}

/// Prosody's `xml_escape`: the five predefined entities, nothing else.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
}

/// Parses one element (a stanza) from `xml`. An XML declaration and
/// surrounding whitespace are allowed; anything else around it is an error.
pub fn parse(xml: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let syntax = |e: &dyn std::fmt::Display| XmlError::Syntax(e.to_string());
    loop {
        let event = reader.read_event().map_err(|e| syntax(&e))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                let _ = start;
                return Err(XmlError::TrailingContent);
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push(element_from_start(&start)?);
            }
            Event::Empty(start) => {
                let element = element_from_start(&start)?;
                close_element(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches.
                let element = stack.pop().ok_or_else(|| syntax(&"unexpected end tag"))?;
                close_element(element, &mut stack, &mut root);
            }
            Event::Text(text) => {
                let decoded = text.decode().map_err(|e| syntax(&e))?;
                push_text(&mut stack, &decoded)?;
            }
            Event::CData(cdata) => {
                let decoded = cdata.decode().map_err(|e| syntax(&e))?;
                push_text(&mut stack, &decoded)?;
            }
            Event::GeneralRef(reference) => {
                let text = match reference.resolve_char_ref().map_err(|e| syntax(&e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| syntax(&e))?;
                        predefined_entity(&name)
                            .ok_or_else(|| syntax(&format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &text)?;
            }
            Event::Decl(_) | Event::Comment(_) => {}
            Event::PI(_) | Event::DocType(_) => {
                return Err(syntax(&"processing instructions and DTDs are not allowed"))
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(syntax(&format!(
            "unclosed element <{}>",
            stack[stack.len() - 1].name
        )));
    }
    let mut root = root.ok_or(XmlError::Empty)?;
    root.check()?;
    if root
        .attr("xmlns")
        .is_some_and(|ns| STREAM_NAMESPACES.contains(&ns))
    {
        root.remove_attr("xmlns");
    }
    Ok(root)
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn element_from_start(start: &BytesStart) -> Result<Element, XmlError> {
    let syntax = |e: &dyn std::fmt::Display| XmlError::Syntax(e.to_string());
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|e| syntax(&e))?
        .to_owned();
    let mut element = Element::new(name);
    // quick-xml's own duplicate check compares each attribute with every
    // one before it; this one is linear.
    let mut seen = std::collections::HashSet::new();
    for attr in start.attributes().with_checks(false) {
        let attr = attr.map_err(|e| syntax(&e))?;
        if element.attrs.len() == MAX_ATTRIBUTES {
            return Err(syntax(&format!("more than {MAX_ATTRIBUTES} attributes")));
        }
        let key = std::str::from_utf8(attr.key.as_ref()).map_err(|e| syntax(&e))?;
        // Checked here, as written: the tree's check reads "\1" in a key as
        // Prosody's namespaced form, which XML text cannot carry.
        check_name(key)?;
        if !seen.insert(attr.key) {
            return Err(syntax(&format!("duplicate attribute {key}")));
        }
        let value = attr.unescape_value().map_err(|e| syntax(&e))?;
        element.attrs.push((key.to_owned(), value.into_owned()));
    }
    Ok(element)
}

fn close_element(mut element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => {
            // An xmlns the same as the parent's says nothing: dropped, as
            // serialising drops it, so that both give the same tree.
            if element.attr("xmlns").is_some() && element.attr("xmlns") == parent.attr("xmlns") {
                element.remove_attr("xmlns");
            }
            parent.children.push(Node::Element(element))
        }
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        // An empty CDATA section is no text, as in Prosody's parser (expat).
        Some(_) if text.is_empty() => Ok(()),
        Some(parent) => {
            // Adjacent text (split by entity references) is one text node, as
            // in Prosody's parser.
            if let Some(Node::Text(last)) = parent.children.last_mut() {
                last.push_str(text);
            } else {
                parent.children.push(Node::Text(text.to_owned()));
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError::Syntax("text outside the element".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Found by fuzz/fuzz_targets/xml_roundtrip.rs and push.rs: a NUL or a
    // control character (written, or as a character reference) and names
    // that would not parse again were accepted.
    #[test]
    fn what_xml_cannot_carry_is_refused() {
        for bad in [
            "<a>\u{0}</a>",
            "<a>&#1;</a>",
            "<a b='\u{8}'/>",
            "<a b\u{1}c='v'/>",
            "<a\u{b}/>",
            "<a>&#xFFFE;</a>",
        ] {
            assert!(
                matches!(parse(bad), Err(XmlError::NotXml(_) | XmlError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(parse("<a b='tab\there'>line\nbreak \u{10000}</a>").is_ok());
        // Prosody's namespaced attribute keys are checked as what they
        // serialise to.
        for key in ["\u{1}local", "urn:x\u{1}a:b"] {
            assert!(
                Element::new("a").with_attr(key, "v").check().is_err(),
                "{key:?}"
            );
        }
        assert!(Element::new("a")
            .with_attr("urn:x\u{1}a", "v")
            .check()
            .is_ok());
    }

    // Found by fuzz/fuzz_targets/json_to_stanza.rs: `<a></a>` parses as `<a/>`.
    #[test]
    fn empty_text_adds_no_node() {
        assert!(Element::new("a").with_text("").children.is_empty());
    }

    // Found by fuzz/fuzz_targets/xml_roundtrip.rs (in make test): a child's
    // xmlns the same as its parent's, kept as written, was left out by
    // serialising.
    #[test]
    fn redundant_child_xmlns_is_dropped() {
        let parsed = parse("<a xmlns='urn:x'><b xmlns='urn:x'/><c xmlns='urn:y'/></a>").unwrap();
        assert_eq!(parse(&parsed.to_xml()).unwrap(), parsed);
        assert_eq!(
            parsed.to_xml(),
            "<a xmlns='urn:x'><b/><c xmlns='urn:y'/></a>"
        );
    }

    // Found by fuzz/fuzz_targets/xml_roundtrip.rs (a 5-minute run): an empty
    // CDATA section made an empty text node, which serialises to nothing.
    #[test]
    fn empty_cdata_adds_no_node() {
        let parsed = parse("<body><![CDATA[]]></body>").unwrap();
        assert!(parsed.children.is_empty());
        assert_eq!(parse(&parsed.to_xml()).unwrap(), parsed);
        let text = parse("<body>a<![CDATA[]]>b</body>").unwrap();
        assert_eq!(text.children, vec![Node::Text("ab".into())]);
    }

    #[test]
    fn serialises_like_prosody() {
        let e = Element::new("message")
            .with_attr("to", "a@b")
            .with_attr("type", "chat")
            .with_child(Element::new("body").with_text("x < y & 'q' \"z\" >"));
        assert_eq!(
            e.to_xml(),
            "<message to='a@b' type='chat'><body>x &lt; y &amp; &apos;q&apos; &quot;z&quot; &gt;</body></message>"
        );
    }

    #[test]
    fn empty_element_self_closes_and_inherited_xmlns_is_omitted() {
        let e = Element::new("iq")
            .with_attr("xmlns", "jabber:client")
            .with_child(
                Element::new("query")
                    .with_attr("xmlns", "jabber:client")
                    .with_child(Element::new("item").with_attr("xmlns", "urn:x")),
            );
        assert_eq!(
            e.to_xml(),
            "<iq xmlns='jabber:client'><query><item xmlns='urn:x'/></query></iq>"
        );
    }

    #[test]
    fn namespaced_attribute_gets_a_prefix_like_prosody() {
        let e = Element::new("x").with_attr("urn:a\u{1}b", "v");
        assert_eq!(e.to_xml(), "<x xmlns:ns1='urn:a' ns1:b='v'/>");
    }

    #[test]
    fn parse_roundtrip() {
        let xml = "<message to='a@b' type='chat'><body>hi &amp; &#x263A; <![CDATA[<raw>]]></body><x xmlns='urn:x'/></message>";
        let e = parse(xml).unwrap();
        assert_eq!(e.name, "message");
        assert_eq!(e.attr("to"), Some("a@b"));
        let body = e.child("body", None).unwrap();
        assert_eq!(body.text(), "hi & \u{263A} <raw>");
        assert_eq!(
            e.to_xml(),
            "<message to='a@b' type='chat'><body>hi &amp; \u{263A} &lt;raw&gt;</body><x xmlns='urn:x'/></message>"
        );
    }

    #[test]
    fn parse_strips_stream_namespace_on_the_stanza_only() {
        let e = parse(
            "<?xml version='1.0'?>\n<message xmlns='jabber:client'><x xmlns='urn:x'/></message>\n",
        )
        .unwrap();
        assert_eq!(e.attr("xmlns"), None);
        assert_eq!(e.child("x", Some("urn:x")).unwrap().name, "x");
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert!(matches!(parse("<a><b></a>"), Err(XmlError::Syntax(_))));
        assert!(matches!(parse("<a>"), Err(XmlError::Syntax(_))));
        assert_eq!(parse(""), Err(XmlError::Empty));
        assert_eq!(parse("  "), Err(XmlError::Empty));
        assert_eq!(parse("<a/><b/>"), Err(XmlError::TrailingContent));
        assert!(matches!(parse("text<a/>"), Err(XmlError::Syntax(_))));
        assert!(matches!(parse("<a>&foo;</a>"), Err(XmlError::Syntax(_))));
        assert!(matches!(
            parse("<a x='1' x='2'/>"),
            Err(XmlError::Syntax(_))
        ));
        assert!(matches!(
            parse("<!DOCTYPE a><a/>"),
            Err(XmlError::Syntax(_))
        ));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
    }

    #[test]
    fn attributes_are_counted_and_duplicates_found_among_many() {
        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}='{i}'")).collect::<String>();
        assert_eq!(
            parse(&format!("<a{}/>", attrs(MAX_ATTRIBUTES)))
                .unwrap()
                .attrs
                .len(),
            MAX_ATTRIBUTES
        );
        let many = parse(&format!("<a{}/>", attrs(MAX_ATTRIBUTES + 1)));
        assert!(matches!(many, Err(XmlError::Syntax(e)) if e.contains("more than 128 attributes")));
        let late = parse(&format!("<a{} a7='again'/>", attrs(100)));
        assert!(matches!(late, Err(XmlError::Syntax(e)) if e.contains("duplicate attribute a7")));
    }
}
