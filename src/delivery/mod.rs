//! POSTing stanzas off Prosody's thread. Each stanza becomes a task on a
//! shared tokio runtime ([`runtime`]) that goes through the stages of
//! [`pipeline`]; its [`Outcome`] is queued in the [`outbox`] and signalled
//! on an eventfd that Prosody's event loop watches, then drained on
//! Prosody's thread. Nothing here touches Lua.
//!
//! Per component host: at most `max_inflight` POSTs at once and
//! `queue_size` more stanzas waiting (beyond that a stanza is refused at
//! once); stanzas of one conversation go one at a time, in arrival order
//! ([`ordering`]); failed attempts are retried with backoff within the
//! stanza's deadline ([`retry`], [`http`]); with durable delivery, what the
//! service cannot take is held and delivered later ([`durable`], [`held`]).

mod durable;
pub mod held;
mod http;
mod ordering;
mod outbox;
mod outcome;
mod pipeline;
pub mod retry;
mod runtime;
mod shared;
mod stream;
#[cfg(test)]
mod tests;
mod typing;
mod upload;
mod wake;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

pub use durable::{DurableAdmin, HeldCounts, Source};
pub use held::{Record, Storage};
pub use outcome::{decide, decide_step, DeliveryError, LogLevel, Outcome, Status};
pub use upload::HostUploader;

use crate::commands::{self, Commands, SharedCommands, Step};
use crate::config::{Config, Ordering};
use crate::conversion::{self, Context, Request, RoomJids};
use crate::effect::Effect;
use crate::jid;
use crate::local;
use crate::push::Endpoint;
use crate::rooms::{self, Rooms, SharedRooms};
use crate::signing;
use crate::xml::Element;
use ordering::{conversation_of, Conversations, Full};
use outbox::Outbox;
use pipeline::TaskGuard;
use runtime::lock;
use shared::{Job, Owed, OwedStanza, Shared};

/// Why the module stops answering: what senders of stanzas still owed an
/// answer, and push callers still waiting, are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Unloaded,
    ShuttingDown,
}

impl Stop {
    pub fn why(self) -> &'static str {
        match self {
            Stop::Unloaded => "the module was unloaded",
            Stop::ShuttingDown => "the server is shutting down",
        }
    }
}

fn effects_of(outcomes: Vec<Outcome>) -> Vec<Effect> {
    let mut effects = Vec::with_capacity(outcomes.len() * 2);
    for outcome in outcomes {
        outcome.into_effects(&mut effects);
    }
    effects
}

