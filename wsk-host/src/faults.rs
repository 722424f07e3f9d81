//! Fault injection: deterministic, seedable failures and completion behaviours, so that the
//! error paths of a driver are tested, not hoped for.

use std::sync::Mutex;
use std::time::Duration;

use wsk_sys::NTSTATUS;

/// Which calls of a kind fail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nth {
    /// None.
    Never,
    /// Only the n-th call of the session (1-based).
    Call(u64),
    /// Every n-th call (n >= 1).
    Every(u64),
    /// Each call with this probability, drawn from the plan's seeded generator.
    Probability(f64),
}

/// How the provider completes the requests it is given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CompletionMode {
    /// Completes in the calling thread when the request can finish at once, else later from
    /// the provider's thread; which one is drawn from the seeded generator when both are
    /// possible (the default: both paths get exercised).
    Mixed,
    /// Completes in the calling thread whenever the request can finish at once.
    AlwaysInline,
    /// Always returns `STATUS_PENDING` and completes from the provider's thread.
    AlwaysPending,
}

/// What the provider does with the requests of one WSK function, instead of its work (see
/// [`FaultPlan::fail_requests`] and [`FaultPlan::abandon_requests`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// Completes the IRP at once with this status (a provider without the feature).
    Fail(NTSTATUS),
    /// Returns this status without completing or pending the IRP, which the provider never
    /// touches again: a broken provider (Wine's `WskSocketConnect`, `WskGetLocalAddress` and
    /// `WskDisconnect` return `STATUS_NOT_IMPLEMENTED` so).
    Abandon(NTSTATUS),
}

/// A fault plan; see [`crate::Session::set_faults`].
#[derive(Clone, Debug)]
pub struct FaultPlan {
    pub(crate) seed: u64,
    pub(crate) irp_allocation: Nth,
    pub(crate) mdl_allocation: Nth,
    pub(crate) pool_allocation: Nth,
    pub(crate) reset_after: Option<u64>,
    pub(crate) refuse_connections: bool,
    pub(crate) partial_sends: Option<usize>,
    pub(crate) completion: CompletionMode,
    pub(crate) delay: Option<Duration>,
    /// Threads delivering event callbacks (1: the provider's thread alone).
    pub(crate) event_threads: usize,
    /// Inline completions run at the caller's IRQL instead of DISPATCH_LEVEL.
    pub(crate) inline_at_caller_irql: bool,
    /// Timers as Wine's kernel runs them.
    pub(crate) wine_timers: bool,
    /// Which `IoAllocateWorkItem` calls fail.
    pub(crate) work_item_allocation: Nth,
    /// WSK functions (by routine name) whose requests are failed or abandoned.
    pub(crate) scripted: Vec<(String, Scripted)>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::new(0x5753_4b48_4f53_5421)
    }
}

impl FaultPlan {
    /// No faults, mixed completion, with `seed` for every random draw; the delivery modes
    /// ([`concurrent_events`](FaultPlan::concurrent_events),
    /// [`inline_completion_at_caller_irql`](FaultPlan::inline_completion_at_caller_irql)) are
    /// those named by the `WSK_HOST_MODES` environment variable (see [`FaultPlan::from_env`]),
    /// off when it is unset.
    ///
    /// # Panics
    /// If `WSK_HOST_MODES` names an unknown mode.
    #[must_use]
    pub fn new(seed: u64) -> FaultPlan {
        let (event_threads, inline_at_caller_irql) = modes_from_env();
        FaultPlan {
            seed,
            irp_allocation: Nth::Never,
            mdl_allocation: Nth::Never,
            pool_allocation: Nth::Never,
            reset_after: None,
            refuse_connections: false,
            partial_sends: None,
            completion: CompletionMode::Mixed,
            delay: None,
            event_threads,
            inline_at_caller_irql,
            wine_timers: false,
            work_item_allocation: Nth::Never,
            scripted: Vec::new(),
        }
    }

