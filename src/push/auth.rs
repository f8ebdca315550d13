//! Who may push (docs/contract.md §10): a bearer token, or a Standard
//! Webhooks signature (`v1` with the token as secret, `v1a` with the
//! public key).

use std::fmt;

use super::{refuse, PushError, TIMESTAMP_TOLERANCE_SECS};
use crate::signing::{self, PublicKey, Secret, MAX_SIGNATURES_CHECKED};

/// The credentials a push request carries. `Debug` shows which are there,
/// never their text.
#[derive(Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
}

/// What the push endpoint accepts: the token (as a bearer token, or as the
/// secret of a `v1` signature) and the public key of `v1a` signatures. At
/// least one is set, or the endpoint is off.
#[derive(Clone, Copy)]
pub struct PushKeys<'a> {
    pub token: Option<&'a str>,
    pub public_key: Option<&'a PublicKey>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authorization", &self.authorization.map(|_| ".."))
            .field("webhook_id", &self.webhook_id)
            .field("webhook_timestamp", &self.webhook_timestamp)
            .field("webhook_signature", &self.webhook_signature.map(|_| ".."))
            .finish()
    }
}

impl fmt::Debug for PushKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushKeys")
            .field("token", &self.token.map(|_| ".."))
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// How a push proved who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorized<'a> {
    Bearer,
    /// By a signature over `webhook-id` and `webhook-timestamp`: the id
    /// may be used once (see [`super::limits::Replays`]).
    Signed {
        id: &'a str,
        timestamp: u64,
    },
}

/// `Authorization: Bearer <token>`, or a Standard Webhooks signature: `v1`
/// made with the token as its secret (compared in constant time), or `v1a`
/// made with the secret half of the public key.
/// At most [`MAX_SIGNATURES_CHECKED`] of each kind are checked: enough
/// for a key rotation, and a request listing a hundred costs no more.
pub fn authorize<'a>(
    keys: PushKeys,
    credentials: &Credentials<'a>,
    body: &[u8],
    now_secs: u64,
) -> Result<Authorized<'a>, PushError> {
    if let Some(authorization) = credentials.authorization {
        let given = authorization
            .strip_prefix("Bearer ")
            .ok_or_else(|| refuse(401, "Authorization must be 'Bearer <token>'"))?;
        let Some(token) = keys.token else {
            return Err(refuse(
                401,
                "no bearer token is accepted here: sign the push (v1a)",
            ));
        };
        return if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            Ok(Authorized::Bearer)
        } else {
            Err(refuse(403, "wrong token"))
        };
    }
    let Some(signatures) = credentials.webhook_signature else {
        return Err(refuse(
            401,
            "missing credentials: send Authorization: Bearer <token> or a webhook signature",
        ));
    };
    let (Some(id), Some(timestamp)) = (credentials.webhook_id, credentials.webhook_timestamp)
    else {
        return Err(refuse(
            401,
            "a signed push needs webhook-id and webhook-timestamp",
        ));
    };
    let timestamp: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| refuse(401, "webhook-timestamp must be Unix seconds"))?;
    if timestamp.abs_diff(now_secs) > TIMESTAMP_TOLERANCE_SECS {
        return Err(refuse(401, "webhook-timestamp is too far from now"));
    }
    let symmetric = match keys.token {
        Some(token) => {
            // Checked at load (config.rs): a token that is not valid
            // `whsec_` base64 fails the load.
            let secret = Secret::parse(token).map_err(|e| refuse(500, e.to_string()))?;
            let expected = signing::signature(&[secret], None, id, timestamp, body);
            signatures
                .split(' ')
                .filter(|given| given.starts_with("v1,"))
                .take(MAX_SIGNATURES_CHECKED)
                .any(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
        }
        None => false,
    };
    let asymmetric = keys
        .public_key
        .is_some_and(|key| key.verifies(signatures, id, timestamp, body));
    if symmetric || asymmetric {
        Ok(Authorized::Signed { id, timestamp })
    } else {
        Err(refuse(403, "bad signature"))
    }
}

