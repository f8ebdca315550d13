//! The life of a submitted stanza, as named stages: wait for its turn in
//! its conversation → take a slot → (durable delivery: hold it instead?) →
//! attempt (POST, with retries) → settle (answer the sender, or hold).

use std::sync::Arc;
use std::time::Instant;

use super::http::{is_transient, post_with_retries};
use super::ordering::Place;
use super::outcome::{outcome, DeliveryError};
use super::shared::{Job, Shared};

/// Whatever way a delivery task ends (done, aborted, panicked), its stanza
/// is answered once and its conversation moves on.
pub(super) struct TaskGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    conversation: Option<String>,
}

impl TaskGuard {
    pub(super) fn new(shared: Arc<Shared>, id: u64, conversation: Option<String>) -> TaskGuard {
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
        if let Some(key) = self.conversation.take() {
            self.shared.conversations.leave(&key, self.id);
        }
    }
}

/// The task of one submitted stanza.
pub(super) async fn run(
    guard: TaskGuard,
    job: Arc<Job>,
    mut place: Place,
    client: reqwest::Client,
    submitted: Instant,
) {
    place.wait_for_turn().await;
    let shared = &guard.shared;
    let Ok(_slot) = shared.slots.acquire().await else {
        return; // the semaphore is never closed
    };
    if shared.config.durable && !shared.may_send_now(guard.id, &job) {
        return; // held, or refused while the circuit is open
    }
    let (result, attempts) =
        post_with_retries(&client, &shared.config, &job.delivery_id, &job.json).await;
    settle(shared, guard.id, &job, result, attempts, submitted);
}

/// The last stage: the sender gets the reply or the stanza error, or, with
/// durable delivery, a stanza the service could not take is held.
fn settle(
    shared: &Arc<Shared>,
    id: u64,
    job: &Arc<Job>,
    result: Result<crate::conversion::HttpAnswer, DeliveryError>,
    attempts: u32,
    submitted: Instant,
) {
    if shared.config.durable {
        let transient = is_transient(&result);
        shared.count_result(transient, false);
        if transient && job.may_be_held() && shared.hold(id, job) {
            return;
        }
    }
    let host = &shared.config.host;
    shared.finish(id, |envelope| {
        let mut outcome = outcome(envelope, host, result);
        if let Some((_, line)) = outcome.log.as_mut().filter(|_| attempts > 1) {
            line.push_str(&format!(" (after {attempts} attempts)"));
        }
        outcome.seconds = Some(submitted.elapsed().as_secs_f64());
        outcome.retries = attempts - 1;
        outcome
    });
}
