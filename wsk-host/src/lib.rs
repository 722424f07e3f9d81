//! The Windows kernel's WSK world in user mode.
//!
//! `wsk-host` implements, as `extern "system"` functions with the kernel's names, every
//! ntoskrnl and NETIO export that [`wsk_sys`] declares — IRPs and their completion through
//! the stack locations, cancellation, MDLs, pool, events, spin locks, IRQL raising and
//! lowering, work items run by system worker threads at PASSIVE_LEVEL, timers whose DPCs run at
//! DISPATCH_LEVEL on a timer thread, the registry — and a
//! WSK provider whose dispatch tables serve listening, connection, datagram and stream sockets
//! over real host sockets, completing requests inline or from its own thread at (emulated)
//! DISPATCH_LEVEL as the real stack does, and delivering event callbacks.
//!
//! Linking it into a test binary (with `wsk-sys`'s `host` feature, which it enables) is what
//! runs WSK driver code — raw `wsk-sys` code, the `wsk` crate, whole drivers through their
//! `DriverEntry` — on Linux, macOS and Windows user mode, unchanged.
//!
//! Beyond them it implements `BCryptGenRandom` (CNG, `cng.sys`) for drivers that seed a
//! random generator (the TLS example), with the host's random source.
//!
//! Like Driver Verifier it checks the driver: leaked IRPs, MDLs, pool, sockets and
//! registrations at the end of a [`Session`], double frees, use of freed IRPs, waits at
//! DISPATCH_LEVEL, completion routines that do not return `STATUS_MORE_PROCESSING_REQUIRED`
//! for driver-allocated IRPs, calls at too high an IRQL (see [`Rule`]). And it injects faults
//! ([`FaultPlan`]): allocation failures, resets, refused connects, partial sends, inline or
//! pending completion, delays, requests of one WSK function failed or abandoned (a status
//! returned, the IRP never completed: [`FaultPlan::abandon_requests`]) — deterministically,
//! from a seed.
//!
//! Network traffic is restricted to loopback addresses: a connect or send elsewhere fails with
//! `STATUS_INVALID_ADDRESS`.
//!
//! # Delivery modes
//!
//! By default every event callback comes from the provider's one thread, and every
//! completion routine runs at DISPATCH_LEVEL. Windows does neither, and two modes of the
//! [`FaultPlan`] test a driver against what it does:
//!
//! - [`FaultPlan::concurrent_events`]`(threads)`: event callbacks come from `threads`
//!   delivery threads at DISPATCH_LEVEL — callbacks of different sockets in parallel,
//!   receive-from indications and accepts of one socket concurrently, a connection's
//!   disconnect indication while its last receive indication runs (a connection's receive
//!   indications stay ordered, one at a time). No callback of a socket starts once its
//!   `WskCloseSocket` completed; a retained indication stays valid until its one
//!   `WskRelease`, which may come from any thread at any time.
//! - [`FaultPlan::inline_completion_at_caller_irql`]`(true)`: a request that completes
//!   before the WSK function returns runs its completion routine in the caller's thread at
//!   the caller's IRQL — PASSIVE_LEVEL for a PASSIVE_LEVEL caller.
//!
//! The environment variable `WSK_HOST_MODES`, a comma-separated list of `concurrent-events`
//! (4 delivery threads; `concurrent-events=N` for `N`) and `passive-inline`, sets these modes
//! in every plan made by [`FaultPlan::new`] or [`FaultPlan::default`] — which is the plan
//! each [`Session`] starts with — so that a whole test suite runs in them unchanged:
//! `WSK_HOST_MODES=concurrent-events,passive-inline cargo test`. An unknown name panics
//! (when the plan is made). A plan's builder methods override the variable.
//!
//! ```no_run
//! use wsk_host::{FaultPlan, Nth, Session};
//!
//! let session = Session::start();
//! session.set_faults(FaultPlan::new(7).fail_irp_allocation(Nth::Call(1)));
//! // ... run driver code: its first IoAllocateIrp returns NULL ...
//! let report = session.finish(); // panics if anything leaked or a rule was broken
//! assert_eq!(report.irps_allocated, report.irps_freed);
//! ```
// The exported functions keep the WDK's parameter names.
#![allow(non_snake_case, non_upper_case_globals)]

mod cng;
mod debug;
pub mod driver;
mod event;
mod faults;
mod irp;
pub mod irql;
mod mdl;
mod netio;
mod pool;
mod processor;
mod provider;
pub mod registry;
mod rtl;
mod session;
mod spin_lock;
mod thread;
mod timer;
mod verifier;
mod workitem;

pub use debug::DEFAULT_OUTPUT_LIMIT as DEFAULT_DEBUG_OUTPUT_LIMIT;
pub use debug::set_output_limit as set_debug_output_limit;
pub use debug::take_output as debug_output;
pub use driver::LoadedDriver;
pub use faults::{CompletionMode, FaultPlan, Nth, Scripted};
pub use registry::RegValue;
pub use session::{ProviderConfig, Report, Session};
pub use verifier::{Rule, Violation};

/// Forces the linker to keep this crate's exports: call it (or name anything of the crate)
/// from a test binary whose code reaches the kernel functions only through `wsk-sys`.
pub fn link() {}