    /// Every request of the WSK function `routine` completes at once with `status`, without
    /// doing anything else. `routine` is the WDK name (`WskGetLocalAddress`), or `WskSocket`
    /// with a socket kind for the creation of that kind only: `WskSocket(basic)`,
    /// `WskSocket(listen)`, `WskSocket(connection)`, `WskSocket(datagram)`,
    /// `WskSocket(stream)`.
    #[must_use]
    pub fn fail_requests(mut self, routine: &str, status: NTSTATUS) -> Self {
        self.scripted
            .push((routine.to_string(), Scripted::Fail(status)));
        self
    }

    /// Every request of the WSK function `routine` (named as for
    /// [`fail_requests`](FaultPlan::fail_requests)) returns `status` without completing or
    /// pending its IRP — the provider never completes it, never cancels it, never touches it
    /// again. No conforming provider does this; it is what a client must survive from a broken
    /// one (the IRP is then the client's to leak: nothing tells it the provider let go).
    #[must_use]
    pub fn abandon_requests(mut self, routine: &str, status: NTSTATUS) -> Self {
        self.scripted
            .push((routine.to_string(), Scripted::Abandon(status)));
        self
    }

    /// `IoAllocateIrp` fails (returns NULL) for the selected calls.
    #[must_use]
    pub fn fail_irp_allocation(mut self, which: Nth) -> Self {
        self.irp_allocation = which;
        self
    }

    /// `IoAllocateMdl` fails for the selected calls.
    #[must_use]
    pub fn fail_mdl_allocation(mut self, which: Nth) -> Self {
        self.mdl_allocation = which;
        self
    }

    /// `IoAllocateWorkItem` fails (returns NULL) for the selected calls.
    #[must_use]
    pub fn fail_work_item_allocation(mut self, which: Nth) -> Self {
        self.work_item_allocation = which;
        self
    }

    /// `ExAllocatePool2` / `ExAllocatePoolWithTag` fail for the selected calls.
    #[must_use]
    pub fn fail_pool_allocation(mut self, which: Nth) -> Self {
        self.pool_allocation = which;
        self
    }

    /// Every connection is reset by the provider once it has sent `bytes` bytes: the send
    /// that crosses the limit and everything after fail with `STATUS_CONNECTION_RESET`, and the
    /// peer sees a reset.
    #[must_use]
    pub fn reset_connections_after(mut self, bytes: u64) -> Self {
        self.reset_after = Some(bytes);
        self
    }

    /// Every connect fails with `STATUS_CONNECTION_REFUSED`.
    #[must_use]
    pub fn refuse_connections(mut self) -> Self {
        self.refuse_connections = true;
        self
    }

    /// Every send completes after sending at most `max_bytes` bytes (a partial send).
    #[must_use]
    pub fn partial_sends(mut self, max_bytes: usize) -> Self {
        self.partial_sends = Some(max_bytes.max(1));
        self
    }

    /// How requests complete.
    #[must_use]
    pub fn completion(mut self, mode: CompletionMode) -> Self {
        self.completion = mode;
        self
    }