/// Equal bytes, in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let credentials = Credentials {
            authorization: Some("Bearer s3cret-token-1234"),
            webhook_signature: Some("v1,c2VjcmV0"),
            webhook_id: Some("msg_1"),
            ..Default::default()
        };
        let shown = format!("{credentials:?} {TOKEN_ONLY:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        assert!(shown.contains("msg_1"), "{shown}");
    }

    #[test]
    fn bearer_token() {
        let creds = |a| Credentials {
            authorization: Some(a),
            ..Default::default()
        };
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Bearer s3cret"), b"", 0),
            Ok(Authorized::Bearer)
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Bearer wrong"), b"", 0)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Bearer s3cre"), b"", 0)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("Basic xyz"), b"", 0)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &Credentials::default(), b"", 0)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn webhook_signature() {
        let body = br#"{"to": "u@h"}"#;
        let secret = Secret::parse("s3cret").unwrap();
        let good = signing::signature(&[secret], None, "m1", 1000, body);
        let creds = |signature: &'static str, ts: &'static str| Credentials {
            webhook_id: Some("m1"),
            webhook_timestamp: Some(ts),
            webhook_signature: Some(signature),
            ..Default::default()
        };
        let good: &'static str = Box::leak(format!("v1,other {good}").into_boxed_str());
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "1000"), body, 1100),
            Ok(Authorized::Signed {
                id: "m1",
                timestamp: 1000
            })
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "1000"), b"tampered", 1100)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "1000"), body, 5000)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds("v1,nope", "1000"), body, 1000)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(good, "soon"), body, 1000)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn v1a_signature_with_the_public_key() {
        let key = signing_key();
        let public = PublicKey::parse(&key.public_key(), "component_push_public_key").unwrap();
        let body = br#"{"to": "u@h"}"#;
        let signed = signing::signature(&[], Some(&key), "m1", 1000, body);
        let creds = |signature: &str| Credentials {
            webhook_id: Some("m1"),
            webhook_timestamp: Some("1000"),
            webhook_signature: Some(Box::leak(signature.to_owned().into_boxed_str())),
            ..Default::default()
        };
        let key_only = PushKeys {
            token: None,
            public_key: Some(&public),
        };
        let both = PushKeys {
            token: Some("s3cret"),
            public_key: Some(&public),
        };
        assert_eq!(
            authorize(key_only, &creds(&signed), body, 1000),
            Ok(Authorized::Signed {
                id: "m1",
                timestamp: 1000
            })
        );
        assert_eq!(
            authorize(both, &creds(&format!("v1,x {signed}")), body, 1000),
            Ok(Authorized::Signed {
                id: "m1",
                timestamp: 1000
            })
        );
        assert_eq!(
            authorize(key_only, &creds(&signed), b"tampered", 1000)
                .unwrap_err()
                .status,
            403
        );
        // A v1a signature is no good without the public key.
        assert_eq!(
            authorize(TOKEN_ONLY, &creds(&signed), body, 1000)
                .unwrap_err()
                .status,
            403
        );
        // Nor is a v1 one without the token, or a bearer token.
        let v1 = signing::signature(&[Secret::parse("s3cret").unwrap()], None, "m1", 1000, body);
        assert_eq!(
            authorize(key_only, &creds(&v1), body, 1000)
                .unwrap_err()
                .status,
            403
        );
        let bearer = Credentials {
            authorization: Some("Bearer s3cret"),
            ..Default::default()
        };
        assert_eq!(
            authorize(key_only, &bearer, body, 1000).unwrap_err().status,
            401
        );
    }

    fn signing_key() -> signing::SigningKey {
        signing::SigningKey::parse("whsk_TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs=", "k")
            .unwrap()
    }

    const TOKEN_ONLY: PushKeys = PushKeys {
        token: Some("s3cret"),
        public_key: None,
    };
}
