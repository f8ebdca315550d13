//! JIDs as Prosody reads them (RFC 7622 with the stringprep profiles of RFC
//! 6122, as `util.jid`): split at the first `@` and the first `/` after
//! it, each part prepared. JIDs from Prosody are prepared already; those
//! a web service gives go through [`prep`] before they leave the module.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// A part longer than this is refused, as Prosody's stringprep does.
const MAX_PART: usize = 1023;

/// `node@domain/resource`, split as Prosody splits: the node is what comes
/// before the first `@` when no `/` does; the domain runs to the first `/`
/// and holds no `@`; the resource is the rest. Every present part is
/// non-empty; anything else is not a JID.
pub fn split(jid: &str) -> Option<(Option<&str>, &str, Option<&str>)> {
    let (bare, resource) = match jid.split_once('/') {
        Some((bare, resource)) => (bare, Some(resource)),
        None => (jid, None),
    };
    let (node, domain) = match bare.split_once('@') {
        Some((node, domain)) => (Some(node), domain),
        None => (None, bare),
    };
    let empty = |part: Option<&str>| part.is_some_and(str::is_empty);
    if domain.is_empty() || domain.contains('@') || empty(node) || empty(resource) {
        return None;
    }
    Some((node, domain, resource))
}

/// The JID prepared as Prosody's `jid.prep` does (nodeprep, nameprep
/// without a trailing dot, resourceprep), or `None` when it is not a valid
/// JID: an empty or over-long part, a character a profile prohibits (bidi
/// overrides, controls, spaces in a node, ...).
pub fn prep(jid: &str) -> Option<String> {
    let (node, domain, resource) = split(jid)?;
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let domain = Profile::Name.prepare(domain)?;
    // Nameprep maps a fullwidth '@' or '/' to the ASCII one, and a domain
    // may still end in '.' (it ended in "..", or a mapped character): Prosody
    // lets those out, though they no longer read back as the same parts.
    if domain.contains(['@', '/']) || domain.ends_with('.') {
        return None;
    }
    let mut jid = String::with_capacity(domain.len() + 32);
    if let Some(node) = node {
        jid.push_str(&Profile::Node.prepare(node)?);
        jid.push('@');
    }
    jid.push_str(&domain);
    if let Some(resource) = resource {
        jid.push('/');
        jid.push_str(&Profile::Resource.prepare(resource)?);
    }
    Some(jid)
}

/// The stringprep profiles of a JID's parts (RFC 3454 with RFC 3491 and
/// RFC 3920's appendices A and B), as Prosody applies them: unassigned code
/// points are allowed (a nick or resource may hold an emoji newer than
/// Unicode 3.2), the rest of each profile holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Node,
    Name,
    Resource,
}

/// What nodeprep prohibits beyond the common tables.
const NODE_PROHIBITED: [char; 8] = ['"', '&', '\'', '/', ':', '<', '>', '@'];

impl Profile {
    /// The prepared part, or `None`: prohibited, empty or over-long.
    fn prepare(self, part: &str) -> Option<Cow<'_, str>> {
        use stringprep::tables as t;
        if part.len() > MAX_PART || part.contains('\0') {
            return None;
        }
        let simple = |c: char| match self {
            Profile::Node => c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c),
            Profile::Name => c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c),
            Profile::Resource => matches!(c, '!'..='~'),
        };
        // The common case: nothing to map, nothing prohibited.
        if !part.is_empty() && part.chars().all(simple) {
            return Some(Cow::Borrowed(part));
        }
        let kept = part.chars().filter(|&c| !t::commonly_mapped_to_nothing(c));
        let normalized = match self {
            Profile::Resource => nfkc_unicode_3_2(kept),
            _ => nfkc_unicode_3_2(kept.flat_map(t::case_fold_for_nfkc)),
        };
        let prohibited = |c: char| {
            (self == Profile::Node && (t::ascii_space_character(c) || NODE_PROHIBITED.contains(&c)))
                || (self != Profile::Name && t::ascii_control_character(c))
                || t::non_ascii_space_character(c)
                || t::non_ascii_control_character(c)
                || t::private_use(c)
                || t::non_character_code_point(c)
                || t::surrogate_code(c)
                || t::inappropriate_for_plain_text(c)
                || t::inappropriate_for_canonical_representation(c)
                || t::change_display_properties_or_deprecated(c)
                || t::tagging_character(c)
        };
        if normalized.is_empty()
            || normalized.len() > MAX_PART
            || normalized.chars().any(prohibited)
            || bidi_prohibited(&normalized)
        {
            return None;
        }
        Some(Cow::Owned(normalized))
    }
}