    /// Every completion from the provider's thread is delayed by `delay`, and requests that
    /// could complete at once are pended.
    #[must_use]
    pub fn delay_completions(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Event callbacks (receive, receive-from, accept, disconnect) are delivered from
    /// `threads` delivery threads at DISPATCH_LEVEL, as Windows delivers them from several
    /// CPUs at once: callbacks of different sockets run in parallel, datagrams and accepted
    /// connections of one socket are indicated concurrently, and a connection's disconnect
    /// indication may run while its last receive indication is still running. A connection's
    /// receive indications stay ordered, one at a time (the byte stream is never reordered).
    /// The provider's guarantees hold: no callback of a socket starts after its
    /// `WskCloseSocket` completed, and an indication retained with `STATUS_PENDING` stays
    /// valid until its one `WskRelease`. Completions of one socket's pending requests keep
    /// their order. `threads <= 1` is the default: every callback from the provider's thread,
    /// one at a time.
    #[must_use]
    pub fn concurrent_events(mut self, threads: usize) -> Self {
        self.event_threads = threads.max(1);
        self
    }

    /// When `true`, a request completed inline (before the WSK function returns) runs its
    /// completion routine at the caller's IRQL — PASSIVE_LEVEL when the caller was at
    /// PASSIVE_LEVEL, as Windows does — instead of at DISPATCH_LEVEL. Completions from the
    /// provider's threads always run at DISPATCH_LEVEL.
    #[must_use]
    pub fn inline_completion_at_caller_irql(mut self, at_caller_irql: bool) -> Self {
        self.inline_at_caller_irql = at_caller_irql;
        self
    }

    /// Timers as Wine 8.0's kernel runs them (a thread-pool timer per `KTIMER`): a DPC
    /// starts a millisecond after its timer's expiry (a callback's dispatch); `KeCancelTimer`
    /// waits for its timer's DPC to return (`WaitForThreadpoolTimerCallbacks`) and returns
    /// TRUE for a timer that expired since it was last set, not only for one it stopped
    /// (Wine clears `Header.Inserted` only in a cancel). Windows answers FALSE there: a
    /// client that counts on it stopping the timer would see a DPC that already ran.
    #[must_use]
    pub fn wine_timers(mut self, wine: bool) -> Self {
        self.wine_timers = wine;
        self
    }

    /// The default plan ([`FaultPlan::new`] with the default seed), whose delivery modes are
    /// those `WSK_HOST_MODES` names: a comma-separated list of
    ///
    /// - `concurrent-events` — [`concurrent_events`](FaultPlan::concurrent_events)`(4)`;
    ///   `concurrent-events=N` for `N` threads;
    /// - `passive-inline` —
    ///   [`inline_completion_at_caller_irql`](FaultPlan::inline_completion_at_caller_irql)`(true)`.
    ///
    /// Every [`crate::Session`] starts with this plan, so whole test suites run in these modes
    /// with `WSK_HOST_MODES=concurrent-events,passive-inline cargo test`.
    ///
    /// # Panics
    /// If `WSK_HOST_MODES` names an unknown mode.
    #[must_use]
    pub fn from_env() -> FaultPlan {
        FaultPlan::default()
    }
}

/// The environment variable naming the provider's delivery modes.
pub(crate) const MODES_VARIABLE: &str = "WSK_HOST_MODES";
/// Delivery threads of `concurrent-events` without a count.
const DEFAULT_EVENT_THREADS: usize = 4;

/// The modes `WSK_HOST_MODES` names: (event delivery threads, inline at the caller's IRQL).
fn modes_from_env() -> (usize, bool) {
    match std::env::var(MODES_VARIABLE) {
        Ok(value) => parse_modes(&value),
        Err(std::env::VarError::NotPresent) => (1, false),
        Err(std::env::VarError::NotUnicode(value)) => {
            panic!("{MODES_VARIABLE} is not valid Unicode: {value:?}")
        }
    }
}

/// Parses a `WSK_HOST_MODES` value; panics on an unknown mode.
fn parse_modes(value: &str) -> (usize, bool) {
    let (mut threads, mut passive_inline) = (1, false);
    for mode in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match mode.split_once('=') {
            None if mode == "concurrent-events" => threads = DEFAULT_EVENT_THREADS,
            None if mode == "passive-inline" => passive_inline = true,
            Some(("concurrent-events", count)) => match count.trim().parse::<usize>() {
                Ok(count) if count >= 1 => threads = count,
                _ => panic!(
                    "{MODES_VARIABLE}: `{mode}`: the thread count of concurrent-events must be a \
                     number >= 1"
                ),
            },
            _ => panic!(
                "{MODES_VARIABLE}: unknown mode `{mode}` in `{value}`; the modes are \
                 `concurrent-events` (or `concurrent-events=N`, N delivery threads) and \
                 `passive-inline`, comma-separated"
            ),
        }
    }
    (threads, passive_inline)
}

/// The active plan and its counters.
struct State {
    plan: FaultPlan,
    rng: u64,
    irp_calls: u64,
    mdl_calls: u64,
    pool_calls: u64,
    work_item_calls: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Installs a plan (resetting the call counters).
pub(crate) fn install(plan: FaultPlan) {
    let rng = plan.seed | 1;
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        plan,
        rng,
        irp_calls: 0,
        mdl_calls: 0,
        pool_calls: 0,
        work_item_calls: 0,
    });
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.get_or_insert_with(|| {
        let plan = FaultPlan::default();
        State {
            rng: plan.seed | 1,
            plan,
            irp_calls: 0,
            mdl_calls: 0,
            pool_calls: 0,
            work_item_calls: 0,
        }
    });
    f(state)
}

