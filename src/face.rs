//! The bot's face (docs/contract.md §15): a display name and an avatar,
//! from `component_post_name` and `component_post_avatar`. The module
//! answers vcard-temp (XEP-0054) itself with them, and every available
//! presence the component sends carries the avatar's hash (XEP-0153), so
//! clients show the bot with its picture and name.

use base64::Engine;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::conversion::Envelope;
use crate::effect::Effect;
use crate::xml::{Element, Node};

pub const XMLNS_VCARD: &str = "vcard-temp";
pub const XMLNS_VCARD_UPDATE: &str = "vcard-temp:x:update";

/// The largest avatar: its vCard, in base64, must fit in a stanza that
/// Prosody's client streams accept (256 KiB by default).
pub const MAX_AVATAR: usize = 128 * 1024;

/// Why the avatar cannot be used: the load fails with it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("component_post_avatar = {path:?}: {reason}")]
pub struct AvatarError {
    pub path: String,
    pub reason: String,
}

/// A name and an avatar; either may be unset.
#[derive(Debug, Default)]
pub struct Face {
    pub name: Option<String>,
    pub avatar: Option<Avatar>,
}

/// An image file's bytes, its type (read from its content) and its SHA-1
/// in hex, as XEP-0153 names an avatar.
pub struct Avatar {
    pub data: Vec<u8>,
    pub mime: &'static str,
    pub sha1: String,
}

impl std::fmt::Debug for Avatar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Avatar({}, {} bytes)", self.mime, self.data.len())
    }
}

impl Avatar {
    /// Reads the file at `path` (made absolute by the shim). A reload
    /// reads it again.
    pub fn read(path: &str) -> Result<Avatar, AvatarError> {
        let fail = |reason: String| AvatarError {
            path: path.to_owned(),
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .len();
        if size > MAX_AVATAR as u64 {
            return Err(fail(format!(
                "{size} bytes, more than {MAX_AVATAR} (its vCard would not reach clients)"
            )));
        }
        let data = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        Avatar::new(data).map_err(|why| fail(why.into()))
    }

    pub fn new(data: Vec<u8>) -> Result<Avatar, &'static str> {
        let mime = image_type(&data).ok_or("not a PNG, JPEG, GIF or WebP image")?;
        let sha1 = Sha1::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Avatar { data, mime, sha1 })
    }
}

