//! The provider's thread: waits for socket readiness (mio) and for work handed to it, and
//! drives the sockets' pending requests and events, at DISPATCH_LEVEL — itself, or, when the
//! fault plan asks for concurrent event delivery, through a pool of delivery threads (also at
//! DISPATCH_LEVEL) that progress sockets in parallel, several at once on one socket.
//!
//! The provider is fair, as Windows' is: each pass of the provider's thread serves the sockets
//! that were ready or queued when it began, each for a bounded amount of work
//! ([`HostSocket::progress`] returns after [`super::socket::ROUNDS_PER_PASS`] rounds and queues
//! the socket again at the back), a socket is queued at most once, and a request a client
//! issues from a completion routine or callback on a provider thread completes inline at most
//! [`INLINE_BUDGET`] times per run (after that it pends, and the client's loop yields). One
//! busy socket cannot keep the others waiting.
//!
//! Each run of a provider thread at DISPATCH_LEVEL — a socket's pass, with the completion
//! routines and event callbacks it calls, or a deferred action — is a DPC on Windows, where
//! the DPC watchdog bug checks (0x133, `DPC_WATCHDOG_VIOLATION`) one that runs too long. A run
//! longer than [`ProviderConfig::dispatch_run_budget`](crate::ProviderConfig) is reported as
//! [`Rule::DpcWatchdogViolation`](crate::Rule::DpcWatchdogViolation).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::socket::HostSocket;
use crate::faults;
use crate::irql;
use crate::verifier::{Rule, bug_check};

const WAKE: Token = Token(usize::MAX);

/// Requests a client issues from one run of a provider thread that may complete inline
/// (before the WSK function returns); the next ones pend and complete in a later pass.
pub(crate) const INLINE_BUDGET: u32 = 8;