impl State {
    fn next_random(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }

    fn decide(&mut self, which: Nth, count: u64) -> bool {
        match which {
            Nth::Never => false,
            Nth::Call(n) => count == n,
            Nth::Every(n) => n > 0 && count % n == 0,
            Nth::Probability(p) => self.next_random() < p,
        }
    }
}

/// Whether this `IoAllocateIrp` fails.
pub(crate) fn irp_allocation_fails() -> bool {
    with_state(|s| {
        s.irp_calls += 1;
        let (which, count) = (s.plan.irp_allocation, s.irp_calls);
        s.decide(which, count)
    })
}

/// Whether this `IoAllocateMdl` fails.
pub(crate) fn mdl_allocation_fails() -> bool {
    with_state(|s| {
        s.mdl_calls += 1;
        let (which, count) = (s.plan.mdl_allocation, s.mdl_calls);
        s.decide(which, count)
    })
}

/// Whether this pool allocation fails.
pub(crate) fn pool_allocation_fails() -> bool {
    with_state(|s| {
        s.pool_calls += 1;
        let (which, count) = (s.plan.pool_allocation, s.pool_calls);
        s.decide(which, count)
    })
}

/// Whether this `IoAllocateWorkItem` fails.
pub(crate) fn work_item_allocation_fails() -> bool {
    with_state(|s| {
        s.work_item_calls += 1;
        let (which, count) = (s.plan.work_item_allocation, s.work_item_calls);
        s.decide(which, count)
    })
}

/// What the plan scripts for the requests of `routine`, if anything.
pub(crate) fn scripted(routine: &str) -> Option<Scripted> {
    with_state(|s| {
        s.plan
            .scripted
            .iter()
            .find(|(name, _)| name == routine)
            .map(|(_, scripted)| *scripted)
    })
}

/// Whether a request that can complete at once does so in the calling thread.
pub(crate) fn complete_inline() -> bool {
    with_state(|s| {
        if s.plan.delay.is_some() {
            return false;
        }
        match s.plan.completion {
            CompletionMode::AlwaysInline => true,
            CompletionMode::AlwaysPending => false,
            CompletionMode::Mixed => s.next_random() < 0.5,
        }
    })
}

/// The delay before completions from the provider's thread.
pub(crate) fn completion_delay() -> Option<Duration> {
    with_state(|s| s.plan.delay)
}

/// Whether connects are refused.
pub(crate) fn refuse_connections() -> bool {
    with_state(|s| s.plan.refuse_connections)
}

/// The byte count after which connections are reset.
pub(crate) fn reset_after() -> Option<u64> {
    with_state(|s| s.plan.reset_after)
}

/// The largest send.
pub(crate) fn partial_send_limit() -> Option<usize> {
    with_state(|s| s.plan.partial_sends)
}

/// The number of threads delivering event callbacks (1: the provider's thread alone).
pub(crate) fn event_threads() -> usize {
    with_state(|s| s.plan.event_threads)
}

/// Whether inline completions run at the caller's IRQL.
pub(crate) fn inline_at_caller_irql() -> bool {
    with_state(|s| s.plan.inline_at_caller_irql)
}

/// Whether timers behave as Wine's ([`FaultPlan::wine_timers`]).
pub(crate) fn wine_timers() -> bool {
    with_state(|s| s.plan.wine_timers)
}

#[cfg(test)]
mod tests {
    use super::parse_modes;

    #[test]
    fn modes_parse() {
        assert_eq!(parse_modes(""), (1, false));
        assert_eq!(parse_modes("concurrent-events"), (4, false));
        assert_eq!(
            parse_modes(" passive-inline , concurrent-events=7,"),
            (7, true)
        );
    }

    #[test]
    #[should_panic(expected = "unknown mode `fast`")]
    fn unknown_modes_panic() {
        let _ = parse_modes("passive-inline,fast");
    }
}
