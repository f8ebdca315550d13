//! The web service over HTTP: one keep-alive client per component host, one
//! signed POST, retries within the stanza's deadline, body limits, and
//! transport errors in words for the sender.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, CONTENT_TYPE, RETRY_AFTER};
use tokio::runtime::Handle;
use tokio::time::timeout_at;

use super::outcome::DeliveryError;
use super::retry;
use super::runtime::{fork_generation, lock, runtime};
use crate::clock;
use crate::config::Config;
use crate::conversion::HttpAnswer;
use crate::signing;

/// The runtime and HTTP client (one keep-alive pool per component host) a
/// host uses, with the fork generation they belong to: built on first use
/// and again after a fork, for the reason the runtime starts lazily.
#[derive(Default)]
pub(super) struct Connector(Mutex<Option<(u64, Handle, reqwest::Client)>>);

impl Connector {
    pub(super) fn get(&self, config: &Config) -> Result<(Handle, reqwest::Client), DeliveryError> {
        let generation = fork_generation();
        let mut slot = lock(&self.0);
        if let Some((started_in, runtime, client)) = slot.as_ref() {
            if *started_in == generation {
                return Ok((runtime.clone(), client.clone()));
            }
        }
        let runtime = runtime()?;
        let client = client(config)?;
        *slot = Some((generation, runtime.clone(), client.clone()));
        Ok((runtime, client))
    }
}

fn client(config: &Config) -> Result<reqwest::Client, DeliveryError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        // The URL is the admin's: a redirect is answered like any other
        // unmapped status, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(config.headers.clone())
        .pool_max_idle_per_host(config.max_inflight)
        .tcp_nodelay(true)
        .user_agent(concat!("mod_component_http/", env!("CARGO_PKG_VERSION")))
        // Like Prosody's own HTTP client (and the original module), the
        // environment's proxy variables are not used; it also spares a
        // proxy lookup per request.
        .no_proxy()
        .danger_accept_invalid_certs(!config.tls_verify);
    for certificate in &config.ca_certificates {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder
        .build()
        .map_err(|e| DeliveryError::Internal(format!("cannot build the HTTP client: {e}")))
}

/// Whether another attempt, later, may succeed.
pub(super) fn is_transient(result: &Result<HttpAnswer, DeliveryError>) -> bool {
    match result {
        Ok(answer) => retry::is_retryable_status(answer.status),
        Err(error) => retry::is_retryable(error),
    }
}

/// What an attempt got: an answer read whole, or a stream (§18) whose
/// lines are still coming, to follow.
pub(super) enum Answer {
    Whole(HttpAnswer),
    Stream(reqwest::Response),
}

/// POSTs one stanza, retrying what may succeed on another attempt, all
/// before `deadline` (a stream is never retried). Returns the last result
/// and the number of attempts made.
pub(super) async fn post_with_retries(
    client: &reqwest::Client,
    config: &Config,
    id: &str,
    json: &str,
    deadline: Instant,
) -> (Result<Answer, DeliveryError>, u32) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = post_answer(client, config, id, json, remaining).await;
        let retry_after = match &result {
            Ok(Answer::Whole(answer)) if retry::is_retryable_status(answer.status) => {
                answer.retry_after
            }
            Err(error) if retry::is_retryable(error) => None,
            _ => return (result, attempts),
        };
        if attempts > config.retries {
            return (result, attempts);
        }
        let wait = retry::delay(attempts, retry_after);
        // A `Retry-After` of u64::MAX seconds is past any Instant: no panic.
        if Instant::now()
            .checked_add(wait)
            .is_none_or(|at| at >= deadline)
        {
            return (result, attempts);
        }
        tokio::time::sleep(wait).await;
    }
}

// Standard Webhooks headers, made once.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// One attempt, its answer read whole (a stream too, within `timeout`).
pub(super) async fn post(
    client: &reqwest::Client,
    config: &Config,
    id: &str,
    json: &str,
    timeout: Duration,
) -> Result<HttpAnswer, DeliveryError> {
    let deadline = tokio::time::Instant::now() + timeout;
    match post_answer(client, config, id, json, timeout).await? {
        Answer::Whole(answer) => Ok(answer),
        Answer::Stream(response) => {
            let content_type = Some(crate::conversion::stream::NDJSON.to_owned());
            let status = response.status().as_u16();
            let read = read_body(response, config.max_response);
            let body = timeout_at(deadline, read)
                .await
                .map_err(|_| DeliveryError::Timeout)??;
            Ok(HttpAnswer {
                status,
                content_type,
                retry_after: None,
                body,
            })
        }
    }
}

/// One attempt: the answer, read whole within `timeout`, or, a stream,
/// once its headers are in.
async fn post_answer(
    client: &reqwest::Client,
    config: &Config,
    id: &str,
    json: &str,
    timeout: Duration,
) -> Result<Answer, DeliveryError> {
    if timeout.is_zero() {
        return Err(DeliveryError::Timeout);
    }
    // The deadline is kept here, not by the client: a stream may go on past it.
    let deadline = tokio::time::Instant::now() + timeout;
    let timestamp = clock::unix_secs();
    let mut request = client
        .post(config.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(WEBHOOK_ID, id)
        .header(WEBHOOK_TIMESTAMP, timestamp);
    if !config.secrets.is_empty() || config.signing_key.is_some() {
        let signature = signing::signature(
            &config.secrets,
            config.signing_key.as_ref(),
            id,
            timestamp,
            json.as_bytes(),
        );
        request = request.header(WEBHOOK_SIGNATURE, signature);
    }
    let response = timeout_at(deadline, request.body(json.to_owned()).send())
        .await
        .map_err(|_| DeliveryError::Timeout)?
        .map_err(transport_error)?;
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(CONTENT_TYPE);
    if crate::conversion::stream::is_stream(status, content_type.as_deref()) {
        return Ok(Answer::Stream(response));
    }
    let retry_after =
        header(RETRY_AFTER).and_then(|value| retry::parse_retry_after(&value, clock::now()));
    // A reply may carry a file (§14): as large as the usual limit and the
    // file in base64 (with line breaks); a larger one without is refused.
    let limit = config.max_response + crate::upload::base64_size(config.max_upload);
    let body = timeout_at(deadline, read_body(response, limit))
        .await
        .map_err(|_| DeliveryError::Timeout)??;
    if body.len() > config.max_response && memchr::memmem::find(&body, b"\"file\"").is_none() {
        return Err(DeliveryError::TooLarge(config.max_response));
    }
    Ok(Answer::Whole(HttpAnswer {
        status,
        content_type,
        retry_after,
        body,
    }))
}

async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, DeliveryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(DeliveryError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What failed, in words for the sender: the innermost cause, without the URL
/// (it may hold credentials).
pub(super) fn transport_error(error: reqwest::Error) -> DeliveryError {
    if error.is_timeout() {
        return DeliveryError::Timeout;
    }
    let mut cause: &dyn std::error::Error = &error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    DeliveryError::Connection(format!("{what}: {cause}"))
}
