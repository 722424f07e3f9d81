//! The Windows kernel's WSK world in user mode.
//!
//! `wsk-host` implements, as `extern "system"` functions with the kernel's names, every
//! ntoskrnl and NETIO export that [`wsk_sys`] declares — IRPs and their completion through
//! the stack locations, cancellation, MDLs, pool, events, spin locks, IRQL raising and
//! lowering, work items run by system worker threads at PASSIVE_LEVEL, the registry — and a
//! WSK provider whose dispatch tables serve listening, connection, datagram and stream sockets
//! over real host sockets, completing requests inline or from its own thread at (emulated)
//! DISPATCH_LEVEL as the real stack does, and delivering event callbacks.
//!
//! Linking it into a test binary (with `wsk-sys`'s `host` feature, which it enables) is what
//! runs WSK driver code — raw `wsk-sys` code, the `wsk` crate, whole drivers through their
//! `DriverEntry` — on Linux, macOS and Windows user mode, unchanged.
//!
//! Like Driver Verifier it checks the driver: leaked IRPs, MDLs, pool, sockets and
//! registrations at the end of a [`Session`], double frees, use of freed IRPs, waits at
//! DISPATCH_LEVEL, completion routines that do not return `STATUS_MORE_PROCESSING_REQUIRED`
//! for driver-allocated IRPs, calls at too high an IRQL (see [`Rule`]). And it injects faults
//! ([`FaultPlan`]): allocation failures, resets, refused connects, partial sends, inline or
//! pending completion, delays — deterministically, from a seed.
//!
//! Network traffic is restricted to loopback addresses: a connect or send elsewhere fails with
//! `STATUS_INVALID_ADDRESS`.
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

mod debug;
pub mod driver;
mod event;
mod faults;
mod irp;
pub mod irql;
mod mdl;
mod netio;
mod pool;
mod provider;
pub mod registry;
mod rtl;
mod session;
mod spin_lock;
mod verifier;
mod workitem;

pub use debug::take_output as debug_output;
pub use driver::LoadedDriver;
pub use faults::{CompletionMode, FaultPlan, Nth};
pub use registry::RegValue;
pub use session::{ProviderConfig, Report, Session};
pub use verifier::{Rule, Violation};

/// Forces the linker to keep this crate's exports: call it (or name anything of the crate)
/// from a test binary whose code reaches the kernel functions only through `wsk-sys`.
pub fn link() {}