/// The deliveries of one component host.
pub struct Delivery {
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl Delivery {
    pub fn new(config: Config) -> Result<Delivery, DeliveryError> {
        let outbox = Outbox::new()
            .map_err(|e| DeliveryError::Internal(format!("cannot create an eventfd: {e}")))?;
        let (config_commands, command_timeout) = (config.commands.clone(), config.command_timeout);
        Ok(Delivery {
            shared: Arc::new(Shared {
                slots: Semaphore::new(config.max_inflight),
                config,
                durable: shared::Durable::default(),
                owed: Mutex::new(Owed::default()),
                outbox,
                conversations: Conversations::default(),
                connector: http::Connector::default(),
                refusing: AtomicBool::new(false),
                last_received: AtomicU64::new(0),
                rooms: RoomJids::default(),
                group_chat: Mutex::new(None),
                commands: Arc::new(Mutex::new(Commands::new(config_commands, command_timeout))),
                uploads: shared::Uploads::default(),
                successor: Mutex::new(None),
            }),
            next_id: AtomicU64::new(1),
        })
    }

    /// The host's group chat, sharing this delivery's rooms (so that no
    /// error goes to them) and the cap on how many; what the web service
    /// sends through this delivery (and the push endpoint made after it)
    /// goes through it.
    pub fn rooms(&self, nick: Option<&str>) -> SharedRooms {
        let config = &self.shared.config;
        let rooms = Rooms::new(
            &config.host,
            nick,
            self.shared.rooms.clone(),
            config.max_rooms,
        )
        .with_face(Arc::clone(&config.face))
        .with_configured(config.rooms.clone(), config.room_mentions_only);
        let rooms: SharedRooms = Arc::new(Mutex::new(rooms));
        *lock(&self.shared.group_chat) = Some(Arc::clone(&rooms));
        rooms
    }

    /// The host's push endpoint, or `None` when pushing is off.
    pub fn push_endpoint(&self) -> Option<Endpoint> {
        let group_chat = lock(&self.shared.group_chat).clone();
        let commands = self.commands();
        let uploads = Arc::new(HostUploader(Arc::clone(&self.shared)));
        Endpoint::new(
            &self.shared.config,
            self.shared.rooms.clone(),
            group_chat,
            commands,
            uploads,
        )
    }

    /// The host's commands: its menu and the sessions being run.
    pub fn commands(&self) -> SharedCommands {
        Arc::clone(&self.shared.commands)
    }

    /// An IQ result or error to the component: whether it answers one an
    /// upload awaits (then it is that upload's; see [`upload`]).
    pub fn upload_answer(&self, stanza: &Element) -> bool {
        self.shared.uploads.answer(stanza)
    }

    /// The commands the menu has, and the sessions open.
    pub fn command_counts(&self) -> (usize, usize) {
        let commands = commands::lock(&self.shared.commands);
        (commands.menu.items().len(), commands.sessions())
    }

    /// At load: the menu the web service pushed before, as kept in storage
    /// (a log line if it cannot be read: the configured menu is served).
    pub fn restore_menu(&self, json: &str) -> Vec<Effect> {
        match commands::lock(&self.shared.commands).restore(json) {
            Ok(()) => Vec::new(),
            Err(why) => vec![Effect::Log(
                LogLevel::Error,
                format!("The menu the web service pushed cannot be read back ({why}): serving the configured one"),
            )],
        }
    }

    /// A reload: the sessions of `old`'s commands go on here.
    pub fn take_sessions(&self, old: &Delivery) {
        if Arc::ptr_eq(&self.shared.commands, &old.shared.commands) {
            return;
        }
        let mut old = commands::lock(&old.shared.commands);
        commands::lock(&self.shared.commands).take_sessions(&mut old);
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The descriptor that becomes readable when outcomes are waiting.
    pub fn fd(&self) -> RawFd {
        self.shared.outbox.fd()
    }

    /// Stanzas accepted and not yet answered.
    pub fn owed(&self) -> usize {
        lock(&self.shared.owed).len()
    }

    /// For metrics: POSTs in progress, and stanzas waiting for a slot.
    pub fn counts(&self) -> (usize, usize) {
        let running = self.shared.config.max_inflight - self.shared.slots.available_permits();
        (running, self.owed().saturating_sub(running))
    }

    /// A stanza to forward: submitted (its outcome comes through
    /// [`Delivery::drain_effects`]), or, when it cannot be made a request,
    /// what its sender gets now.
    pub fn post(&self, stanza: &Element) -> Vec<Effect> {
        self.post_with(stanza, Context::default())
    }

    /// As [`Delivery::post`], with what the module knows of the stanza.
    pub fn post_with(&self, stanza: &Element, context: Context) -> Vec<Effect> {
        match conversion::request_with(stanza, context) {
            Ok(request) => {
                self.submit(request);
                Vec::new()
            }
            Err(why) => self.unreadable(stanza, &why.to_string()),
        }
    }

    /// A command step to forward (see [`crate::commands`]): POSTed with
    /// its `command` key; its answer becomes the command's result.
    pub fn post_step(&self, stanza: &Element, step: Step) -> Vec<Effect> {
        let context = Context {
            command: Some(&step.json),
            ..Context::default()
        };
        match conversion::request_with(stanza, context) {
            Ok(request) => {
                self.submit_job(request, Some(step));
                Vec::new()
            }
            Err(why) => self.unreadable(stanza, &why.to_string()),
        }
    }

    /// A stanza to forward that cannot be read: see [`local::unreadable`].
    pub fn unreadable(&self, top: &Element, why: &str) -> Vec<Effect> {
        let text = Some("could not forward the stanza");
        local::unreadable(top, "forward", why, text, Some(&self.shared.rooms))
    }

    /// Starts delivering `request`; returns at once. Its outcome arrives
    /// through [`Delivery::drain`], whatever happens to it.
    pub fn submit(&self, request: Request) {
        self.submit_job(request, None);
    }

    fn submit_job(&self, request: Request, command: Option<Step>) {
        let shared = &self.shared;
        let config = &shared.config;
        let id = self.next_id.fetch_add(1, AtomicOrdering::Relaxed);
        let Request {
            mut envelope,
            json,
            xml,
            has_body,
        } = request;
        if jid::host(&envelope.from).eq_ignore_ascii_case(&config.host) {
            // Its answer would come back here, and so on: not POSTed, and
            // not answered (docs/contract.md §5).
            shared.outbox.queue(Outcome {
                label: "loop",
                ..Outcome::log_only(
                    LogLevel::Warn,
                    format!(
                        "Not forwarding {}: it comes from this component itself (a loop)",
                        envelope.describe()
                    ),
                )
            });
            return;
        }
        envelope.from_room |= shared.rooms.contains(&envelope.from);
        let ordered = config.ordering == Ordering::Conversation;
        let job = Arc::new(Job {
            conversation: conversation_of(&envelope),
            received: if config.durable { shared.stamp() } else { 0 },
            envelope,
            json,
            xml: config.durable.then_some(xml),
            command,
            has_body,
            delivery_id: signing::delivery_id(),
        });
        let mut owed = lock(&shared.owed);
        if !shared.admit(&owed, &job) {
            return;
        }
        owed.insert(
            id,
            OwedStanza {
                job: Arc::clone(&job),
                abort: None,
            },
        );
        let (runtime, client) = match shared.connector.get(config) {
            Ok(started) => started,
            Err(error) => {
                drop(owed);
                shared.fail(id, error);
                return;
            }
        };
        let place =
            match shared
                .conversations
                .join(&job.conversation, ordered, config.conversation_queue)
            {
                Ok(place) => place,
                Err(Full) => {
                    drop(owed);
                    shared.fail(id, DeliveryError::ConversationFull);
                    return;
                }
            };
        let guard = TaskGuard::new(Arc::clone(shared), id, job.conversation.clone());
        // Spawned while holding the `owed` lock, so the task cannot finish
        // before its abort handle is recorded.
        let task = runtime.spawn(pipeline::run(guard, job, place, client, Instant::now()));
        if let Some(entry) = owed.get_mut(&id) {
            entry.abort = Some(task.abort_handle());
        }
    }

    /// A reload: this delivery takes over from `old` (of the module
    /// before), which goes on with what it has: its stanzas waiting are
    /// POSTed as this one's config says (the new URL, secrets, headers),
    /// those being POSTed finish, and their outcomes come through `old`'s
    /// descriptor until it owes nothing. This one's stanzas of a
    /// conversation wait for `old`'s.
    pub fn take_over(&self, old: &Delivery) {
        *lock(&old.shared.successor) = Some(Arc::clone(&self.shared));
        old.shared
            .conversations
            .hand_over(&self.shared.conversations);
    }

    /// The outcomes that arrived since the last drain.
    pub fn drain(&self) -> Vec<Outcome> {
        self.shared.outbox.drain()
    }

    /// What Prosody's side does for the outcomes that arrived since the
    /// last drain.
    pub fn drain_effects(&self) -> Vec<Effect> {
        let mut outcomes = self.drain();
        // The newest delivery's commands and rooms: after a reload, the
        // module's own.
        let target = self.shared.target();
        let settled: Vec<_> = outcomes
            .iter_mut()
            .filter_map(|o| o.session.take())
            .collect();
        if !settled.is_empty() {
            let mut commands = commands::lock(&target.commands);
            for settled in settled {
                commands.settle(settled);
            }
        }
        let mut effects = effects_of(outcomes);
        target.config.face.dress_all(&mut effects);
        let group_chat = lock(&target.group_chat).clone();
        match group_chat {
            Some(shared) => rooms::lock(&shared).sending(effects, Instant::now()),
            None => effects,
        }
    }

    /// The module stops: [`Delivery::cancel_all`] with the reason senders
    /// are told, as effects.
    pub fn stop(&self, stop: Stop) -> Vec<Effect> {
        effects_of(self.cancel_all(stop.why()))
    }

    /// Cancels every stanza still in flight or waiting; each one's sender
    /// gets an error, or with durable delivery the stanza is held in the
    /// store for the next start. Returns those outcomes along with outcomes
    /// not yet drained.
    pub fn cancel_all(&self, why: &'static str) -> Vec<Outcome> {
        let shared = &self.shared;
        // Redeliverers first: what they hold is in the store already.
        shared.close_durable();
        let cancelled: Vec<OwedStanza> = lock(&shared.owed).drain();
        let mut outcomes = self.drain();
        let host = &shared.config.host;
        for entry in cancelled {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
            let job = entry.job;
            outcomes.push(if shared.config.durable && job.may_be_held() {
                Outcome {
                    label: "held",
                    storage: Some(Storage::Hold(job.record())),
                    ..Outcome::default()
                }
            } else {
                job.decide(host, Err(DeliveryError::Cancelled(why)))
            });
        }
        outcomes
    }

    /// Durable delivery's admin (the store at load, the admin shell), when
    /// durable delivery is on.
    pub fn durable(&self) -> Option<DurableAdmin> {
        self.shared
            .config
            .durable
            .then(|| DurableAdmin::new(Arc::clone(&self.shared)))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Nobody is left to drain: stop the requests rather than let them
        // run for nothing.
        self.shared.close_durable();
        for entry in lock(&self.shared.owed).drain() {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
        }
    }
}
