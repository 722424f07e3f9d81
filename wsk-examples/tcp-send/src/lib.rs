//! `wsk_tcp_send.sys`: connects to a TCP server, sends one message and closes the connection —
//! Microsoft's "Sending Data over a Connection-Oriented Socket", written with the `wsk` crate.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_tcp_send\Parameters`):
//! - `Server` (`REG_SZ`, default `127.0.0.1:7000`): the server's address;
//! - `Message` (`REG_SZ`): the text to send.
//!
//! `DriverEntry` registers the WSK client and starts the exchange as a task, then returns:
//! the connect, send and close complete in completion routines, never blocking the loading
//! thread. `DriverUnload` cancels what is still in flight and waits for it (PASSIVE_LEVEL),
//! then deregisters. The outcome is printed with `DbgPrint`.
//!
//! Compare with the raw twin, `wsk_tcp_send_raw.sys`, which does the same with `wsk-sys`
//! alone: IRPs, completion routines and state by hand.
#![no_std]

extern crate alloc;

use alloc::string::String;
use core::net::SocketAddr;

use wsk::task::TaskSet;
use wsk::{AddressFamily, Buf, ConnectionSocket, Error, SpinLock, WskClient};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING};

/// The server when the `Server` parameter is missing.
const DEFAULT_SERVER: &str = "127.0.0.1:7000";
/// The message when the `Message` parameter is missing.
const DEFAULT_MESSAGE: &str = "Hello from a Rust WSK driver\n";

/// What the driver keeps between `DriverEntry` and `DriverUnload`. Fields drop in order: the
/// task first (cancelled and waited for), then the client (sockets closed, deregistered).
struct Running {
    _tasks: TaskSet,
    _client: WskClient,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// The configuration.
struct Config {
    server: SocketAddr,
    message: String,
}

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: wsk_driver_runtime::parameters::ParameterError) -> Error {
    kprint!("wsk_tcp_send: {error}\n");
    error.into()
}

fn read_config(registry_path: PUNICODE_STRING) -> wsk::Result<Config> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let server = parameters
        .string("Server")
        .map_err(reported)?
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let server = server.trim().parse().map_err(|_| {
        kprint!("wsk_tcp_send: parameter Server: `{server}` is not an IP address and port\n");
        Error::INVALID_PARAMETER
    })?;
    let message = parameters
        .string("Message")
        .map_err(reported)?
        .unwrap_or_else(|| DEFAULT_MESSAGE.into());
    if message.is_empty() {
        kprint!("wsk_tcp_send: parameter Message: it is empty\n");
        return Err(Error::INVALID_PARAMETER);
    }
    Ok(Config { server, message })
}

/// Connects, sends the whole message, closes: the task `DriverEntry` starts.
///
/// The connection is made in three calls — `WskSocket`, `WskBind` to any local address,
/// `WskConnect` — rather than `WskSocketConnect`'s one: every WSK provider implements these
/// (Wine's 8.0 provider does not implement `WskSocketConnect`).
async fn exchange(
    create: wsk::ops::CreateConnection,
    server: SocketAddr,
    message: Buf,
) -> wsk::Result<usize> {
    let socket = create.await?;
    socket
        .bind(AddressFamily::of(&server).unspecified())
        .await?;
    socket.connect(server).await?;
    let length = message.len();
    let (sent, _message) = socket.send_all(message).await;
    sent?;
    socket.close().await?;
    Ok(length)
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
            "wsk_tcp_send",
            &RUNNING,
            Some(driver_unload),
            || start(driver, registry_path),
        )
    }
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    let config = read_config(registry_path)?;
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = WskClient::register(driver)?;
    let message = Buf::from_slice(config.message.as_bytes())?;
    let create = ConnectionSocket::create(&client, AddressFamily::of(&config.server));
    let tasks = TaskSet::new(driver)?;
    let server = config.server;
    tasks.spawn(async move {
        match exchange(create, server, message).await {
            Ok(sent) => kprint!("wsk_tcp_send: sent {sent} bytes to {server}\n"),
            Err(error) => kprint!("wsk_tcp_send: sending to {server} failed: {error}\n"),
        }
    })?;
    Ok(Running {
        _tasks: tasks,
        _client: client,
    })
}

/// Cancels what is in flight, waits for it, deregisters. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    let running = RUNNING.lock().take();
    drop(running);
    kprint!("wsk_tcp_send: unloaded\n");
}

export_driver_entry!(driver_entry);
