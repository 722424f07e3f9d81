//! `wsk_udp_echo.sys`: a UDP echo server. Every datagram is sent back to its source.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_udp_echo\Parameters`):
//! - `Listen` (`REG_SZ`, default `127.0.0.1:7008,[::1]:7008`): the addresses to bind,
//!   comma-separated (IPv4 and IPv6; port 0 picks a free port, printed at start).
//!
//! `DriverEntry` registers the WSK client and starts one task per address, then waits (5 s
//! at most) for the sockets: when none could be bound, it fails with the last error instead
//! of staying loaded serving nothing. Each task binds a datagram socket, then receives into
//! one buffer and sends each datagram back from it — the buffer and the socket's IRPs are
//! reused, no allocation per datagram. A failing receive is retried after a pause that
//! doubles from 1 ms to 1 s while it keeps failing (it is reported once per streak), so a
//! broken socket cannot spin a processor. `DriverUnload` cancels the tasks (their pending
//! receives are cancelled, their sockets closed), waits for them and deregisters.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use core::net::SocketAddr;

use wsk::task::TaskSet;
use wsk::{Buf, Error, SpinLock, WskClient};
use wsk_driver_runtime::parameters::{ParameterError, parse_socket_addresses};
use wsk_driver_runtime::startup::{Opening, Openings};
use wsk_driver_runtime::timer::Timers;
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_NOT_IMPLEMENTED};

/// The addresses when the `Listen` parameter is missing.
const DEFAULT_LISTEN: &str = "127.0.0.1:7008,[::1]:7008";

/// The largest datagram echoed whole (the largest UDP payload over IPv4); longer ones are
/// truncated by the receive, as with any UDP socket.
const DATAGRAM_CAPACITY: usize = 65507;

/// The first pause after a failed receive, and the longest.
const RECEIVE_BACKOFF_MS: (u32, u32) = (1, 1000);

/// How long `DriverEntry` waits for the sockets.
const STARTUP_WAIT_MS: u32 = 5000;

