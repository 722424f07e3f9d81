//! The provider's thread: waits for socket readiness (mio) and for work handed to it, and
//! drives the sockets' pending requests and events, at DISPATCH_LEVEL.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::socket::HostSocket;
use crate::irql;

const WAKE: Token = Token(usize::MAX);

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

    /// Asks the provider's thread to progress `socket`.
    pub(crate) fn kick(&self, socket: Arc<HostSocket>) {
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

    /// Waits until the provider's thread has nothing queued and is waiting for events.
    pub(crate) fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let queued = !self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if *busy == 0 && !queued {
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
        loop {
            let timeout = deferred
                .iter()
                .map(|(at, _)| at.saturating_duration_since(Instant::now()))
                .min();
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
                    socket.progress();
                }
            }
            loop {
                let work = self
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                match work {
                    Some(Work::Socket(socket)) => socket.progress(),
                    Some(Work::Deferred(at, action)) => deferred.push((at, action)),
                    None => break,
                }
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = deferred.drain(..).partition(|(at, _)| *at <= now);
            deferred = later;
            for (_, action) in due {
                action();
            }
        }
    }
}
