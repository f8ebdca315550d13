//! Standard Webhooks request signing: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`, with a shared secret (`v1,` + base64 HMAC-SHA256
//! over `id.timestamp.body`) or an ed25519 key pair (`v1a,` + base64
//! signature over the same content), so a receiver can verify with a
//! public key and hold nothing that could sign.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signer, Verifier};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The prefix of a secret given in the Standard Webhooks form.
const SECRET_PREFIX: &str = "whsec_";
/// The prefixes of an ed25519 signing key and of its public key.
const SIGNING_KEY_PREFIX: &str = "whsk_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";

#[derive(Debug, Error, PartialEq, Eq)]
#[error("component_post_secret: a whsec_ secret must be base64 after the prefix")]
pub struct SecretError;

/// A key that cannot be read. Says which option, never the key.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{option} must be {expected}")]
pub struct KeyError {
    pub option: &'static str,
    pub expected: &'static str,
}

/// An ed25519 signing key (`whsk_` + base64 of its 32-byte seed, or of the
/// 64 bytes of seed and public key). Never shown in `Debug` output or logs.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn parse(text: &str, option: &'static str) -> Result<SigningKey, KeyError> {
        let error = KeyError {
            option,
            expected: "an ed25519 signing key: whsk_ and the base64 of its 32-byte seed \
                       (or of the 64 bytes of seed and public key)",
        };
        let bytes = text
            .trim()
            .strip_prefix(SIGNING_KEY_PREFIX)
            .and_then(|encoded| BASE64.decode(encoded).ok())
            .ok_or(error.clone())?;
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or(error.clone())?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        match bytes.len() {
            32 => Ok(SigningKey(key)),
            // The public half must be this seed's.
            64 if bytes[32..] == key.verifying_key().to_bytes() => Ok(SigningKey(key)),
            _ => Err(error),
        }
    }

    /// The `whpk_` public key a web service verifies with.
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            BASE64.encode(self.0.verifying_key().to_bytes())
        )
    }

    fn sign(&self, content: &[u8]) -> String {
        format!("v1a,{}", BASE64.encode(self.0.sign(content).to_bytes()))
    }
}

/// Signatures of one kind checked per request: enough for a key rotation
/// (old and new), and a request that lists a hundred costs no more.
pub const MAX_SIGNATURES_CHECKED: usize = 3;

/// An ed25519 public key (`whpk_` + base64 of its 32 bytes).
#[derive(Clone, Debug)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn parse(text: &str, option: &'static str) -> Result<PublicKey, KeyError> {
        let error = KeyError {
            option,
            expected: "an ed25519 public key: whpk_ and the base64 of its 32 bytes",
        };
        let bytes: [u8; 32] = text
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .and_then(|encoded| BASE64.decode(encoded).ok())
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(error.clone())?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| error)
    }

    /// Whether one of the space-separated `v1a,<base64>` signatures in
    /// `signatures` is this key's over `id.timestamp.body`.
    /// Only the first [`MAX_SIGNATURES_CHECKED`] `v1a` ones are checked.
    pub fn verifies(&self, signatures: &str, id: &str, timestamp: u64, body: &[u8]) -> bool {
        let content = signed_content(id, timestamp, body);
        let v1a = signatures
            .split(' ')
            .filter_map(|given| given.strip_prefix("v1a,"));
        v1a.take(MAX_SIGNATURES_CHECKED).any(|encoded| {
            BASE64
                .decode(encoded)
                .ok()
                .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
                .is_some_and(|signature| self.0.verify(&content, &signature).is_ok())
        })
    }
}

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