/// What the driver keeps between `DriverEntry` and `DriverUnload`: the tasks drop first
/// (cancelled, waited for), then the timers, then the client.
struct Running {
    tasks: TaskSet,
    _timers: Arc<Timers>,
    _client: WskClient,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// Whether `error`, from opening a datagram socket, says the provider has no datagram sockets
/// at all (Wine's WSK provider answers `STATUS_NOT_IMPLEMENTED`; `STATUS_NOT_SUPPORTED` is
/// the other way to say it) rather than that this address cannot be bound.
fn provider_lacks_datagrams(error: Error) -> bool {
    error == Error::NOT_SUPPORTED || error == Error::from_status(STATUS_NOT_IMPLEMENTED)
}

/// Binds `address` (reporting the outcome to `opening`) and echoes datagrams until
/// cancelled.
async fn serve(
    bind: wsk::ops::BindDatagram,
    address: SocketAddr,
    timers: Arc<Timers>,
    opening: Opening,
) {
    let socket = match bind.await {
        Ok(socket) => socket,
        Err(error) if provider_lacks_datagrams(error) => {
            kprint!(
                "wsk_udp_echo: cannot bind {address}: the WSK provider does not support datagram sockets ({error})\n"
            );
            opening.failed(error);
            return;
        }
        Err(error) => {
            kprint!("wsk_udp_echo: cannot bind {address}: {error}\n");
            opening.failed(error);
            return;
        }
    };
    // The provider is asked for the port it picked only when it picked one: a configured
    // port is the one bound (and a provider without `WskGetLocalAddress` serves it).
    if address.port() == 0 {
        match socket.local_addr().await {
            Ok(local) => kprint!("wsk_udp_echo: listening on {local}\n"),
            Err(error) => kprint!("wsk_udp_echo: listening on {address} ({error})\n"),
        }
    } else {
        kprint!("wsk_udp_echo: listening on {address}\n");
    }
    let mut buf = match Buf::with_capacity(DATAGRAM_CAPACITY) {
        Ok(buf) => buf,
        Err(error) => {
            kprint!("wsk_udp_echo: no buffer: {error}\n");
            opening.failed(error);
            return;
        }
    };
    opening.opened();
    let mut backoff = 0u32;
    let mut failures = 0u64;
    loop {
        buf.clear();
        let (received, back) = socket.receive_from(buf).await;
        buf = back;
        let source = match received {
            Ok((_, source)) => {
                if failures > 0 {
                    kprint!(
                        "wsk_udp_echo: receive on {address} works again after {failures} failures\n"
                    );
                }
                backoff = 0;
                failures = 0;
                source
            }
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => {
                // A datagram's failure (an ICMP error reported on the socket, say) does not
                // end the service; a receive that keeps failing is retried ever more slowly.
                if failures == 0 {
                    kprint!("wsk_udp_echo: receive on {address}: {error}; retrying with backoff\n");
                }
                failures += 1;
                if buf.capacity() == 0 {
                    // The operation could not hand the buffer back: take a new one (or try
                    // again after the pause).
                    if let Ok(new) = Buf::with_capacity(DATAGRAM_CAPACITY) {
                        buf = new;
                    }
                }
                if backoff > 0 {
                    timers.sleep(backoff).await;
                }
                backoff = (backoff * 2).clamp(RECEIVE_BACKOFF_MS.0, RECEIVE_BACKOFF_MS.1);
                continue;
            }
        };
        // A zero-length datagram is valid and comes back like any other.
        let (sent, back) = socket.send_to(buf, source).await;
        buf = back;
        match sent {
            Ok(_) => {}
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => kprint!("wsk_udp_echo: send to {source}: {error}\n"),
        }
    }
}

/// The driver's entry point (exported as `DriverEntry` in the image). PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager (or the host runner) with a valid driver object and registry
/// path.
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the driver object `DriverEntry` was given.
    unsafe {
        wsk_driver_runtime::entry::enter(
            driver,
            "wsk_udp_echo",
            &RUNNING,
            Some(driver_unload),
            || start(driver, registry_path),
        )
    }
}

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: ParameterError) -> Error {
    kprint!("wsk_udp_echo: {error}\n");
    error.into()
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let addresses = match parameters.socket_addresses("Listen").map_err(reported)? {
        Some(addresses) => addresses,
        None => parse_socket_addresses(DEFAULT_LISTEN).map_err(|_| Error::INVALID_PARAMETER)?,
    };
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = WskClient::register(driver)?;
    let timers = Arc::new(Timers::new(&client)?);
    let running = Running {
        tasks: TaskSet::new(driver)?,
        _timers: Arc::clone(&timers),
        _client: client,
    };
    let openings = Openings::new(addresses.len());
    for address in addresses {
        let bind = running._client.bind_datagram(address);
        running.tasks.spawn(serve(
            bind,
            address,
            Arc::clone(&timers),
            openings.reporter(),
        ))?;
    }
    let outcome = openings.wait(STARTUP_WAIT_MS);
    if outcome.nothing_opened() {
        match outcome.last_error {
            Some(error) if provider_lacks_datagrams(error) => kprint!(
                "wsk_udp_echo: no address could be bound: the WSK provider does not support datagram sockets\n"
            ),
            _ => kprint!("wsk_udp_echo: no address could be bound\n"),
        }
        return Err(outcome.last_error.unwrap_or(Error::INVALID_PARAMETER));
    }
    Ok(running)
}

/// Cancels the tasks, waits for them, deregisters. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    // Taken in a statement of its own: the lock (DISPATCH_LEVEL) is released before the
    // tasks are waited for.
    let running = RUNNING.lock().take();
    drop(running);
    kprint!("wsk_udp_echo: unloaded\n");
}

export_driver_entry!(driver_entry);
