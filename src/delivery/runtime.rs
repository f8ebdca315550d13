//! The process-wide tokio runtime, and the fork generation that tells when
//! it (and whatever was built on it) must be built again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use once_cell::sync::Lazy;
use tokio::runtime::{Handle, Runtime};

use super::outcome::DeliveryError;
use super::wake;

/// Worker threads for HTTP: enough to keep up, leaving a core to Prosody's
/// own (Lua) thread, which is the one that limits a Prosody server. On two
/// cores one worker measured faster than two (`make bench`).
fn worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.saturating_sub(1).clamp(1, 4)
}

/// The runtime, with the fork generation it was started in. Started on
/// first use, not at load: `prosody -D` forks after loading modules, and
/// threads do not survive a fork.
static RUNTIME: Lazy<Mutex<Option<(u64, Runtime)>>> = Lazy::new(|| Mutex::new(None));

/// Bumped in the child after every fork: what was built before a fork is
/// rebuilt after it. Cheaper than asking the kernel for the pid per stanza.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn fork_generation() -> u64 {
    static WATCH: std::sync::Once = std::sync::Once::new();
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is
        // async-signal-safe as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    FORKS.load(Ordering::Relaxed)
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later call into another panic.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The runtime of this process (after its last fork).
pub(super) fn runtime() -> Result<Handle, DeliveryError> {
    let generation = fork_generation();
    let mut slot = lock(&RUNTIME);
    if let Some((started_in, runtime)) = slot.as_ref() {
        if *started_in == generation {
            return Ok(runtime.handle().clone());
        }
    }
    if let Some((_, stale)) = slot.take() {
        // Its threads are in the parent process; dropping it would wait for
        // them forever.
        std::mem::forget(stale);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("component-http")
        // One wake of Prosody's thread per batch of outcomes (see wake).
        .on_thread_park(wake::flush_deferred)
        .on_thread_unpark(wake::mark_parking_thread)
        .enable_all()
        .build()
        .map_err(|e| DeliveryError::Internal(format!("cannot start the HTTP runtime: {e}")))?;
    let handle = runtime.handle().clone();
    *slot = Some((generation, runtime));
    Ok(handle)
}
