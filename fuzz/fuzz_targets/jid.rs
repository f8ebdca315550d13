//! A JID the web service gives → the JID that leaves the module: no panic;
//! what `prep` accepts is a fixed point (prepared again, unchanged), splits
//! into non-empty parts, and holds none of the characters that once got
//! through (a second '@' in the domain, a bidi override, a NUL). Its
//! agreement with Prosody's own util.jid.prep is checked in
//! lua/spec/jid_spec.lua, against Prosody itself.
#![no_main]

use component_http::jid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(given) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(prepped) = jid::prep(given) {
        let (node, domain, resource) = jid::split(&prepped).expect("a prepared JID splits");
        assert_eq!(
            jid::prep(&prepped).as_deref(),
            Some(prepped.as_str()),
            "{given:?}"
        );
        assert!(!domain.contains('@'));
        for part in [node, Some(domain), resource].into_iter().flatten() {
            assert!(!part.is_empty() && part.len() <= 1023, "{given:?}");
        }
        assert!(
            !prepped.contains(['\u{202e}', '\u{202d}', '\0']),
            "{given:?} → {prepped:?}"
        );
    }
});
