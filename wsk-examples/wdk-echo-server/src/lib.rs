//! `wdk_echo_server.sys`: a TCP echo server on `127.0.0.1:7007` and `[::1]:7007`, written
//! with `wsk` inside a windows-drivers-rs driver: `wdk-sys` for the kernel's types,
//! `wdk-alloc` for the heap `wsk` allocates from, `wdk-panic` for panics, `wdk::println!` for
//! debug output, and `wsk` (with its `wdk-sys` feature) for the network.
//!
//! Every byte a client sends comes back to it until it closes its side; then the server
//! finishes its side and closes the connection. `DriverEntry` registers the WSK client and
//! spawns one accept task per address; each connection gets a task that receives into one
//! 16 KiB buffer and sends it back, reusing the buffer: no allocation per message. The tasks
//! run in completion routines (`wsk::task`): nothing blocks a system thread.
//! `DriverUnload` cancels every task (their pending requests are cancelled and their sockets
//! closed), waits for them and deregisters the client.
#![no_std]

extern crate alloc;

// The panic handler of kernel drivers: a panic is a bug check.
extern crate wdk_panic;

use alloc::sync::Arc;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use wdk::println;
use wdk_alloc::WdkAllocator;
use wdk_sys::{DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING, STATUS_SUCCESS};
use wsk::task::TaskSet;
use wsk::{Buf, ConnectionSocket, DriverObject, Error, SpinLock, WskClient};

/// `alloc` from non-paged pool (`wsk`'s tasks and sockets live there; they are used at
/// DISPATCH_LEVEL).
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

/// The port the server listens on, on both loopback addresses.
const PORT: u16 = 7007;

/// The receive buffer of a connection.
const BUFFER_SIZE: usize = 16 * 1024;

/// What the driver keeps between `DriverEntry` and `DriverUnload`. Dropped in field order:
/// the tasks (already cancelled and finished) before the client.
struct Running {
    tasks: Arc<TaskSet>,
    _client: WskClient,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// The driver's entry point. PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager with the driver object of this image.
// SAFETY: `DriverEntry` is the entry point name the driver's link line (wdk-build) names;
// nothing else in the image exports it.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the driver object `DriverEntry` was given, valid until the image unloads.
    let Some(object) = (unsafe { DriverObject::from_raw(&raw mut *driver) }) else {
        return Error::INVALID_PARAMETER.status();
    };
    match start(object) {
        Ok(running) => {
            // Replaced in a statement of its own: the previous value (none) is dropped after
            // the lock (DISPATCH_LEVEL) is released.
            let previous = RUNNING.lock().replace(running);
            drop(previous);
            driver.DriverUnload = Some(driver_unload);
            STATUS_SUCCESS
        }
        Err(error) => {
            println!("wdk_echo_server: not started: {error}");
            error.status()
        }
    }
}

/// Registers the client and spawns the accept tasks.
fn start(driver: DriverObject) -> wsk::Result<Running> {
    let client = WskClient::register(driver)?;
    let tasks = Arc::new(TaskSet::new(driver)?);
    for address in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, PORT)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, PORT)),
    ] {
        let listen = client.listen(address);
        tasks.spawn(serve(listen, address, Arc::clone(&tasks)))?;
    }
    Ok(Running {
        tasks,
        _client: client,
    })
}

/// Listens on `address` and spawns an echo task per accepted connection.
async fn serve(listen: wsk::ops::Listen, address: SocketAddr, tasks: Arc<TaskSet>) {
    let listener = match listen.await {
        Ok(listener) => listener,
        Err(error) => {
            println!("wdk_echo_server: cannot listen on {address}: {error}");
            return;
        }
    };
    println!("wdk_echo_server: listening on {address}");
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                if let Err(error) = tasks.spawn(echo(socket, peer)) {
                    // The socket moved into the task that could not start: closed with it.
                    println!("wdk_echo_server: {peer}: refused: {error}");
                }
            }
            // Unload: the task set cancelled the accept.
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => {
                println!("wdk_echo_server: accept on {address} failed: {error}");
                return;
            }
        }
    }
}

/// Echoes one connection until the peer closes its side or an error.
async fn echo(socket: ConnectionSocket, peer: SocketAddr) {
    let mut buf = match Buf::with_capacity(BUFFER_SIZE) {
        Ok(buf) => buf,
        Err(error) => {
            println!("wdk_echo_server: {peer}: no buffer: {error}");
            return;
        }
    };
    let mut echoed = 0u64;
    loop {
        buf.clear();
        let (received, back) = socket.receive(buf).await;
        buf = back;
        match received {
            Ok(0) => break,
            Ok(n) => echoed += n as u64,
            Err(error) if error == Error::CANCELLED => return,
            Err(error) => {
                println!("wdk_echo_server: {peer}: {error} after {echoed} bytes");
                return;
            }
        }
        let (sent, back) = socket.send_all(buf).await;
        buf = back;
        if let Err(error) = sent {
            if error != Error::CANCELLED {
                println!("wdk_echo_server: {peer}: {error} after {echoed} bytes");
            }
            return;
        }
    }
    // The peer is done sending: finish our side, then close.
    let _ = socket.disconnect().await;
    let _ = socket.close().await;
    println!("wdk_echo_server: {peer}: closed after echoing {echoed} bytes");
}

/// Cancels every task, waits for them, deregisters the client. PASSIVE_LEVEL.
extern "C" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    // Taken in a statement of its own: the lock is released before the wait below.
    let running = RUNNING.lock().take();
    if let Some(running) = running {
        running.tasks.cancel_all();
        let _ = running.tasks.wait_idle();
        drop(running);
    }
    println!("wdk_echo_server: unloaded");
}