/// What is signed: `id.timestamp.body`.
fn signed_content(id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` value: one `v1,<sig>` per secret, then a
/// `v1a,<sig>` with the signing key if there is one, space separated, so a
/// receiver can rotate keys or schemes.
pub fn signature(
    secrets: &[Secret],
    key: Option<&SigningKey>,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> String {
    let content = signed_content(id, timestamp, body);
    secrets
        .iter()
        .map(|s| s.sign(&content))
        .chain(key.map(|k| k.sign(&content)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh delivery id, kept across every attempt of one stanza. Made on
/// Prosody's thread for every stanza, and no secret (the web service is
/// the only one to see it): a fast PRNG, not a system call.
pub fn delivery_id() -> String {
    format!("msg_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// `prefix` and 128 bits from the operating system's CSPRNG, in hex: an id
/// nobody can guess (a pushed IQ's, whose answer is matched by it).
pub fn unguessable_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness (never seen on Linux): still unique, if guessable.
        bytes = fastrand::u128(..).to_le_bytes();
    }
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    for byte in bytes {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bits_in_hex() {
        let (a, b) = (unguessable_id("push_"), unguessable_id("push_"));
        for id in [&a, &b] {
            let hex = id.strip_prefix("push_").unwrap();
            assert!(
                hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
        }
        assert_ne!(a, b);
    }

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // The example from the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(
                &[secret],
                None,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn several_secrets_give_several_signatures() {
        let a = Secret::parse("plain secret").unwrap();
        let b = Secret::parse("whsec_c2VjcmV0").unwrap();
        let both = signature(&[a.clone(), b.clone()], None, "id", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(
            parts,
            [
                signature(&[a], None, "id", 1, b"{}"),
                signature(&[b], None, "id", 1, b"{}")
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

    // RFC 8032, section 7.1, test 2: a one-byte message.
    const RFC_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn rfc_key() -> SigningKey {
        let text = format!("whsk_{}", BASE64.encode(hex(RFC_SEED)));
        SigningKey::parse(&text, "component_post_signing_key").unwrap()
    }

    #[test]
    fn v1a_signs_like_rfc_8032_and_verifies_with_the_public_key() {
        let key = rfc_key();
        assert_eq!(
            key.public_key(),
            format!("whpk_{}", BASE64.encode(hex(RFC_PUBLIC)))
        );
        // id "" and timestamp 0 make the content ".0.", so sign the RFC's
        // message directly to check the primitive against its vector.
        let signature = key.0.sign(&hex("72")).to_bytes();
        assert_eq!(
            BASE64.encode(signature),
            BASE64.encode(hex(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ))
        );
        let public = PublicKey::parse(&key.public_key(), "component_push_public_key").unwrap();
        let header = signature_of(&key, "msg_1", 1700000000, b"{}");
        assert!(header.starts_with("v1a,"));
        assert!(public.verifies(&header, "msg_1", 1700000000, b"{}"));
        assert!(!public.verifies(&header, "msg_1", 1700000001, b"{}"));
        assert!(!public.verifies(&header, "msg_1", 1700000000, b"{ }"));
        assert!(!public.verifies("v1a,AAAA v1,xyz", "msg_1", 1700000000, b"{}"));
    }

    fn signature_of(key: &SigningKey, id: &str, timestamp: u64, body: &[u8]) -> String {
        signature(&[], Some(key), id, timestamp, body)
    }

    #[test]
    fn v1a_goes_beside_v1() {
        let secret = Secret::parse("whsec_c2VjcmV0").unwrap();
        let key = rfc_key();
        let both = signature(std::slice::from_ref(&secret), Some(&key), "id", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&[secret], None, "id", 1, b"{}"));
        assert_eq!(parts[1], signature_of(&key, "id", 1, b"{}"));
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        let seed = hex(RFC_SEED);
        let mut full = seed.clone();
        full.extend(hex(RFC_PUBLIC));
        let option = "component_post_signing_key";
        assert!(SigningKey::parse(&format!("whsk_{}", BASE64.encode(&full)), option).is_ok());
        full[40] ^= 1; // a public half that is not the seed's
        for bad in [
            format!("whsk_{}", BASE64.encode(&full)),
            format!("whsk_{}", BASE64.encode(&seed[..31])),
            format!("whsec_{}", BASE64.encode(&seed)),
            "whsk_!!".to_owned(),
        ] {
            let error = SigningKey::parse(&bad, option).unwrap_err();
            assert!(error.to_string().starts_with(option) && !error.to_string().contains(&bad));
        }
        assert!(PublicKey::parse("whpk_AAAA", "component_push_public_key").is_err());
        assert_eq!(format!("{:?}", rfc_key()), "SigningKey(..)");
    }

    #[test]
    fn delivery_ids_differ() {
        let a = delivery_id();
        assert!(a.starts_with("msg_") && a.len() == 36);
        assert_ne!(a, delivery_id());
    }
}
