//! Fault injection: deterministic, seedable failures and completion behaviours, so that the
//! error paths of a driver are tested, not hoped for.

use std::sync::Mutex;
use std::time::Duration;

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
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::new(0x5753_4b48_4f53_5421)
    }
}

impl FaultPlan {
    /// No faults, mixed completion, with `seed` for every random draw.
    #[must_use]
    pub fn new(seed: u64) -> FaultPlan {
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
        }
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
}

/// The active plan and its counters.
struct State {
    plan: FaultPlan,
    rng: u64,
    irp_calls: u64,
    mdl_calls: u64,
    pool_calls: u64,
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
