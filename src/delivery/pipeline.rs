//! The life of a submitted stanza, as named stages: wait for its turn in
//! its conversation → take a slot → (durable delivery: hold it instead?) →
//! attempt (POST, with retries) → (a streamed answer: follow it; a reply
//! with a file: upload it) → settle (answer the sender, or hold).

use std::sync::Arc;
use std::time::Instant;

use tokio::time::timeout_at;

use super::http::{is_transient, post_with_retries, Answer};
use super::ordering::Place;
use super::outcome::{with_file, DeliveryError, Outcome};
use super::shared::{Job, Shared};
use super::stream;
use super::typing;
use crate::conversion::ReplyError;
use crate::rooms;
use crate::upload;
use crate::xml::Element;

/// Whatever way a delivery task ends (done, aborted, panicked), its stanza
/// is answered once and its conversation moves on.
pub(super) struct TaskGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    conversation: String,
}

impl TaskGuard {
    pub(super) fn new(shared: Arc<Shared>, id: u64, conversation: String) -> TaskGuard {
        TaskGuard {
            shared,
            id,
            conversation,
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        // Still owed an answer here only if the task panicked.
        self.shared.fail(
            self.id,
            DeliveryError::Internal("the delivery task stopped unexpectedly".into()),
        );
        self.shared.conversations.leave(&self.conversation);
    }
}

/// The task of one submitted stanza. Its deadline (`component_post_timeout`)
/// counts from its arrival, waits included; with durable delivery the waits
/// do not count (a stanza that waited is held or delivered at its turn).
pub(super) async fn run(
    guard: TaskGuard,
    job: Arc<Job>,
    mut place: Place,
    client: reqwest::Client,
    submitted: Instant,
) {
    let shared = &guard.shared;
    let durable = shared.config.durable;
    let deadline = submitted
        .checked_add(shared.config.timeout)
        .unwrap_or(submitted);
    // Its deadline passed while it waited: answered now, never POSTed.
    let expired = || {
        let error = Err(DeliveryError::Timeout);
        settle(shared, guard.id, &job, error, 0, submitted, None);
    };
    if !durable
        && timeout_at(deadline.into(), place.wait_for_turn())
            .await
            .is_err()
    {
        expired();
        // The conversation's next stanza still waits for the ones before
        // this, so that order holds.
        place.wait_for_turn().await;
        return;
    }
    place.wait_for_turn().await;
    let slot = if durable {
        Ok(shared.slots.acquire().await)
    } else {
        timeout_at(deadline.into(), shared.slots.acquire()).await
    };
    let Ok(Ok(_slot)) = slot else {
        return expired(); // (the semaphore is never closed)
    };
    if durable && !shared.may_send_now(guard.id, &job) {
        return; // held, or refused while the circuit is open
    }
    let deadline = if durable {
        Instant::now() + shared.config.timeout
    } else {
        deadline
    };
    // After a reload, as the reloaded module's config says.
    let target = shared.target();
    let client = if Arc::ptr_eq(&target, shared) {
        client
    } else {
        match target.connector.get(&target.config) {
            Ok((_, client)) => client,
            Err(error) => return settle(shared, guard.id, &job, Err(error), 0, submitted, None),
        }
    };
    let started = Instant::now();
    let attempt = post_with_retries(
        &client,
        &target.config,
        &job.delivery_id,
        &job.json,
        deadline,
    );
    let (result, attempts, mut typed) = attempt_typing(shared, &job, attempt).await;
    let result = match result {
        Ok(Answer::Whole(answer)) => Ok(answer),
        Err(error) => Err(error),
        // A stream holds its slot and its conversation until it ends (§18).
        Ok(Answer::Stream(response)) => {
            if durable {
                shared.count_result(false, false); // a 2xx: the service answers
            }
            let config = &target.config;
            let ended = stream::follow(
                shared, config, &job, response, started, deadline, &mut typed,
            );
            return match ended.await {
                Ok(outcome) => conclude(shared, guard.id, outcome, attempts, submitted, typed),
                Err(error) => settle(
                    shared,
                    guard.id,
                    &job,
                    Err(error),
                    attempts,
                    submitted,
                    typed,
                ),
            };
        }
    };
    // A reply with a file: the file is uploaded before the stanza settles,
    // so its conversation's next stanza waits for it (§14).
    let file = match &result {
        Ok(answer) => upload::file::in_answer(answer, target.config.max_upload),
        Err(_) => None,
    };
    match file {
        None => settle(shared, guard.id, &job, result, attempts, submitted, typed),
        Some(file) => {
            if shared.config.durable {
                shared.count_result(false, false); // a 200: the service answers
            }
            let mut outcome = job.decide(&shared.config.host, result);
            let carried = outcome.stanzas.iter().any(|s| s.name == "message");
            match file {
                // Nothing would carry it (a `kind` or `stanza` not a
                // message): the reply is invalid, never silently fileless.
                Err(error) if !carried => {
                    let error = DeliveryError::Reply(ReplyError::Invalid(error.to_string()));
                    outcome = job.decide(&shared.config.host, Err(error));
                    outcome.upload = Some(("invalid", 0));
                }
                _ if !carried => {} // (nothing is sent: not answerable)
                file => {
                    let uploaded = match &file {
                        Ok(file) => {
                            let deadline = Instant::now() + target.config.timeout;
                            target.upload(file, deadline).await.map(|url| (url, file))
                        }
                        Err(error) => Err(error.clone()),
                    };
                    outcome = with_file(outcome, &job.envelope, uploaded);
                }
            }
            conclude(shared, guard.id, outcome, attempts, submitted, typed);
        }
    }
}

/// The attempt, and if it takes `component_post_typing`, the sender sees
/// the bot typing meanwhile: one `composing`, whatever the retries (§17).
/// Also whether it was sent (then `active` must follow).
async fn attempt_typing<T>(
    shared: &Arc<Shared>,
    job: &Job,
    attempt: impl std::future::Future<Output = (T, u32)>,
) -> (T, u32, Option<Element>) {
    let typing =
        shared
            .config
            .typing
            .zip(typing::chat_state(&job.envelope, job.has_body, "composing"));
    let Some((after, composing)) = typing.filter(|_| job.command.is_none()) else {
        let (result, attempts) = attempt.await;
        return (result, attempts, None);
    };
    tokio::pin!(attempt);
    tokio::select! {
        (result, attempts) = &mut attempt => (result, attempts, None),
        () = tokio::time::sleep(after) => {
            shared.outbox.queue(Outcome {
                stanzas: vec![composing],
                ..Outcome::default()
            });
            let (result, attempts) = attempt.await;
            let active = typing::chat_state(&job.envelope, job.has_body, "active");
            (result, attempts, active)
        }
    }
}

/// The last stage: the sender gets the reply or the stanza error, or, with
/// durable delivery, a stanza the service could not take is held.
/// `active`: the chat state that must follow a `composing` sent.
fn settle(
    shared: &Arc<Shared>,
    id: u64,
    job: &Arc<Job>,
    result: Result<crate::conversion::HttpAnswer, DeliveryError>,
    attempts: u32,
    submitted: Instant,
    active: Option<Element>,
) {
    if shared.config.durable {
        let transient = is_transient(&result);
        shared.count_result(transient, false);
        if transient && job.may_be_held() && shared.hold(id, job) {
            if let Some(active) = active {
                shared.outbox.queue(Outcome {
                    stanzas: vec![active],
                    ..Outcome::default()
                });
            }
            return;
        }
    }
    let outcome = job.decide(&shared.config.host, result);
    conclude(shared, id, outcome, attempts, submitted, active);
}

/// Ends delivery `id` with `outcome`, told how many attempts it took, and
/// the `active` a `composing` sent asks for.
fn conclude(
    shared: &Arc<Shared>,
    id: u64,
    outcome: Outcome,
    attempts: u32,
    submitted: Instant,
    active: Option<Element>,
) {
    let config = &shared.config;
    let target = shared.target();
    shared.finish(id, |job| {
        let mut outcome = outcome;
        // A join past component_post_max_rooms is an invalid reply (the
        // rooms' state refuses it too, at sending, should replies race).
        let refused = outcome
            .stanzas
            .iter()
            .find_map(|s| rooms::refuse_join(s, &target.rooms, target.config.max_rooms));
        if let Some(why) = refused {
            let error = DeliveryError::Reply(ReplyError::Invalid(why));
            outcome = job.decide(&config.host, Err(error));
        }
        if let Some((_, line)) = outcome.log.as_mut() {
            match attempts {
                0 => line.push_str(" (while waiting its turn: never POSTed)"),
                1 => {}
                _ => line.push_str(&format!(" (after {attempts} attempts)")),
            }
        }
        outcome.seconds = Some(submitted.elapsed().as_secs_f64());
        outcome.retries = attempts.saturating_sub(1);
        match active {
            Some(active) => typing::with_active(outcome, active),
            None => outcome,
        }
    });
}
