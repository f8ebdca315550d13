//! Waking Prosody's thread: an eventfd its event loop watches, raised once
//! per batch of outcomes.
//!
//! Each wake costs Prosody's thread a turn of its event loop, a read of the
//! eventfd and, for the replies, a write to each client's socket; those
//! system calls cost more than the drain itself. So an HTTP worker does not
//! raise the eventfd as it queues an outcome: it raises it when it runs out
//! of work and parks ([`flush_deferred`], the runtime's park hook), which
//! gathers every answer read in one turn of its own event loop. A worker
//! that stays busy raises it anyway once [`BATCH`] outcomes or
//! [`DEFER_AT_MOST`] have gone by; any other thread raises it at once.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A non-blocking eventfd: written by workers, watched by Prosody.
pub(super) struct Signal(OwnedFd);

impl Signal {
    pub(super) fn new() -> std::io::Result<Signal> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is
        // checked before it is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Signal(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn raise(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor. A full
        // counter (EAGAIN) still leaves the fd readable, which is all we need.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(super) fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

/// Outcomes queued while a wake is deferred that make a worker raise it anyway.
const BATCH: usize = 64;
/// How long a busy worker may defer a wake.
const DEFER_AT_MOST: Duration = Duration::from_millis(1);

thread_local! {
    /// Whether this thread is a runtime worker that parks (set when it
    /// first wakes from parking; blocking-pool threads never park).
    static PARKS: Cell<bool> = const { Cell::new(false) };
    /// The signals this worker owes a raise when it parks, and since when.
    static DEFERRED: RefCell<Deferred> = const { RefCell::new(Deferred { since: None, signals: Vec::new() }) };
}

struct Deferred {
    since: Option<Instant>,
    signals: Vec<Arc<Signal>>,
}

/// The runtime's unpark hook: this thread parks, so it may defer wakes.
pub(super) fn mark_parking_thread() {
    PARKS.with(|parks| parks.set(true));
}

/// The runtime's park hook: raises the wakes this worker deferred.
pub(super) fn flush_deferred() {
    let signals = DEFERRED.with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        deferred.since = None;
        std::mem::take(&mut deferred.signals)
    });
    for signal in signals {
        signal.raise();
    }
}

/// Owes `signal` a raise at the next park (once, however often asked).
fn defer(signal: &Arc<Signal>) {
    DEFERRED.with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        if !deferred.signals.iter().any(|s| Arc::ptr_eq(s, signal)) {
            deferred.since.get_or_insert_with(Instant::now);
            deferred.signals.push(signal.clone());
        }
    });
}

/// A busy worker's bound: raises what it deferred longest ago.
fn flush_if_late() {
    let late = DEFERRED.with(|deferred| {
        deferred
            .borrow()
            .since
            .is_some_and(|since| since.elapsed() >= DEFER_AT_MOST)
    });
    if late {
        flush_deferred();
    }
}

/// Wakes Prosody for an outcome just queued (`queued` now waiting; the
/// first when `was_empty`), at once or at this worker's next park.
pub(super) fn wake(signal: &Arc<Signal>, was_empty: bool, queued: usize) {
    if !PARKS.with(Cell::get) {
        if was_empty {
            signal.raise();
        }
        return;
    }
    if was_empty {
        defer(signal);
    } else if queued.is_multiple_of(BATCH) {
        signal.raise();
    }
    flush_if_late();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raised(signal: &Signal) -> bool {
        let mut poll = libc::pollfd {
            fd: signal.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, no wait.
        unsafe { libc::poll(&mut poll, 1, 0) == 1 }
    }

    // Each test runs on a thread of its own: the deferral is per thread.
    fn on_thread(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(test).join().unwrap();
    }

    #[test]
    fn a_thread_that_does_not_park_raises_at_once() {
        on_thread(|| {
            let signal = Arc::new(Signal::new().unwrap());
            wake(&signal, true, 1);
            assert!(raised(&signal));
            signal.clear();
            wake(&signal, false, 2);
            assert!(!raised(&signal), "raised once per batch");
        });
    }

    #[test]
    fn a_worker_raises_when_it_parks_once_for_a_batch() {
        on_thread(|| {
            mark_parking_thread();
            let signal = Arc::new(Signal::new().unwrap());
            let other = Arc::new(Signal::new().unwrap());
            wake(&signal, true, 1);
            wake(&signal, false, 2);
            wake(&other, true, 1);
            assert!(!raised(&signal) && !raised(&other));
            flush_deferred();
            assert!(raised(&signal) && raised(&other));
            signal.clear();
            flush_deferred();
            assert!(!raised(&signal), "nothing owed after the flush");
        });
    }

    #[test]
    fn a_busy_worker_raises_after_a_full_batch_or_a_while() {
        on_thread(|| {
            mark_parking_thread();
            let signal = Arc::new(Signal::new().unwrap());
            wake(&signal, true, 1);
            for queued in 2..BATCH {
                wake(&signal, false, queued);
            }
            assert!(!raised(&signal));
            wake(&signal, false, BATCH);
            assert!(raised(&signal), "a full batch");
            flush_deferred();
            signal.clear();

            let late = Arc::new(Signal::new().unwrap());
            wake(&late, true, 1);
            std::thread::sleep(DEFER_AT_MOST * 2);
            wake(&signal, true, 1);
            assert!(raised(&late), "deferred longer than DEFER_AT_MOST");
        });
    }
}