thread_local! {
    /// Inline completions left in the current run of a provider thread; `None` outside runs
    /// (a client's own thread completes inline without limit: it starves nobody).
    static INLINE_LEFT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Whether a request that can finish at once may complete inline now: always outside a
/// provider run, at most [`INLINE_BUDGET`] times within one.
pub(crate) fn take_inline_allowance() -> bool {
    INLINE_LEFT.with(|left| match left.get() {
        None => true,
        Some(0) => false,
        Some(n) => {
            left.set(Some(n - 1));
            true
        }
    })
}

/// A run of a provider thread at DISPATCH_LEVEL (a DPC on Windows): bounds its inline
/// completions and, when it ends, reports it to the verifier if it took longer than the
/// session's budget. Runs nest (a socket progressed from within another's run): only the
/// outermost is measured.
#[must_use]
pub(crate) struct DispatchRun {
    started: Instant,
    previous: Option<u32>,
    what: &'static str,
}

impl DispatchRun {
    /// Starts a run; `what` names it in a report.
    pub(crate) fn begin(what: &'static str) -> DispatchRun {
        let previous = INLINE_LEFT.with(|left| left.replace(Some(INLINE_BUDGET)));
        DispatchRun {
            started: Instant::now(),
            previous,
            what,
        }
    }
}

impl Drop for DispatchRun {
    fn drop(&mut self) {
        INLINE_LEFT.with(|left| left.set(self.previous));
        if self.previous.is_some() {
            return;
        }
        let Some(budget) = crate::session::dispatch_run_budget() else {
            return;
        };
        let elapsed = self.started.elapsed();
        if elapsed > budget {
            bug_check(
                Rule::DpcWatchdogViolation,
                format!(
                    "{} ran {elapsed:.1?} at DISPATCH_LEVEL on a provider thread, over the \
                     budget of {budget:?} (on Windows the DPC watchdog bug checks with 0x133): \
                     a completion routine or callback must return promptly and continue long \
                     work later (a DPC, a work item)",
                    self.what
                ),
            );
        }
    }
}

/// Work queued for the provider's thread.
enum Work {
    /// Progress a socket (requests were queued, or it may be ready).
    Socket(Arc<HostSocket>),
    /// Run a deferred action (delayed completions).
    Deferred(Instant, Box<dyn FnOnce() + Send>),
}

pub(crate) struct Reactor {
    registry: Registry,
    waker: Waker,
    queue: Mutex<VecDeque<Work>>,
    /// Work in progress on the provider's thread (0 when it waits for events with nothing
    /// deferred), for `wait_idle`.
    busy: Mutex<usize>,
    idle: Condvar,
    /// The delivery threads of concurrent event delivery.
    pool: Mutex<Pool>,
    /// Signalled when the pool has work, or a thread of it finished some.
    pool_changed: Condvar,
}

/// Sockets to progress on the delivery threads (concurrent event delivery).
#[derive(Default)]
struct Pool {
    /// Sockets to progress, a socket possibly several times (each entry may deliver one of
    /// its events while another thread delivers the next).
    queue: VecDeque<Arc<HostSocket>>,
    /// Delivery threads started (they are never stopped).
    threads: usize,
    /// Threads progressing a socket now.
    running: usize,
    /// How many may progress sockets at once: the plan's thread count.
    limit: usize,
}

static REACTOR: OnceLock<Arc<Reactor>> = OnceLock::new();

/// Waits until the provider's thread is idle, if it was started.
pub(crate) fn wait_idle_if_started(timeout: Duration) {
    if let Some(reactor) = REACTOR.get() {
        reactor.wait_idle(timeout);
    }
}

/// The reactor, started on first use.
pub(crate) fn reactor() -> &'static Arc<Reactor> {
    REACTOR.get_or_init(|| {
        let poll = Poll::new().expect("the provider's poll instance");
        let registry = poll.registry().try_clone().expect("a poll registry handle");
        let waker = Waker::new(poll.registry(), WAKE).expect("the provider's waker");
        let reactor = Arc::new(Reactor {
            registry,
            waker,
            queue: Mutex::new(VecDeque::new()),
            busy: Mutex::new(0),
            idle: Condvar::new(),
            pool: Mutex::new(Pool::default()),
            pool_changed: Condvar::new(),
        });
        let thread_reactor = Arc::clone(&reactor);
        std::thread::Builder::new()
            .name("wsk-host-provider".into())
            .spawn(move || thread_reactor.run(poll))
            .expect("the provider's thread");
        reactor
    })
}

impl Reactor {
    /// Registers a socket's I/O source for readiness events under `token`.
    pub(crate) fn register(
        &self,
        source: &mut impl mio::event::Source,
        token: usize,
        interest: Interest,
    ) {
        if let Err(error) = self.registry.register(source, Token(token), interest) {
            eprintln!("wsk-host: registering a socket with the poll failed: {error}");
        }
    }

    /// Stops readiness events of a socket's I/O source.
    pub(crate) fn deregister(&self, source: &mut impl mio::event::Source) {
        let _ = self.registry.deregister(source);
    }