/// The image type a file's first bytes say.
fn image_type(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

impl Face {
    /// Whether there is anything to show: then the module answers vCards.
    pub fn is_set(&self) -> bool {
        self.name.is_some() || self.avatar.is_some()
    }

    /// The answer to a vcard-temp get to the domain or any JID at it, when
    /// the face is set; `None` for anything else.
    pub fn answer(&self, stanza: &Element) -> Option<Element> {
        if !self.is_set() || stanza.attr("type") != Some("get") {
            return None;
        }
        let query = stanza.elements().next()?;
        if query.name != "vCard" || query.attr("xmlns") != Some(XMLNS_VCARD) {
            return None;
        }
        let envelope = Envelope::of(stanza).ok()?;
        Some(envelope.iq_result().with_child(self.vcard()))
    }

    fn vcard(&self) -> Element {
        let mut vcard = Element::new("vCard").with_attr("xmlns", XMLNS_VCARD);
        if let Some(name) = &self.name {
            vcard = vcard.with_child(Element::new("FN").with_text(name.as_str()));
        }
        if let Some(avatar) = &self.avatar {
            let data = base64::engine::general_purpose::STANDARD.encode(&avatar.data);
            vcard = vcard.with_child(
                Element::new("PHOTO")
                    .with_child(Element::new("TYPE").with_text(avatar.mime))
                    .with_child(Element::new("BINVAL").with_text(data)),
            );
        }
        vcard
    }

    /// `stanza` as the component sends it: an available presence gets the
    /// avatar's hash, unless it says one itself.
    pub fn dress(&self, stanza: &mut Element) {
        let Some(avatar) = &self.avatar else {
            return;
        };
        let available = stanza.name == "presence" && stanza.attr("type").is_none();
        if !available || stanza.child("x", Some(XMLNS_VCARD_UPDATE)).is_some() {
            return;
        }
        let update = Element::new("x")
            .with_attr("xmlns", XMLNS_VCARD_UPDATE)
            .with_child(Element::new("photo").with_text(avatar.sha1.as_str()));
        stanza.children.push(Node::Element(update));
    }

    /// [`Face::dress`] for every stanza `effects` send.
    pub fn dress_all(&self, effects: &mut [Effect]) {
        if self.avatar.is_none() {
            return;
        }
        for effect in effects {
            if let Effect::Send(stanza) = effect {
                self.dress(stanza);
            }
        }
    }

    /// The name disco#info's identity shows: the face's, else the domain.
    pub fn identity_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nrest";

    fn face() -> Face {
        Face {
            name: Some("Helper".into()),
            avatar: Some(Avatar::new(PNG.to_vec()).unwrap()),
        }
    }

    #[test]
    fn the_type_comes_from_the_content() {
        assert_eq!(image_type(PNG), Some("image/png"));
        assert_eq!(image_type(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(image_type(b"GIF89a.."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg/>"), None);
        assert!(Avatar::new(b"hello".to_vec()).is_err());
    }

    #[test]
    fn a_missing_or_large_file_says_why() {
        let e = Avatar::read("/nonexistent/bot.png").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("component_post_avatar = \"/nonexistent/bot.png\": "));
        let path = std::env::temp_dir().join(format!("face-{}.png", std::process::id()));
        let mut big = PNG.to_vec();
        big.resize(MAX_AVATAR + 1, 0);
        std::fs::write(&path, &big).unwrap();
        let e = Avatar::read(path.to_str().unwrap()).unwrap_err();
        assert!(e.reason.contains("more than 131072"), "{e}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_vcard_get_to_any_jid_at_the_domain_is_answered() {
        let get = parse(
            "<iq type='get' id='v1' from='a@localhost/r' to='x@bot.localhost'>\
             <vCard xmlns='vcard-temp'/></iq>",
        )
        .unwrap();
        let xml = face().answer(&get).unwrap().to_xml();
        assert_eq!(
            xml,
            "<iq to='a@localhost/r' from='x@bot.localhost' id='v1' type='result'>\
             <vCard xmlns='vcard-temp'><FN>Helper</FN><PHOTO><TYPE>image/png</TYPE>\
             <BINVAL>iVBORw0KGgpyZXN0</BINVAL></PHOTO></vCard></iq>"
        );
        assert!(Face::default().answer(&get).is_none(), "no face: not ours");
        let set = parse(&xml_with_type("set")).unwrap();
        assert!(face().answer(&set).is_none());
    }

    fn xml_with_type(kind: &str) -> String {
        format!("<iq type='{kind}' id='v1' from='a@localhost/r' to='bot.localhost'><vCard xmlns='vcard-temp'/></iq>")
    }

    #[test]
    fn available_presences_carry_the_hash_unless_they_have_one() {
        let sha1 = face().avatar.unwrap().sha1;
        assert_eq!(sha1.len(), 40);
        let p = parse("<presence to='a@localhost' from='bot.localhost'/>").unwrap();
        let mut effects = [Effect::Send(p.clone())];
        face().dress_all(&mut effects);
        let [Effect::Send(dressed)] = &effects else {
            unreachable!()
        };
        let photo = dressed
            .child("x", Some(XMLNS_VCARD_UPDATE))
            .and_then(|x| x.child("photo", None))
            .unwrap();
        assert_eq!(photo.text(), sha1);
        for untouched in [
            "<presence type='unavailable' to='a@localhost'/>",
            "<presence type='subscribed' to='a@localhost'/>",
            "<message to='a@localhost'/>",
            "<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>",
        ] {
            let mut stanza = parse(untouched).unwrap();
            face().dress(&mut stanza);
            assert_eq!(stanza.to_xml(), parse(untouched).unwrap().to_xml());
        }
        let mut bare = p.clone();
        Face::default().dress(&mut bare);
        assert_eq!(bare.to_xml(), p.to_xml());
    }
}
