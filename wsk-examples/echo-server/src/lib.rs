//! `wsk_echo_server.sys`: a TCP echo server. Every byte a client sends comes back to it,
//! until it closes its side; then the server closes the connection.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_echo_server\Parameters`):
//! - `Listen` (`REG_SZ`, default `127.0.0.1:7007,[::1]:7007`): the addresses to listen on,
//!   comma-separated (IPv4 and IPv6; port 0 picks a free port, printed at start).
//! - `MaxConnections` (`REG_DWORD`, default 1024, 1 to 1 000 000): connections served at
//!   once; one accepted beyond it is closed at once (each costs about 19 KiB of non-paged
//!   pool, its 16 KiB buffer included).
//! - `IdleTimeoutMs` (`REG_DWORD`, default 120 000, 0 for none): the longest a connection
//!   may wait for its next receive to bring data, or for the transport to take the whole of
//!   one echo (up to 16 KiB); past it the connection is closed. A send completes only when
//!   the transport has taken all of it, so a peer that reads slowly behind a large backlog
//!   (its receive window stays shut for longer than the timeout, however steadily it reads)
//!   is closed too: give such peers a longer timeout, or 0.
//!
//! `DriverEntry` registers the WSK client and starts one accept task per address, then waits
//! (5 s at most) for the listening sockets: when none could be opened, it fails with the
//! last error instead of staying loaded serving nothing. Each accepted connection gets a task
//! of its own that receives into one buffer and sends it back, reusing the buffer and the
//! socket's IRPs, reserved when the connection starts (`reserve_requests`): no allocation per
//! message, and none that can fail mid-conversation. A failed accept (no memory, no descriptors) does
//! not stop the server: the accept is retried after a pause that doubles from 10 ms to 1 s.
//! Everything runs in completion routines (`wsk::task`) and the runtime's timer work item;
//! nothing blocks a system thread. `DriverUnload` cancels every task — pending accepts,
//! receives and sends are cancelled, their sockets closed — waits for them, and deregisters.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use core::future::Future;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wsk::task::TaskSet;
use wsk::{Buf, ConnectionSocket, Error, ListenSocket, SpinLock, WskClient};
use wsk_driver_runtime::parameters::{ParameterError, parse_socket_addresses};
use wsk_driver_runtime::startup::{Opening, Openings};
use wsk_driver_runtime::timer::{Timers, timeout};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING};

/// The addresses when the `Listen` parameter is missing.
const DEFAULT_LISTEN: &str = "127.0.0.1:7007,[::1]:7007";
/// `MaxConnections` when missing.
const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// `IdleTimeoutMs` when missing: two minutes.
const DEFAULT_IDLE_TIMEOUT_MS: u32 = 120_000;

/// The receive buffer of a connection.
const BUFFER_SIZE: usize = 16 * 1024;

/// The first pause after a failed accept, and the longest.
const ACCEPT_BACKOFF_MS: (u32, u32) = (10, 1000);

/// How long `DriverEntry` waits for the listening sockets.
const STARTUP_WAIT_MS: u32 = 5000;

/// What every task of the server shares.
struct Server {
    tasks: Arc<TaskSet>,
    timers: Arc<Timers>,
    /// Connections being served.
    connections: AtomicUsize,
    max_connections: usize,
    /// 0: no idle timeout.
    idle_timeout_ms: u32,
    /// Whether the cap's refusals are being reported (once per episode).
    at_cap: AtomicBool,
}

/// What the driver keeps between `DriverEntry` and `DriverUnload`: the tasks drop first
/// (cancelled, waited for), then the timers, then the client.
struct Running {
    tasks: Arc<TaskSet>,
    _timers: Arc<Timers>,
    _client: WskClient,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// A connection's place under the cap, given back on drop.
struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Server {
    /// A place for a new connection, if under the cap.
    fn admit(self: &Arc<Server>) -> Option<Slot> {
        let mut current = self.connections.load(Ordering::Acquire);
        loop {
            if current >= self.max_connections {
                return None;
            }
            match self.connections.compare_exchange(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Slot(Arc::clone(self))),
                Err(actual) => current = actual,
            }
        }
    }

    /// `future`'s output, or `None` when the idle timeout passes first.
    async fn unless_idle<F: Future + Unpin>(&self, future: F) -> Option<F::Output> {
        if self.idle_timeout_ms == 0 {
            return Some(future.await);
        }
        timeout(self.timers.sleep(self.idle_timeout_ms), future).await
    }
}

/// Echoes one connection until the peer closes its side, an error, or the idle timeout.
async fn echo(socket: ConnectionSocket, peer: SocketAddr, slot: Slot) {
    let server = Arc::clone(&slot.0);
    let mut buf = match Buf::with_capacity(BUFFER_SIZE) {
        Ok(buf) => buf,
        Err(error) => {
            kprint!("wsk_echo_server: {peer}: no buffer: {error}\n");
            return;
        }
    };
    // One request in flight at a time, each issued from the task the last one woke: two
    // completion blocks cover it whatever the timing, allocated now rather than in the
    // middle of the conversation, where running out of memory would cut it.
    if let Err(error) = socket.reserve_requests(2) {
        kprint!("wsk_echo_server: {peer}: no memory for its requests: {error}\n");
        return;
    }
    let mut echoed = 0u64;
    let outcome = loop {
        buf.clear();
        let Some((received, back)) = server.unless_idle(socket.receive(buf)).await else {
            break Err(Error::TIMED_OUT);
        };
        buf = back;
        match received {
            Ok(0) => break Ok(()),
            Ok(n) => echoed += n as u64,
            Err(error) => break Err(error),
        }
        let Some((sent, back)) = server.unless_idle(socket.send_all(buf)).await else {
            break Err(Error::TIMED_OUT);
        };
        buf = back;
        if let Err(error) = sent {
            break Err(error);
        }
    };
    match outcome {
        Ok(()) => {
            // The peer is done sending; finish our side gracefully, then close.
            let _ = socket.disconnect().await;
            let _ = socket.close().await;
            kprint!("wsk_echo_server: {peer}: closed after echoing {echoed} bytes\n");
        }
        Err(error) if error == Error::CANCELLED => {}
        Err(error) if error == Error::TIMED_OUT => {
            // The pending request was cancelled with the timeout; reset the connection.
            let _ = socket.abort().await;
            let _ = socket.close().await;
            kprint!(
                "wsk_echo_server: {peer}: idle for {} ms, closed after echoing {echoed} bytes\n",
                server.idle_timeout_ms
            );
        }
        Err(error) => kprint!("wsk_echo_server: {peer}: {error} after {echoed} bytes\n"),
    }
    drop(slot);
}