    /// Asks the provider's thread to progress `socket` (queued once: a socket already queued
    /// keeps its place).
    pub(crate) fn kick(&self, socket: Arc<HostSocket>) {
        if socket.kicked.swap(true, Ordering::AcqRel) {
            return;
        }
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Work::Socket(socket));
        let _ = self.waker.wake();
    }

    /// Runs `action` on the provider's thread after `delay`.
    pub(crate) fn defer(&self, delay: Duration, action: Box<dyn FnOnce() + Send>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Work::Deferred(Instant::now() + delay, action));
        let _ = self.waker.wake();
    }

    /// Progresses `socket`: on a delivery thread when events are delivered concurrently (so
    /// that it runs in parallel with other sockets' callbacks and with this socket's own),
    /// else here, on the calling (provider's) thread.
    fn progress(&self, socket: Arc<HostSocket>) {
        let threads = faults::event_threads();
        if threads > 1 {
            self.deliver_concurrently(socket, threads);
        } else {
            let _run = DispatchRun::begin("a socket's completions and callbacks");
            socket.progress();
        }
    }

    /// Queues `socket` for a delivery thread; at most `threads` of them progress sockets at
    /// once (started on first need).
    pub(crate) fn deliver_concurrently(&self, socket: Arc<HostSocket>, threads: usize) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.limit = threads;
        while pool.threads < threads {
            let spawned = std::thread::Builder::new()
                .name(format!("wsk-host-delivery-{}", pool.threads))
                .spawn(|| reactor().deliver());
            if let Err(error) = spawned {
                eprintln!("wsk-host: starting a delivery thread failed: {error}");
                break;
            }
            pool.threads += 1;
        }
        if pool.threads == 0 {
            // Not one delivery thread: progress the socket here rather than never.
            drop(pool);
            let _run = DispatchRun::begin("a socket's completions and callbacks");
            socket.progress();
            return;
        }
        pool.queue.push_back(socket);
        drop(pool);
        self.pool_changed.notify_all();
    }

    /// A delivery thread: progresses the sockets queued for it, at DISPATCH_LEVEL.
    fn deliver(&self) {
        irql::set(wsk_sys::DISPATCH_LEVEL);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pool.running < pool.limit {
                if let Some(socket) = pool.queue.pop_front() {
                    pool.running += 1;
                    drop(pool);
                    {
                        let _run = DispatchRun::begin("a socket's callbacks on a delivery thread");
                        socket.progress();
                    }
                    drop(socket);
                    pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                    pool.running -= 1;
                    self.pool_changed.notify_all();
                    self.idle.notify_all();
                    continue;
                }
            }
            pool = self
                .pool_changed
                .wait(pool)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether the delivery threads have nothing queued and nothing running.
    fn pool_idle(&self) -> bool {
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.queue.is_empty() && pool.running == 0
    }

    /// Waits until the provider's thread has nothing queued and is waiting for events, and
    /// the delivery threads have nothing queued or running.
    pub(crate) fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let queued = !self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if *busy == 0 && !queued && self.pool_idle() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            busy = self
                .idle
                .wait_timeout(busy, (deadline - now).min(Duration::from_millis(10)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn run(&self, mut poll: Poll) {
        irql::set(wsk_sys::DISPATCH_LEVEL);
        let mut events = Events::with_capacity(256);
        let mut deferred: Vec<(Instant, Box<dyn FnOnce() + Send>)> = Vec::new();
        let mut batch: VecDeque<Work> = VecDeque::new();
        loop {
            let queued = !self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            // Work queued for the next pass: look at readiness without waiting.
            let timeout = if queued {
                Some(Duration::ZERO)
            } else {
                deferred
                    .iter()
                    .map(|(at, _)| at.saturating_duration_since(Instant::now()))
                    .min()
            };
            // Delayed completions still waiting count as work: the provider is not idle.
            *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = deferred.len();
            self.idle.notify_all();
            if let Err(error) = poll.poll(&mut events, timeout) {
                if error.kind() != std::io::ErrorKind::Interrupted {
                    eprintln!("wsk-host: the provider's poll failed: {error}");
                }
                continue;
            }
            *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = 1;
            for event in &events {
                if event.token() == WAKE {
                    continue;
                }
                if let Some(socket) = super::socket_by_token(event.token().0) {
                    self.progress(socket);
                }
            }
            // This pass serves what was queued when it began; what its runs queue (a socket
            // with more to do, requests issued from completion routines) waits for the next
            // pass, after the sockets that became ready meanwhile.
            // Swapped with the queue, not taken: both keep their capacity, so a steady flow
            // of requests queues without allocating.
            std::mem::swap(
                &mut batch,
                &mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()),
            );
            for work in batch.drain(..) {
                match work {
                    Work::Socket(socket) => {
                        socket.kicked.store(false, Ordering::Release);
                        self.progress(socket);
                    }
                    Work::Deferred(at, action) => deferred.push((at, action)),
                }
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = deferred.drain(..).partition(|(at, _)| *at <= now);
            deferred = later;
            for (_, action) in due {
                let _run = DispatchRun::begin("a deferred completion");
                action();
            }
        }
    }
}
