//! Test sessions: configuration, counters, and the end-of-test leak check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wsk_sys::{MAKE_WSK_VERSION, PDRIVER_OBJECT};

use crate::driver::DriverObject;
use crate::faults::{self, FaultPlan};
use crate::verifier::{self, Rule, Violation};

/// How the emulated provider and system present themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    /// Lowest WSK version the provider accepts (`MAKE_WSK_VERSION`).
    pub lowest_version: u16,
    /// Highest WSK version the provider accepts.
    pub highest_version: u16,
    /// What `RtlGetVersion` reports: (major, minor, build).
    pub os_version: (u32, u32, u32),
    /// How long `WskDeregister` waits for open sockets and captured NPIs before the verifier
    /// reports the hang (it keeps waiting, as Windows does).
    pub deregister_wait_report: Duration,
    /// How long the end of a session and [`LoadedDriver::unload`](crate::LoadedDriver::unload)
    /// wait for queued or running work items before the verifier reports them
    /// ([`Rule::WorkItemStillRunning`]).
    pub work_item_wait_report: Duration,
    /// The longest a run of a provider thread at DISPATCH_LEVEL may take — the completion
    /// routines and event callbacks of one socket's pass, a deferred completion — before the
    /// verifier reports it ([`Rule::DpcWatchdogViolation`]): on Windows such a run is a DPC,
    /// which the DPC watchdog bug checks when it runs too long (Microsoft's guidance is that a
    /// DPC run for no more than 100 µs; the watchdog's limit is far longer). `None` turns the
    /// check off. The default, 250 ms, leaves room for a host that is busy with other tests
    /// and catches a driver whose completion routine loops instead of yielding; it is off
    /// under Miri, whose runs are orders of magnitude slower. The environment variable
    /// `WSK_HOST_DPC_BUDGET_MS` (milliseconds, `0` for off) overrides the default.
    pub dispatch_run_budget: Option<Duration>,
}

/// The default [`ProviderConfig::dispatch_run_budget`].
const DEFAULT_DISPATCH_RUN_BUDGET: Duration = Duration::from_millis(250);

/// The default budget of a DISPATCH_LEVEL run: `WSK_HOST_DPC_BUDGET_MS`, else 250 ms (off
/// under Miri).
fn default_dispatch_run_budget() -> Option<Duration> {
    match std::env::var("WSK_HOST_DPC_BUDGET_MS") {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => panic!(
                "WSK_HOST_DPC_BUDGET_MS=`{text}`: a number of milliseconds (0 turns the check off)"
            ),
        },
        Err(_) if cfg!(miri) => None,
        Err(_) => Some(DEFAULT_DISPATCH_RUN_BUDGET),
    }
}

/// The budget of a DISPATCH_LEVEL run in effect, in nanoseconds (0: off).
static DISPATCH_RUN_BUDGET: AtomicU64 = AtomicU64::new(0);

/// The budget of a DISPATCH_LEVEL run of a provider thread in effect (the session's).
pub(crate) fn dispatch_run_budget() -> Option<Duration> {
    match DISPATCH_RUN_BUDGET.load(Ordering::Relaxed) {
        0 => None,
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

fn set_dispatch_run_budget(budget: Option<Duration>) {
    let nanos = budget.map_or(0, |b| {
        u64::try_from(b.as_nanos()).unwrap_or(u64::MAX).max(1)
    });
    DISPATCH_RUN_BUDGET.store(nanos, Ordering::Relaxed);
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            lowest_version: MAKE_WSK_VERSION(1, 0),
            highest_version: MAKE_WSK_VERSION(1, 0),
            os_version: (10, 0, 22631),
            deregister_wait_report: Duration::from_secs(2),
            work_item_wait_report: Duration::from_secs(10),
            dispatch_run_budget: default_dispatch_run_budget(),
        }
    }
}

