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
