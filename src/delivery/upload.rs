//! The upload stage (docs/contract.md §14), off Prosody's thread: a reply
//! or push with a file finds the upload service (configured, or by disco),
//! asks it for a slot and PUTs the bytes, all before a deadline. The IQs go
//! through Prosody as the component's own (an effect, drained on its
//! thread); their answers come back through `receive` to
//! [`Uploads::answer`], which hands each to the task awaiting it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use tokio::sync::oneshot;
use tokio::time::timeout_at;

use super::outcome::{file_messages, LogLevel, Outcome};
use super::retry;
use super::runtime::{fork_generation, lock};
use super::shared::{Shared, UploadService, Uploads};
use crate::config::Config;
use crate::jid;
use crate::signing;
use crate::upload::{discover, slot, File, PushedFile, Slot, UploadError, Uploader};
use crate::xml::Element;

/// How long "no upload service" is believed before asking again.
const MISSING_FOR: Duration = Duration::from_secs(300);

impl Uploads {
    /// An IQ result or error to the component: whether it answers an IQ
    /// an upload awaits (then it is handed over).
    pub(super) fn answer(&self, stanza: &Element) -> bool {
        if !matches!(stanza.attr("type"), Some("result" | "error")) {
            return false;
        }
        let Some(id) = stanza.attr("id") else {
            return false;
        };
        let mut waiting = lock(&self.waiting);
        // Only from whom it was asked: an answer from anyone else is not
        // one (the id is unguessable; this holds even if it were not).
        let from = stanza.attr("from").unwrap_or_default();
        match waiting.get(id) {
            Some((asked, _)) if jid::bare(from).eq_ignore_ascii_case(asked) => {
                if let Some((_, sender)) = waiting.remove(id) {
                    let _ = sender.send(stanza.clone());
                }
                true
            }
            _ => false,
        }
    }