/// What happened during a session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `IoAllocateIrp` calls that returned an IRP.
    pub irps_allocated: u64,
    /// `IoFreeIrp` calls.
    pub irps_freed: u64,
    /// `IoAllocateMdl` calls that returned an MDL.
    pub mdls_allocated: u64,
    /// `IoFreeMdl` calls.
    pub mdls_freed: u64,
    /// Requests completed in the calling thread, before the WSK function returned.
    pub completed_inline: u64,
    /// Requests that returned `STATUS_PENDING` and completed from the provider's thread.
    pub completed_pending: u64,
    /// Requests completed with `STATUS_CANCELLED`.
    pub cancelled: u64,
    /// Event callbacks delivered (receive, receive-from, accept, disconnect).
    pub events_delivered: u64,
    /// Sockets the provider created (including accepted ones).
    pub sockets_created: u64,
    /// Sockets closed.
    pub sockets_closed: u64,
    /// Bytes sent through the provider's sockets.
    pub bytes_sent: u64,
    /// Bytes received through the provider's sockets and delivered to the client (a
    /// datagram cut to a receive's buffer counts what the buffer took).
    pub bytes_received: u64,
    /// Pool blocks allocated (`ExAllocatePool2`, `ExAllocatePoolWithTag`).
    pub pool_allocations: u64,
    /// `IoAllocateWorkItem` calls that returned a work item.
    pub work_items_allocated: u64,
    /// `IoFreeWorkItem` calls that freed a work item.
    pub work_items_freed: u64,
    /// Work item routines that ran to completion.
    pub work_items_run: u64,
    /// Names given to `WskGetAddressInfo` (node or service) without a NUL right after their
    /// `Length` bytes, inside `MaximumLength`. Windows reads the counted strings; a provider
    /// that reads them as C strings (Wine's, which ignores `Length`) reads another name.
    pub address_info_names_unterminated: u64,
    /// DPCs of expired timers that ran (`KeSetTimer` with a DPC).
    pub dpcs_run: u64,
    /// `KeFlushQueuedDpcs` calls.
    pub dpc_flushes: u64,
}

static COUNTERS: Mutex<Report> = Mutex::new(Report {
    irps_allocated: 0,
    irps_freed: 0,
    mdls_allocated: 0,
    mdls_freed: 0,
    completed_inline: 0,
    completed_pending: 0,
    cancelled: 0,
    events_delivered: 0,
    sockets_created: 0,
    sockets_closed: 0,
    bytes_sent: 0,
    bytes_received: 0,
    pool_allocations: 0,
    work_items_allocated: 0,
    work_items_freed: 0,
    work_items_run: 0,
    address_info_names_unterminated: 0,
    dpcs_run: 0,
    dpc_flushes: 0,
});

static CONFIG: Mutex<Option<ProviderConfig>> = Mutex::new(None);

/// The name of the driver object of a session (see [`Session::driver_object`]).
const SESSION_DRIVER_NAME: &str = "WskHostSession";

/// Serialises sessions within a process.
static SESSION_LOCK: Mutex<()> = Mutex::new(());

/// Updates the counters.
pub(crate) fn count(update: impl FnOnce(&mut Report)) {
    update(&mut COUNTERS.lock().unwrap_or_else(|e| e.into_inner()));
}

