//! Files (docs/contract.md §14): a reply or push with `file` is uploaded
//! to the server's XEP-0363 upload service, and the message that is sent
//! carries its GET URL. [`file`] reads the `file` key, [`slot`] the slot
//! request and answer, [`discover`] how the service is found.
//! [`UploadError`] decides what a push caller and a sender are told.

pub mod discover;
pub mod file;
pub mod slot;

use thiserror::Error;

pub use file::File;
pub use slot::Slot;

use crate::xml::Element;

/// The size of `n` bytes in base64, with room for line breaks: what a
/// reply or push with a file may have beyond its usual limit.
pub fn base64_size(n: usize) -> usize {
    n.div_ceil(3) * 4 * 78 / 76 + 16
}

/// What a push with a file holds, read on Prosody's thread or not.
pub enum PushedFile {
    /// The message it sends (without the file) and its `file` key.
    Read(Element, serde_json::Value),
    /// The body, larger than pushes without a file may be: read where the
    /// upload runs (so a large one costs Prosody's thread nothing).
    Unread(Vec<u8>),
}

/// Who uploads the files of pushes (the host's deliveries, off Prosody's
/// thread): the push endpoint hands them over and awaits the answer.
pub trait Uploader: Send + Sync {
    /// The bytes a push with a file may have beyond `component_push_max_size`.
    fn allowance(&self) -> usize;
    /// Uploads the file of a push and sends its message; the push's HTTP
    /// answer (`200 {"id", "url"}` or an error) comes back as a
    /// `push_answer` effect for `answer_id`, within `seconds`.
    fn push(&self, pushed: PushedFile, answer_id: String);
    /// How long a push with a file may wait for its answer.
    fn seconds(&self) -> f64;
}

impl std::fmt::Debug for dyn Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uploads")
    }
}

/// Why a file was not sent. Each decides the push status, and the text the
/// sender of a stanza gets (as an invalid reply).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UploadError {
    /// The `file` key is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Over `component_post_max_upload`, or the service's own limit.
    #[error("{0}")]
    TooLarge(String),
    /// The service's quota.
    #[error("{0}")]
    Quota(String),
    /// The service does not let the component upload (on Prosody 13,
    /// `http_file_share_access` must name its domain).
    #[error("{0}")]
    Forbidden(String),
    /// No upload service, a slot refused or unusable, a PUT that failed.
    #[error("{0}")]
    Unavailable(String),
    /// The slot request and the PUT took longer than `component_post_timeout`.
    #[error("the upload timed out")]
    Timeout,
}

impl UploadError {
    /// The push endpoint's answer to a push whose file was not sent.
    pub fn push_status(&self) -> u16 {
        match self {
            UploadError::Invalid(_) => 400,
            UploadError::TooLarge(_) => 413,
            UploadError::Quota(_) => 429,
            UploadError::Forbidden(_) | UploadError::Unavailable(_) => 502,
            UploadError::Timeout => 504,
        }
    }

    /// The metrics label of this way of failing.
    pub fn label(&self) -> &'static str {
        match self {
            UploadError::Invalid(_) => "invalid",
            UploadError::TooLarge(_) => "too_large",
            UploadError::Quota(_) => "quota",
            UploadError::Forbidden(_) => "forbidden",
            UploadError::Unavailable(_) => "unavailable",
            UploadError::Timeout => "timeout",
        }
    }

    /// What the sender of a stanza whose reply had the file is told.
    pub fn text(&self) -> String {
        format!("the bot's file could not be sent: {self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_push_status() {
        for (error, status) in [
            (UploadError::Invalid("x".into()), 400),
            (UploadError::TooLarge("x".into()), 413),
            (UploadError::Quota("x".into()), 429),
            (UploadError::Forbidden("x".into()), 502),
            (UploadError::Unavailable("x".into()), 502),
            (UploadError::Timeout, 504),
        ] {
            assert_eq!(error.push_status(), status, "{error:?}");
        }
        assert_eq!(
            UploadError::Timeout.text(),
            "the bot's file could not be sent: the upload timed out"
        );
    }
}
