//! Standard Webhooks request signing: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 over `id.timestamp.body`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The prefix of a secret given in the Standard Webhooks form.
const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Error, PartialEq, Eq)]
#[error("component_post_secret: a whsec_ secret must be base64 after the prefix")]
pub struct SecretError;

/// A signing key. Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// `whsec_<base64>` is decoded; any other string is used as it is.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => BASE64.decode(encoded).map(Secret).map_err(|_| SecretError),
            None => Ok(Secret(text.as_bytes().to_vec())),
        }
    }

    fn sign(&self, content: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(content);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` value: one `v1,<sig>` per secret, space
/// separated, so a receiver can rotate keys.
pub fn signature(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    secrets
        .iter()
        .map(|s| s.sign(&content))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh delivery id, kept across every attempt of one stanza.
pub fn delivery_id() -> String {
    format!("msg_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // The example from the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn several_secrets_give_several_signatures() {
        let a = Secret::parse("plain secret").unwrap();
        let b = Secret::parse("whsec_c2VjcmV0").unwrap();
        let both = signature(&[a.clone(), b.clone()], "id", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(
            parts,
            [
                signature(&[a], "id", 1, b"{}"),
                signature(&[b], "id", 1, b"{}")
            ]
        );
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
    }

    #[test]
    fn whsec_secret_is_base64_decoded() {
        assert_eq!(Secret::parse("whsec_c2VjcmV0").unwrap().0, b"secret");
        assert_eq!(Secret::parse("whsec_!!").unwrap_err(), SecretError);
        assert_eq!(
            format!("{:?}", Secret::parse("hidden").unwrap()),
            "Secret(..)"
        );
    }

    #[test]
    fn delivery_ids_differ() {
        let a = delivery_id();
        assert!(a.starts_with("msg_") && a.len() == 36);
        assert_ne!(a, delivery_id());
    }
}
