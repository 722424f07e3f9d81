//! `wsk_udp_echo.sys`: a UDP echo server. Every datagram is sent back to its source.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_udp_echo\Parameters`):
//! - `Listen` (`REG_SZ`, default `127.0.0.1:7008,[::1]:7008`): the addresses to bind,
//!   comma-separated (IPv4 and IPv6; port 0 picks a free port, printed at start).
//!
//! `DriverEntry` registers the WSK client and starts one task per address: it binds a
//! datagram socket, then receives into one buffer and sends each datagram back from it —
//! the buffer and the socket's IRPs are reused, no allocation per datagram. `DriverUnload`
//! cancels the tasks (their pending receives are cancelled, their sockets closed), waits for
//! them and deregisters.
#![no_std]

extern crate alloc;

use core::net::SocketAddr;

use wsk::task::TaskSet;
use wsk::{Buf, Error, SpinLock, WskClient};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_SUCCESS};

/// The addresses when the `Listen` parameter is missing.
const DEFAULT_LISTEN: &str = "127.0.0.1:7008,[::1]:7008";

/// The largest datagram echoed whole (the largest UDP payload over IPv4); longer ones are
/// truncated by the receive, as with any UDP socket.
const DATAGRAM_CAPACITY: usize = 65507;

/// What the driver keeps between `DriverEntry` and `DriverUnload`: the tasks drop first
/// (cancelled, waited for), then the client.
struct Running {
    _tasks: TaskSet,
    _client: WskClient,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// Binds `address` and echoes datagrams until cancelled.
async fn serve(bind: wsk::ops::BindDatagram, address: SocketAddr) {
    let socket = match bind.await {
        Ok(socket) => socket,
        Err(error) => {
            kprint!("wsk_udp_echo: cannot bind {address}: {error}\n");
            return;
        }
    };
    match socket.local_addr().await {
        Ok(local) => kprint!("wsk_udp_echo: listening on {local}\n"),
        Err(error) => kprint!("wsk_udp_echo: listening on {address} ({error})\n"),
    }
    let mut buf = match Buf::with_capacity(DATAGRAM_CAPACITY) {
        Ok(buf) => buf,
        Err(error) => {
            kprint!("wsk_udp_echo: no buffer: {error}\n");
            return;
        }
    };
    loop {
        buf.clear();
        let (received, back) = socket.receive_from(buf).await;
        buf = back;
        let source = match received {
            Ok((_, source)) => source,
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => {
                // A datagram's failure (an ICMP error reported on the socket, say) does not
                // end the service.
                kprint!("wsk_udp_echo: receive on {address}: {error}\n");
                continue;
            }
        };
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
            kprint!("wsk_udp_echo: not started: {error}\n");
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
            kprint!("wsk_udp_echo: Listen is not a list of IP addresses and ports\n");
            return Err(error);
        }
    };
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = WskClient::register(driver)?;
    let tasks = TaskSet::new()?;
    for address in addresses {
        tasks.spawn(serve(client.bind_datagram(address), address))?;
    }
    Ok(Running {
        _tasks: tasks,
        _client: client,
    })
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
