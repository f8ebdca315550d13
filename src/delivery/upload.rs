//! The upload stage (docs/contract.md §14), off Prosody's thread: a reply
//! or push with a file finds the upload service (configured, or by disco),
//! asks it for a slot and PUTs the bytes, all before a deadline. The IQs go
//! through Prosody as the component's own (an effect, drained on its
//! thread); their answers come back through `receive` to
//! [`Uploads::answer`], which hands each to the task awaiting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use tokio::sync::oneshot;
use tokio::time::timeout_at;

use super::outcome::{LogLevel, Outcome};
use super::retry;
use super::runtime::{fork_generation, lock};
use super::shared::Shared;
use crate::config::Config;
use crate::signing;
use crate::upload::{discover, slot, File, Slot, UploadError};
use crate::xml::Element;

/// How long "no upload service" is believed before asking again.
const MISSING_FOR: Duration = Duration::from_secs(300);

enum Service {
    Unknown,
    Found(String),
    Missing(Instant),
}

/// What a host's uploads share.
pub(super) struct Uploads {
    /// IQs sent for uploads, by id, and who awaits each answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<Element>>>,
    /// The service found by disco; one task looks at a time.
    service: tokio::sync::Mutex<Service>,
    /// The PUT's client: the deliveries' TLS settings and timeouts, but
    /// none of the web service's headers (they are its secrets).
    client: Mutex<Option<(u64, reqwest::Client)>>,
}

impl Default for Uploads {
    fn default() -> Uploads {
        Uploads {
            waiting: Mutex::default(),
            service: tokio::sync::Mutex::new(Service::Unknown),
            client: Mutex::default(),
        }
    }
}

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
        match lock(&self.waiting).remove(id) {
            Some(waiting) => {
                let _ = waiting.send(stanza.clone());
                true
            }
            None => false,
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
        lock(&target.uploads.waiting).insert(id.clone(), sender);
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
            Service::Found(found) => return Ok(found.clone()),
            Service::Missing(until) if Instant::now() < *until => return Err(no_service(host)),
            _ => {}
        }
        match self.discover(deadline).await? {
            Some(found) => {
                *service = Service::Found(found.clone());
                Ok(found)
            }
            None => {
                *service = Service::Missing(Instant::now() + MISSING_FOR);
                let error = no_service(host);
                self.outbox
                    .queue(Outcome::log_only(LogLevel::Warn, format!("Files cannot be sent: {error}")));
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
                    (UploadError::Unavailable(format!("the PUT failed: {cause}")), None)
                }
            };
            if attempts > self.config.retries {
                return Err(failure);
            }
            let wait = retry::delay(attempts, retry_after);
            if Instant::now().checked_add(wait).is_none_or(|at| at >= deadline) {
                return Err(failure);
            }
            tokio::time::sleep(wait).await;
        }
    }
}
