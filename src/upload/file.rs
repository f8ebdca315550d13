//! The `file` key of a reply or push (docs/contract.md §14): read and
//! checked before anything is asked of the upload service. The base64 is
//! decoded here, so off Prosody's thread on the reply path.

use base64::Engine;
use serde_json::{Map, Value};

use super::UploadError;
use crate::conversion::{json_object, HttpAnswer};

/// A file to upload, as the web service gave it.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub name: String,
    pub content_type: String,
    pub desc: Option<String>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("bytes", &self.data.len())
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("desc", &self.desc)
            .finish()
    }
}

/// The longest file name, in bytes.
const MAX_NAME: usize = 255;

fn invalid(key: &str, why: &str) -> UploadError {
    UploadError::Invalid(format!("'{key}' {why}"))
}

/// The file a reply carries (a 200 JSON answer with a `file` key): read,
/// or why it cannot be sent. `None`: no file (or no JSON to read, which
/// the reply's own reading reports).
pub fn in_answer(answer: &HttpAnswer, max: usize) -> Option<Result<File, UploadError>> {
    // A cheap look first: most replies have no file.
    memchr::memmem::find(&answer.body, b"\"file\"")?;
    let object = json_object(answer).ok().flatten()?;
    let file = object.get("file").filter(|v| !v.is_null())?;
    Some(check_beside(&object).and_then(|()| from_json(file, max)))
}

/// The keys a message with a file may not have (they would say something
/// else than the file message).
pub fn check_beside(object: &Map<String, Value>) -> Result<(), UploadError> {
    for key in ["oob", "stanza"] {
        if object.contains_key(key) {
            return Err(invalid(key, "cannot go with 'file'"));
        }
    }
    match object.get("kind") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(kind)) if kind == "message" => Ok(()),
        Some(_) => Err(invalid("kind", "must be message with 'file'")),
    }
}

/// `{"data", "name"?, "content_type"?, "desc"?}`, with `data` at most
/// `max` bytes once decoded (checked before decoding).
pub fn from_json(value: &Value, max: usize) -> Result<File, UploadError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid("file", "must be an object with 'data'"))?;
    let text = |key: &str| match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(&format!("file.{key}"), "must be a string")),
    };
    let encoded = text("data")?
        .ok_or_else(|| invalid("file.data", "is missing: the file's bytes in base64"))?;
    // Line breaks are allowed; anything else not base64 is not.
    let encoded: String = encoded
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    let size = encoded.len() / 4 * 3;
    if size > max + 2 {
        return Err(UploadError::TooLarge(format!(
            "the file is larger than component_post_max_upload ({max} bytes)"
        )));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|e| {
            invalid(
                "file.data",
                &format!("is not standard base64 with padding: {e}"),
            )
        })?;
    if data.is_empty() {
        return Err(invalid("file.data", "is empty: there is no file to send"));
    }
    if data.len() > max {
        return Err(UploadError::TooLarge(format!(
            "the file ({} bytes) is larger than component_post_max_upload ({max} bytes)",
            data.len()
        )));
    }
    let name = text("name")?.unwrap_or("file");
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.contains(['/', '\\'])
        || name == "."
        || name == ".."
        || name.chars().any(char::is_control)
    {
        return Err(invalid(
            "file.name",
            "must be a file name: 1 to 255 bytes, no '/' or '\\', not . or ..",
        ));
    }
    let content_type = text("content_type")?.unwrap_or("application/octet-stream");
    if !is_media_type(content_type) {
        return Err(invalid(
            "file.content_type",
            "must be a media type such as image/png",
        ));
    }
    Ok(File {
        data,
        name: name.to_owned(),
        content_type: content_type.to_owned(),
        desc: text("desc")?.map(str::to_owned),
    })
}

