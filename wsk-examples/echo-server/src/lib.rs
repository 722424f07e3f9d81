//! `wsk_echo_server.sys`: a TCP echo server. Every byte a client sends comes back to it,
//! until it closes its side; then the server closes the connection.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_echo_server\Parameters`):
//! - `Listen` (`REG_SZ`, default `127.0.0.1:7007,[::1]:7007`): the addresses to listen on,
//!   comma-separated (IPv4 and IPv6; port 0 picks a free port, printed at start).
//!
//! `DriverEntry` registers the WSK client and starts one accept task per address; each
//! accepted connection gets a task of its own that receives into one buffer and sends it
//! back, reusing the buffer and the socket's IRPs: no allocation per message. Everything runs
//! in completion routines (`wsk::task`); nothing blocks a system thread. `DriverUnload`
//! cancels every task — pending accepts, receives and sends are cancelled, their sockets
//! closed — waits for them, and deregisters.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use core::net::SocketAddr;

use wsk::task::TaskSet;
use wsk::{Buf, ConnectionSocket, Error, SpinLock, WskClient};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_SUCCESS};

/// The addresses when the `Listen` parameter is missing.
const DEFAULT_LISTEN: &str = "127.0.0.1:7007,[::1]:7007";

/// The receive buffer of a connection.
const BUFFER_SIZE: usize = 16 * 1024;

/// What the driver keeps between `DriverEntry` and `DriverUnload`: the tasks drop first
/// (cancelled, waited for), then the client.
struct Running {
    tasks: Arc<TaskSet>,
    _client: WskClient,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// Echoes one connection until the peer closes its side or an error.
async fn echo(socket: ConnectionSocket, peer: SocketAddr) {
    let mut buf = match Buf::with_capacity(BUFFER_SIZE) {
        Ok(buf) => buf,
        Err(error) => {
            kprint!("wsk_echo_server: {peer}: no buffer: {error}\n");
            return;
        }
    };
    let mut echoed = 0u64;
    let outcome = loop {
        buf.clear();
        let (received, back) = socket.receive(buf).await;
        buf = back;
        match received {
            Ok(0) => break Ok(()),
            Ok(n) => echoed += n as u64,
            Err(error) => break Err(error),
        }
        let (sent, back) = socket.send_all(buf).await;
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
        Err(error) => kprint!("wsk_echo_server: {peer}: {error} after {echoed} bytes\n"),
    }
}

/// Listens on `address` and starts an echo task per connection.
async fn serve(client_listen: wsk::ops::Listen, address: SocketAddr, tasks: Arc<TaskSet>) {
    let listener = match client_listen.await {
        Ok(listener) => listener,
        Err(error) => {
            kprint!("wsk_echo_server: cannot listen on {address}: {error}\n");
            return;
        }
    };
    match listener.local_addr().await {
        Ok(local) => kprint!("wsk_echo_server: listening on {local}\n"),
        Err(error) => kprint!("wsk_echo_server: listening on {address} ({error})\n"),
    }
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                if let Err(error) = tasks.spawn(echo(socket, peer)) {
                    // The socket was moved into the dropped task and is closed with it.
                    kprint!("wsk_echo_server: {peer}: refused: {error}\n");
                }
            }
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => {
                kprint!("wsk_echo_server: accept on {address} failed: {error}\n");
                return;
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
    match start(driver, registry_path) {
        Ok(running) => {
            // Replaced in a statement of its own: whatever it held (nothing, after a proper
            // unload) is dropped after the lock is released, at PASSIVE_LEVEL.
            let previous = RUNNING.lock().replace(running);
            drop(previous);
            // SAFETY: the driver object is valid for the driver's lifetime.
            unsafe { (*driver).DriverUnload = Some(driver_unload) };
            STATUS_SUCCESS
        }
        Err(error) => {
            kprint!("wsk_echo_server: not started: {error}\n");
            error.status()
        }
    }
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let addresses = match parameters.socket_addresses("Listen") {
        Ok(Some(addresses)) => addresses,
        Ok(None) => wsk_driver_runtime::parameters::parse_socket_addresses(DEFAULT_LISTEN)?,
        Err(error) => {
            kprint!("wsk_echo_server: Listen is not a list of IP addresses and ports\n");
            return Err(error);
        }
    };
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = WskClient::register(driver)?;
    let tasks = Arc::new(TaskSet::new()?);
    for address in addresses {
        tasks.spawn(serve(client.listen(address), address, Arc::clone(&tasks)))?;
    }
    Ok(Running {
        tasks,
        _client: client,
    })
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