/// The provider configuration in effect.
pub(crate) fn config() -> ProviderConfig {
    CONFIG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// A test session.
///
/// Starting one takes a process-wide lock (sessions of one process run one after the other,
/// so each sees only its own objects), and resets the fault plan, the provider configuration,
/// the counters, the registry and the verifier's records. [`Session::finish`] — or dropping
/// the session — waits for the provider to go quiet and checks that nothing leaked and no rule
/// was broken, panicking with every finding otherwise.
#[derive(Debug)]
#[must_use = "the session's checks run when it finishes"]
pub struct Session {
    _lock: MutexGuard<'static, ()>,
    finished: bool,
    /// The session's driver object; `None` once kept alive for work items still running.
    driver: Option<DriverObject>,
}

impl Session {
    /// Starts a session with the default provider configuration.
    pub fn start() -> Session {
        Session::with_config(ProviderConfig::default())
    }

    /// Starts a session with `config`.
    pub fn with_config(config: ProviderConfig) -> Session {
        let lock = SESSION_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        set_dispatch_run_budget(config.dispatch_run_budget);
        *CONFIG.lock().unwrap_or_else(|e| e.into_inner()) = Some(config);
        Session {
            _lock: lock,
            finished: false,
            driver: Some(DriverObject::new(SESSION_DRIVER_NAME, None)),
        }
    }

    /// A driver object owned by the session, valid until the session ends: for code that
    /// needs the calling driver's driver object (`IoAllocateWorkItem`, say) without loading a
    /// driver through [`driver::load`](crate::driver::load). Its name is
    /// `\Driver\WskHostSession`.
    #[must_use]
    pub fn driver_object(&self) -> PDRIVER_OBJECT {
        self.driver
            .as_ref()
            .map_or(std::ptr::null_mut(), DriverObject::as_ptr)
    }

    /// Keeps the driver object alive for good when work items may still use it.
    fn keep_driver_object_if_in_use(&mut self) {
        if crate::workitem::in_flight() > 0 {
            std::mem::forget(self.driver.take());
        }
    }

    /// Runs `f` on the host socket behind the provider socket `socket` (a `PWSK_SOCKET` this
    /// session's provider created), to check what an option or control did to the real
    /// socket, independently of the provider's `WskGetOption`. `None` when `socket` is
    /// unknown or closed. The socket's lock is held while `f` runs: `f` must not call the
    /// provider.
    pub fn with_host_socket<R>(
        &self,
        socket: wsk_sys::PWSK_SOCKET,
        f: impl FnOnce(socket2::SockRef<'_>) -> R,
    ) -> Option<R> {
        crate::provider::with_host_socket(socket, f)
    }

    /// Tells the provider that the list of transports changed: every pending
    /// `WSK_TRANSPORT_LIST_CHANGE` request completes with `STATUS_SUCCESS`.
    pub fn change_transports(&self) {
        crate::provider::transports_changed();
    }

    /// Replaces the fault plan (and resets its call counters).
    pub fn set_faults(&self, plan: FaultPlan) {
        faults::install(plan);
    }

    /// The counters so far. Panics with the verifier's findings, if any.
    pub fn report(&self) -> Report {
        verifier::raise_recorded();
        COUNTERS.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests queued in the provider now, waiting for the network: sends, receives,
    /// accepts and connects on open sockets. A test waits on it to know a driver has posted
    /// its next request (a receive re-posted after an echo, say) before it acts.
    #[must_use]
    pub fn queued_requests(&self) -> usize {
        crate::provider::queued_requests()
    }

    /// Waits up to `timeout` until at least `count` requests are queued in the provider;
    /// returns whether they are.
    pub fn wait_for_queued_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.queued_requests() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits up to `timeout` until no work item is queued or running (every routine queued
    /// so far has returned); returns whether none is. Does not raise the verifier's findings.
    pub fn wait_for_work_items(&self, timeout: Duration) -> bool {
        crate::workitem::wait_idle(timeout)
    }

    /// Panics with the verifier's findings so far, if any.
    pub fn check(&self) {
        verifier::raise_recorded();
    }

    /// The violations recorded so far, without raising them (for tests of the verifier).
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        verifier::recorded()
    }

    /// Takes the violations recorded so far (for tests that provoke them on purpose).
    pub fn take_violations(&self) -> Vec<Violation> {
        verifier::take_recorded()
    }

    /// Waits (up to 10 s) for the provider to go quiet, then checks for leaks and
    /// violations; panics with everything found. Returns the session's counters.
    pub fn finish(mut self) -> Report {
        self.finished = true;
        let (report, findings) = conclude();
        self.keep_driver_object_if_in_use();
        if !findings.is_empty() {
            let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
            panic!("{}", text.join("\n"));
        }
        report
    }

    /// Like [`finish`](Session::finish), but returns the findings instead of panicking: the
    /// verifier report of a run (the host runner prints it).
    pub fn conclude(mut self) -> (Report, Vec<Violation>) {
        self.finished = true;
        let result = conclude();
        self.keep_driver_object_if_in_use();
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.finished {
            let (_, findings) = conclude();
            self.keep_driver_object_if_in_use();
            if !findings.is_empty() && !std::thread::panicking() {
                let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
                panic!("{}", text.join("\n"));
            }
            for finding in &findings {
                eprintln!("{finding}");
            }
        }
    }
}

/// Resets every registry for a new session (objects leaked by an earlier, failed session are
/// forgotten, not freed).
fn reset() {
    crate::provider::wait_idle(Duration::from_secs(2));
    *crate::irp::LIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *crate::mdl::LIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    crate::pool::LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    crate::registry::clear();
    crate::registry::forget_handles();
    crate::netio::forget();
    crate::workitem::wait_idle(Duration::from_secs(2));
    crate::workitem::forget();
    crate::timer::forget();
    crate::provider::forget();
    faults::install(FaultPlan::default());
    *COUNTERS.lock().unwrap_or_else(|e| e.into_inner()) = Report::default();
    verifier::take_recorded();
    crate::debug::take_output();
}

/// Waits for the provider to go quiet; returns the counters and every finding.
fn conclude() -> (Report, Vec<Violation>) {
    // Work items first (they hold their IO object, so the driver is not gone), then the
    // requests they and the driver issued, then work items queued by completions.
    let work_item_wait = config().work_item_wait_report;
    let work_item_deadline = Instant::now() + work_item_wait;
    crate::workitem::wait_idle(work_item_wait);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (crate::irp::counts().1 > 0 || crate::irp::completions_in_progress() > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    crate::provider::wait_idle(deadline.saturating_duration_since(Instant::now()));
    crate::workitem::wait_idle(work_item_deadline.saturating_duration_since(Instant::now()));
    crate::workitem::report_still_running("the end of the session", work_item_wait);
    if crate::workitem::in_flight() == 0 {
        crate::workitem::join_stopped_workers();
    }
    crate::timer::report_pending("the end of the session");
    let mut findings: Vec<Violation> = verifier::take_recorded();
    let leak = |rule: Rule, details: String| Violation { rule, details };
    let (irps, in_flight) = crate::irp::counts();
    if irps > 0 {
        findings.push(leak(
            Rule::IrpLeaked,
            format!(
                "{irps} IRP(s) allocated and never freed ({in_flight} still owned by a request)"
            ),
        ));
    }
    let mdls = crate::mdl::LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, |m| m.len());
    if mdls > 0 {
        findings.push(leak(
            Rule::MdlLeaked,
            format!("{mdls} MDL(s) allocated and never freed"),
        ));
    }
    let pool: Vec<String> = crate::pool::LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|a| format!("{} bytes tagged '{}'", a.size, crate::pool::tag_text(a.tag)))
        .collect();
    if !pool.is_empty() {
        findings.push(leak(
            Rule::PoolLeaked,
            format!(
                "{} pool block(s) never freed: {}",
                pool.len(),
                pool.join(", ")
            ),
        ));
    }
    let sockets = crate::provider::open_sockets();
    if sockets > 0 {
        findings.push(leak(
            Rule::SocketLeaked,
            format!("{sockets} socket(s) never closed"),
        ));
    }
    let address_lists = crate::provider::outstanding_address_info();
    if address_lists > 0 {
        findings.push(leak(
            Rule::AddressInfoLeaked,
            format!("{address_lists} WskGetAddressInfo result(s) never freed"),
        ));
    }
    if let Some(registrations) = crate::netio::leaked() {
        findings.push(leak(Rule::RegistrationLeaked, registrations));
    }
    let handles = crate::registry::open_handles();
    if handles > 0 {
        findings.push(leak(
            Rule::HandleLeaked,
            format!("{handles} registry handle(s) never closed"),
        ));
    }
    let work_items = crate::workitem::leaked();
    if work_items > 0 {
        findings.push(leak(
            Rule::WorkItemLeaked,
            format!("{work_items} work item(s) allocated and never freed"),
        ));
    }
    crate::timer::stop_thread();
    let report = COUNTERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (report, findings)
}