/// `type/subtype`, each a token (RFC 9110 §5.6.2), parameters allowed.
fn is_media_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    matches!(essence.split_once('/'), Some((t, s)) if token(t) && token(s))
        && !text.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 16;

    fn read(value: Value) -> Result<File, String> {
        from_json(&value, MAX).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_with_its_defaults() {
        let file = read(json!({"data": "aGVsbG8="})).unwrap();
        assert_eq!(
            (
                file.data.as_slice(),
                file.name.as_str(),
                file.content_type.as_str(),
                file.desc
            ),
            (&b"hello"[..], "file", "application/octet-stream", None)
        );
        let file = read(json!({"data": "aGVs\r\nbG8=", "name": "chart.png",
                               "content_type": "image/png", "desc": "CPU"}))
        .unwrap();
        assert_eq!(
            (file.name.as_str(), file.desc.as_deref()),
            ("chart.png", Some("CPU"))
        );
        assert_eq!(format!("{file:?}"), "File { bytes: 5, name: \"chart.png\", content_type: \"image/png\", desc: Some(\"CPU\") }");
    }

    #[test]
    fn wrong_files_are_refused_naming_the_key() {
        for (value, why) in [
            (json!("aGVsbG8="), "'file' must be an object"),
            (json!({}), "'file.data' is missing"),
            (json!({"data": 5}), "'file.data' must be a string"),
            (
                json!({"data": "aGVsbG8"}),
                "'file.data' is not standard base64",
            ),
            (
                json!({"data": "aGV sbG8="}),
                "'file.data' is not standard base64",
            ),
            (
                json!({"data": "aGVs-G8="}),
                "'file.data' is not standard base64",
            ),
            (json!({"data": ""}), "'file.data' is empty"),
            (
                json!({"data": "aGVsbG8=", "name": "../x"}),
                "'file.name' must be a file name",
            ),
            (
                json!({"data": "aGVsbG8=", "name": "a\\b"}),
                "'file.name' must be a file name",
            ),
            (
                json!({"data": "aGVsbG8=", "name": ".."}),
                "'file.name' must be a file name",
            ),
            (
                json!({"data": "aGVsbG8=", "name": ""}),
                "'file.name' must be a file name",
            ),
            (
                json!({"data": "aGVsbG8=", "name": "x".repeat(256)}),
                "'file.name' must be a file name",
            ),
            (
                json!({"data": "aGVsbG8=", "content_type": "png"}),
                "'file.content_type' must be a media type",
            ),
            (
                json!({"data": "aGVsbG8=", "content_type": "image/png\r\nX: y"}),
                "'file.content_type' must be",
            ),
            (
                json!({"data": "aGVsbG8=", "desc": []}),
                "'file.desc' must be a string",
            ),
        ] {
            let refused = read(value.clone()).unwrap_err();
            assert!(refused.contains(why), "{value}: {refused}");
        }
    }

    #[test]
    fn past_the_limit_is_too_large_before_or_after_decoding() {
        use base64::Engine;
        let encode = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert_eq!(read(json!({"data": encode(MAX)})).unwrap().data.len(), MAX);
        for n in [MAX + 1, MAX * 10] {
            let refused = from_json(&json!({"data": encode(n)}), MAX).unwrap_err();
            assert!(
                matches!(refused, UploadError::TooLarge(_)),
                "{n}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_reply_carries_a_file_only_as_a_json_object_with_the_key() {
        let answer = |status: u16, ct: Option<&str>, body: &str| HttpAnswer {
            status,
            content_type: ct.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            ..HttpAnswer::default()
        };
        let json = Some("application/json");
        let file = r#"{"body": "x", "file": {"data": "aGVsbG8="}}"#;
        assert_eq!(
            in_answer(&answer(200, json, file), MAX)
                .unwrap()
                .unwrap()
                .data,
            b"hello"
        );
        assert!(in_answer(&answer(201, json, file), MAX).is_none());
        assert!(in_answer(&answer(200, Some("text/plain"), file), MAX).is_none());
        assert!(in_answer(&answer(200, json, r#"{"body": "file"}"#), MAX).is_none());
        assert!(in_answer(&answer(200, json, r#"{"file": null}"#), MAX).is_none());
        assert!(in_answer(&answer(200, json, r#"{"file": {"#), MAX).is_none());
        let beside = r#"{"oob": "https://x/", "file": {"data": "aGVsbG8="}}"#;
        assert!(matches!(
            in_answer(&answer(200, json, beside), MAX),
            Some(Err(UploadError::Invalid(_)))
        ));
    }

    #[test]
    fn a_file_goes_with_a_message_and_nothing_that_says_otherwise() {
        let object = |v: Value| v.as_object().unwrap().clone();
        assert!(check_beside(&object(json!({"body": "x", "kind": "message"}))).is_ok());
        for (v, key) in [
            (json!({"oob": "https://x/"}), "'oob'"),
            (json!({"stanza": "<message/>"}), "'stanza'"),
            (json!({"kind": "presence"}), "'kind'"),
        ] {
            assert!(check_beside(&object(v))
                .unwrap_err()
                .to_string()
                .contains(key));
        }
    }
}
