//! The two JID operations this module needs. JIDs reaching it come from
//! Prosody (already prepped) or from the web service (checked only by host).

/// `node@host/resource` → `node@host`.
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// `node@host/resource` → `host`.
pub fn host(jid: &str) -> &str {
    let bare = bare(jid);
    bare.rsplit_once('@').map_or(bare, |(_, host)| host)
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
    }
}