    fn client(&self, config: &Config) -> Result<reqwest::Client, UploadError> {
        let generation = fork_generation();
        let mut slot = lock(&self.client);
        if let Some((made_in, client)) = slot.as_ref() {
            if *made_in == generation {
                return Ok(client.clone());
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mod_component_http/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .danger_accept_invalid_certs(!config.tls_verify);
        for certificate in &config.ca_certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        let client = builder.build().map_err(|e| {
            UploadError::Unavailable(format!("cannot build the upload's HTTP client: {e}"))
        })?;
        *slot = Some((generation, client.clone()));
        Ok(client)
    }
}

fn no_service(host: &str) -> UploadError {
    UploadError::Unavailable(format!(
        "no XEP-0363 upload service: none is listed by {}; set component_post_upload_service",
        discover::parent(host).unwrap_or(host)
    ))
}

impl Shared {
    /// Uploads `file` before `deadline`: its GET URL.
    pub(super) async fn upload(
        self: &Arc<Self>,
        file: &File,
        deadline: Instant,
    ) -> Result<String, UploadError> {
        let service = self.upload_service(deadline).await?;
        let host = &self.config.host;
        let id = signing::unguessable_id("upload_");
        let answer = self
            .ask(slot::request(&id, host, &service, file), deadline)
            .await?;
        let slot = slot::read(&answer).inspect_err(|error| {
            if matches!(error, UploadError::Forbidden(_)) {
                self.outbox.queue(Outcome::log_only(
                    LogLevel::Warn,
                    format!(
                        "{service} refused {host} an upload slot: on Prosody 13, \
                         http_file_share_access must list {host}"
                    ),
                ));
            }
        })?;
        self.put(&slot, file, deadline).await?;
        Ok(slot.get)
    }

    /// `iq`, sent as the component: its answer, awaited until `deadline`.
    async fn ask(self: &Arc<Self>, iq: Element, deadline: Instant) -> Result<Element, UploadError> {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let (sender, answer) = oneshot::channel();
        // Answers come to the module's newest delivery.
        let target = self.target();
        let asked = iq.attr("to").unwrap_or_default().to_owned();
        lock(&target.uploads.waiting).insert(id.clone(), (asked, sender));
        self.outbox.queue(Outcome {
            stanzas: vec![iq],
            ..Outcome::default()
        });
        match timeout_at(deadline.into(), answer).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&target.uploads.waiting).remove(&id);
                Err(UploadError::Timeout)
            }
        }
    }

    /// The configured service, or the one disco found (once; "none" is
    /// believed for five minutes, and logged).
    async fn upload_service(self: &Arc<Self>, deadline: Instant) -> Result<String, UploadError> {
        let host = &self.config.host;
        if let Some(service) = &self.config.upload_service {
            return Ok(service.clone());
        }
        let uploads = &self.target().uploads;
        let mut service = timeout_at(deadline.into(), uploads.service.lock())
            .await
            .map_err(|_| UploadError::Timeout)?;
        match &*service {
            UploadService::Found(found) => return Ok(found.clone()),
            UploadService::Missing(until) if Instant::now() < *until => {
                return Err(no_service(host))
            }
            _ => {}
        }
        match self.discover(deadline).await? {
            Some(found) => {
                *service = UploadService::Found(found.clone());
                Ok(found)
            }
            None => {
                *service = UploadService::Missing(Instant::now() + MISSING_FOR);
                let error = no_service(host);
                self.outbox.queue(Outcome::log_only(
                    LogLevel::Warn,
                    format!("Files cannot be sent: {error}"),
                ));
                Err(error)
            }
        }
    }

    async fn discover(self: &Arc<Self>, deadline: Instant) -> Result<Option<String>, UploadError> {
        let host = &self.config.host;
        let Some(parent) = discover::parent(host) else {
            return Ok(None);
        };
        let id = || signing::unguessable_id("disco_");
        let items = self
            .ask(discover::items_request(&id(), host, parent), deadline)
            .await?;
        for item in discover::items(&items, host) {
            let info = self
                .ask(discover::info_request(&id(), host, &item), deadline)
                .await?;
            if discover::offers_upload(&info) {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// PUTs the file to its slot, retried as a delivery is (on a failed
    /// connection, a timeout, 408, 425, 429, 502, 503, 504), before
    /// `deadline`. Anything but a 2xx (a redirect too) fails it.
    async fn put(&self, slot: &Slot, file: &File, deadline: Instant) -> Result<(), UploadError> {
        let client = self.uploads.client(&self.config)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(UploadError::Timeout);
            }
            let mut request = client
                .put(&slot.put)
                .timeout(remaining)
                .header(CONTENT_TYPE, file.content_type.as_str())
                .body(file.data.clone());
            for (name, value) in &slot.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let (failure, retry_after) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let failure = UploadError::Unavailable(format!(
                        "the upload service answered the PUT with HTTP {status}"
                    ));
                    if !retry::is_retryable_status(status) {
                        return Err(failure);
                    }
                    (failure, None)
                }
                Err(error) if error.is_timeout() => return Err(UploadError::Timeout),
                Err(error) => {
                    let mut cause: &dyn std::error::Error = &error;
                    while let Some(inner) = cause.source() {
                        cause = inner;
                    }
                    (
                        UploadError::Unavailable(format!("the PUT failed: {cause}")),
                        None,
                    )
                }
            };
            if attempts > self.config.retries {
                return Err(failure);
            }
            let wait = retry::delay(attempts, retry_after);
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|at| at >= deadline)
            {
                return Err(failure);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// A host's uploads, for its push endpoint: a push with a file is
/// uploaded off Prosody's thread, and its HTTP answer comes back as a
/// `push_answer` effect (docs/contract.md §14).
#[derive(Clone)]
pub struct HostUploader(pub(super) Arc<Shared>);

impl Uploader for HostUploader {
    fn allowance(&self) -> usize {
        crate::upload::base64_size(self.0.config.max_upload)
    }

    fn seconds(&self) -> f64 {
        // The upload's deadline, and a margin for its answer to get here.
        self.0.config.timeout.as_secs_f64() + 5.0
    }

    fn push(&self, pushed: PushedFile, answer_id: String) {
        let shared = self.0.target();
        let runtime = match shared.connector.get(&shared.config) {
            Ok((runtime, _)) => runtime,
            Err(error) => {
                let error = UploadError::Unavailable(error.to_string());
                shared.outbox.queue(push_refused(&answer_id, &error));
                return;
            }
        };
        runtime.spawn(async move {
            let deadline = Instant::now() + shared.config.timeout;
            let outcome = match shared.read_push(pushed) {
                Err(error) => push_refused(&answer_id, &error),
                Ok((message, file)) => match shared.upload(&file, deadline).await {
                    Err(error) => push_refused(&answer_id, &error),
                    Ok(url) => {
                        let id = message.attr("id").unwrap_or_default().to_owned();
                        let body = serde_json::json!({"id": id, "url": url}).to_string();
                        Outcome {
                            stanzas: file_messages(message, &url, &file),
                            upload: Some(("done", file.data.len() as u64)),
                            push_answer: Some((answer_id, 200, body)),
                            ..Outcome::default()
                        }
                    }
                },
            };
            // The newest module's outbox: a retired one may no longer be
            // watched by the time the upload ends.
            shared.target().outbox.queue(outcome);
        });
    }
}

fn push_refused(answer_id: &str, error: &UploadError) -> Outcome {
    let body = serde_json::json!({"error": error.to_string()}).to_string();
    Outcome {
        upload: Some((error.label(), 0)),
        push_answer: Some((answer_id.to_owned(), error.push_status(), body)),
        ..Outcome::default()
    }
}

impl Shared {
    /// The message and the file of a push with a file.
    fn read_push(&self, pushed: PushedFile) -> Result<(Element, File), UploadError> {
        let max = self.config.max_upload;
        let (message, file) = match pushed {
            PushedFile::Read(message, file) => (message, file),
            PushedFile::Unread(body) => {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&body)
                        .map_err(|e| UploadError::Invalid(format!("invalid JSON: {e}")))?;
                let Some(file) = object.get("file").filter(|f| !f.is_null()).cloned() else {
                    return Err(UploadError::TooLarge(format!(
                        "larger than {} bytes, and no file",
                        self.config.push_max_size
                    )));
                };
                crate::upload::file::check_beside(&object)?;
                let message =
                    crate::push::stanza(&self.config.host, Some("application/json"), &body)
                        .map_err(|e| UploadError::Invalid(e.message))?;
                (message, file)
            }
        };
        Ok((message, crate::upload::file::from_json(&file, max)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    #[test]
    fn an_answer_counts_only_from_whom_it_was_asked_and_only_once() {
        let uploads = Uploads::default();
        let (sender, mut answer) = oneshot::channel();
        lock(&uploads.waiting).insert("upload_1".into(), ("upload.localhost".into(), sender));
        let from = |from: &str, kind: &str| {
            parse(&format!("<iq type='{kind}' id='upload_1' from='{from}'/>")).unwrap()
        };
        assert!(!uploads.answer(&from("mallory@localhost/x", "result")));
        assert!(!uploads.answer(&from("upload.localhost", "get")));
        assert!(answer.try_recv().is_err(), "still waiting");
        assert!(uploads.answer(&from("Upload.Localhost", "result")));
        assert_eq!(
            answer.try_recv().unwrap().attr("from"),
            Some("Upload.Localhost")
        );
        assert!(
            !uploads.answer(&from("upload.localhost", "result")),
            "answered once"
        );
    }
}