/// NFKC as stringprep (Unicode 3.2) does it: a character unassigned in
/// 3.2 (an emoji, a newer compatibility letter such as U+1F140) has no
/// decomposition there and is left as it is, and nothing composes across
/// it; the runs between such characters are normalised as usual.
fn nfkc_unicode_3_2(chars: impl Iterator<Item = char>) -> String {
    let mut normalized = String::new();
    let mut run = String::new();
    for c in chars {
        if stringprep::tables::unassigned_code_point(c) {
            normalized.extend(run.nfkc());
            run.clear();
            normalized.push(c);
        } else {
            run.push(c);
        }
    }
    normalized.extend(run.nfkc());
    normalized
}

/// RFC 3454 §6: text with right-to-left characters holds no left-to-right
/// ones, and starts and ends with a right-to-left one.
fn bidi_prohibited(text: &str) -> bool {
    use stringprep::tables::{bidi_l, bidi_r_or_al};
    if !text.contains(bidi_r_or_al) {
        return false;
    }
    let ends_rtl = text.chars().next().is_some_and(bidi_r_or_al)
        && text.chars().next_back().is_some_and(bidi_r_or_al);
    text.contains(bidi_l) || !ends_rtl
}

/// `node@host/resource` → `node@host`.
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// `node@host/resource` → `host`.
pub fn host(jid: &str) -> &str {
    let bare = bare(jid);
    bare.split_once('@').map_or(bare, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(bare("a@b/c/d"), "a@b");
        assert_eq!(bare("b"), "b");
        assert_eq!(host("a@b/c@d"), "b");
        assert_eq!(host("b/r"), "b");
        assert_eq!(host("b"), "b");
        assert_eq!(host(""), "");
        // The first '@', as RFC 7622 and Prosody: not a JID at bot.localhost.
        assert_eq!(
            host("victim@localhost@bot.localhost"),
            "localhost@bot.localhost"
        );
        assert_eq!(split("a/b@c"), Some((None, "a", Some("b@c"))));
    }

    #[test]
    fn prep_normalises_valid_jids() {
        assert_eq!(
            prep("Alice@Example.COM/Phone").as_deref(),
            Some("alice@example.com/Phone")
        );
        assert_eq!(prep("example.com.").as_deref(), Some("example.com"));
        assert_eq!(
            prep("room@muc.example/nick with space").as_deref(),
            Some("room@muc.example/nick with space")
        );
        assert_eq!(
            prep("ÄÖ@bücher.example").as_deref(),
            Some("äö@bücher.example")
        );
        // Unassigned in Unicode 3.2, allowed as Prosody allows them, and
        // left as they are (U+1F140 is a Q in later Unicode).
        assert_eq!(
            prep("room@muc.example/😀 Bob").as_deref(),
            Some("room@muc.example/😀 Bob")
        );
        assert_eq!(prep("p\u{1f140}p@x").as_deref(), Some("p\u{1f140}p@x"));
    }

    #[test]
    fn prep_refuses_what_is_not_a_jid() {
        for bad in [
            "",
            "@bot.localhost",
            "victim@localhost@bot.localhost",
            "a@",
            "a@b/",
            "/r",
            ".",
            "a b@example.com",
            "\u{202e}evil@example.com",
            "a@exa\u{0}mple.com",
            "a\"b@example.com",
            "a@b/\u{7}",
            "a@x\u{ff20}y",
            "\u{ff0f}",
            "a@b..",
            "a@b.\u{ad}",
        ] {
            assert_eq!(prep(bad), None, "{bad:?}");
        }
        let long = "a".repeat(MAX_PART + 1);
        assert_eq!(prep(&format!("{long}@example.com")), None);
        assert!(prep(&format!("{}@example.com", &long[1..])).is_some());
    }
}