/// Listens on `address` (reporting the outcome to `opening`) and starts an echo task per
/// connection; a failed accept is retried after a pause.
async fn serve(
    client_listen: wsk::ops::Listen,
    address: SocketAddr,
    server: Arc<Server>,
    opening: Opening,
) {
    let listener: ListenSocket = match client_listen.await {
        Ok(listener) => listener,
        Err(error) => {
            kprint!("wsk_echo_server: cannot listen on {address}: {error}\n");
            opening.failed(error);
            return;
        }
    };
    // The provider is asked for the port it picked only when it picked one: a configured
    // port is the one listened on (and a provider without `WskGetLocalAddress` serves it).
    if address.port() == 0 {
        match listener.local_addr().await {
            Ok(local) => kprint!("wsk_echo_server: listening on {local}\n"),
            Err(error) => kprint!("wsk_echo_server: listening on {address} ({error})\n"),
        }
    } else {
        kprint!("wsk_echo_server: listening on {address}\n");
    }
    opening.opened();
    let mut backoff = ACCEPT_BACKOFF_MS.0;
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                backoff = ACCEPT_BACKOFF_MS.0;
                let Some(slot) = server.admit() else {
                    // Closed at once (dropping the socket closes it).
                    drop(socket);
                    if !server.at_cap.swap(true, Ordering::AcqRel) {
                        kprint!(
                            "wsk_echo_server: {} connections open (MaxConnections): refusing {peer} and others until one closes\n",
                            server.max_connections
                        );
                    }
                    continue;
                };
                server.at_cap.store(false, Ordering::Release);
                if let Err(error) = server.tasks.spawn(echo(socket, peer, slot)) {
                    // The socket was moved into the dropped task and is closed with it.
                    kprint!("wsk_echo_server: {peer}: refused: {error}\n");
                }
            }
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => {
                kprint!(
                    "wsk_echo_server: accept on {address} failed: {error}; retrying in {backoff} ms\n"
                );
                server.timers.sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MS.1);
            }
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
            "wsk_echo_server",
            &RUNNING,
            Some(driver_unload),
            || start(driver, registry_path),
        )
    }
}

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: ParameterError) -> Error {
    kprint!("wsk_echo_server: {error}\n");
    error.into()
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let addresses = match parameters.socket_addresses("Listen").map_err(reported)? {
        Some(addresses) => addresses,
        None => parse_socket_addresses(DEFAULT_LISTEN).map_err(|_| Error::INVALID_PARAMETER)?,
    };
    let max_connections = parameters
        .dword_in("MaxConnections", DEFAULT_MAX_CONNECTIONS, 1..=1_000_000)
        .map_err(reported)?;
    let idle_timeout_ms = parameters
        .dword_in("IdleTimeoutMs", DEFAULT_IDLE_TIMEOUT_MS, 0..=u32::MAX)
        .map_err(reported)?;
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = WskClient::register(driver)?;
    let timers = Arc::new(Timers::new(&client)?);
    let tasks = Arc::new(TaskSet::new(driver)?);
    let running = Running {
        tasks: Arc::clone(&tasks),
        _timers: Arc::clone(&timers),
        _client: client,
    };
    let server = Arc::new(Server {
        tasks,
        timers,
        connections: AtomicUsize::new(0),
        max_connections: max_connections as usize,
        idle_timeout_ms,
        at_cap: AtomicBool::new(false),
    });
    let openings = Openings::new(addresses.len());
    for address in addresses {
        let listen = running._client.listen(address);
        let opening = openings.reporter();
        running
            .tasks
            .spawn(serve(listen, address, Arc::clone(&server), opening))?;
    }
    drop(server);
    let outcome = openings.wait(STARTUP_WAIT_MS);
    if outcome.nothing_opened() {
        kprint!("wsk_echo_server: no address could be listened on\n");
        running.tasks.cancel_all();
        let _ = running.tasks.wait_idle();
        return Err(outcome.last_error.unwrap_or(Error::INVALID_PARAMETER));
    }
    Ok(running)
}

/// Cancels every task, waits for them, deregisters. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    // Taken in a statement of its own: the lock (DISPATCH_LEVEL) is released before waiting.
    let running = RUNNING.lock().take();
    if let Some(running) = running {
        // The accept tasks hold references to the set: cancelling drops them, and the
        // wait returns when every task is gone.
        running.tasks.cancel_all();
        let _ = running.tasks.wait_idle();
        drop(running);
    }
    kprint!("wsk_echo_server: unloaded\n");
}

export_driver_entry!(driver_entry);
