//! `wsk_http_get.sys`: fetches a URL over HTTP — name resolution with `WskGetAddressInfo`, a
//! connection to the first address that answers, an HTTP/1.0 `GET`, the response read to the
//! end — and prints the status line, the body's length and its FNV-1a hash.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_http_get\Parameters`):
//! - `Url` (`REG_SZ`, default `http://localhost:8000/`): an `http://` URL (no TLS in this
//!   example); the host is a name or an address (IPv6 in brackets);
//! - `MaxBytes` (`REG_DWORD`, default 1 MiB): the largest response accepted.
//!
//! `DriverEntry` starts the fetch as a task and returns; the resolution is issued from
//! `DriverEntry`'s own thread (it needs PASSIVE_LEVEL), the rest runs in completion routines.
//! `DriverUnload` cancels what is in flight, waits for it and deregisters.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::SocketAddr;

use wsk::task::TaskSet;
use wsk::{Buf, Error, SpinLock, WskClient};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_SUCCESS};

const DEFAULT_URL: &str = "http://localhost:8000/";
const DEFAULT_MAX_BYTES: u32 = 1024 * 1024;
/// The receive buffer.
const CHUNK: usize = 16 * 1024;

/// What the driver keeps between `DriverEntry` and `DriverUnload`.
/// The tasks drop first (cancelled, waited for), then the client (the task held the only
/// other reference).
struct Running {
    _tasks: TaskSet,
    _client: Arc<WskClient>,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// An `http://host[:port][/path]` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    host: String,
    port: u16,
    /// The `Host` header's value (the authority as written).
    authority: String,
    path: String,
}

fn parse_url(text: &str) -> Option<Url> {
    let rest = text.trim().strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after {
            "" => 80,
            other => other.strip_prefix(':')?.parse().ok()?,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 80),
        }
    };
    if host.is_empty() || port == 0 || path.bytes().any(|b| b <= b' ') {
        return None;
    }
    Some(Url {
        host: host.into(),
        port,
        authority: authority.into(),
        path: path.into(),
    })
}

/// FNV-1a, 64 bits: a hash the tests can recompute.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The response read to the end, or what went wrong.
async fn fetch(
    resolve: wsk::ops::Resolve,
    client: Arc<WskClient>,
    url: Url,
    max: usize,
) -> wsk::Result<Vec<u8>> {
    let addresses: Vec<SocketAddr> = resolve.await?;
    let mut last_error = Error::from_status(wsk_sys::STATUS_BAD_NETWORK_PATH);
    let mut connected = None;
    for address in addresses {
        match client.connect(address).await {
            Ok(socket) => {
                connected = Some((socket, address));
                break;
            }
            Err(error) => last_error = error,
        }
    }
    let Some((socket, address)) = connected else {
        return Err(last_error);
    };
    kprint!("wsk_http_get: connected to {address}\n");
    let mut request = Buf::with_capacity(url.path.len() + url.authority.len() + 96)?;
    for part in [
        "GET ",
        url.path.as_str(),
        " HTTP/1.0\r\nHost: ",
        url.authority.as_str(),
        "\r\nUser-Agent: wsk-rs-http-get\r\nConnection: close\r\n\r\n",
    ] {
        request.extend_from_slice(part.as_bytes())?;
    }
    let (sent, _request) = socket.send_all(request).await;
    sent?;
    let mut response: Vec<u8> = Vec::new();
    let mut buf = Buf::with_capacity(CHUNK)?;
    loop {
        buf.clear();
        let (received, back) = socket.receive(buf).await;
        buf = back;
        if received? == 0 {
            break;
        }
        if response.len() + buf.len() > max {
            let _ = socket.abort().await;
            return Err(Error::from_status(wsk_sys::STATUS_BUFFER_OVERFLOW));
        }
        response
            .try_reserve(buf.len())
            .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
        response.extend_from_slice(&buf);
    }
    socket.close().await?;
    Ok(response)
}

/// Prints the status line, the body's length and hash.
fn report(url: &str, response: &[u8]) {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        kprint!(
            "wsk_http_get: {url}: the response has no header end ({} bytes)\n",
            response.len()
        );
        return;
    };
    let head = core::str::from_utf8(&response[..end]).unwrap_or("");
    let status = head.lines().next().unwrap_or("");
    let body = &response[end + 4..];
    kprint!(
        "wsk_http_get: {url}: {status}; body {} bytes, fnv1a64 {:016x}\n",
        body.len(),
        fnv1a(body)
    );
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
            kprint!("wsk_http_get: not started: {error}\n");
            error.status()
        }
    }
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let text = parameters
        .string("Url")?
        .unwrap_or_else(|| DEFAULT_URL.into());
    let Some(url) = parse_url(&text) else {
        kprint!("wsk_http_get: Url `{text}` is not an http:// URL\n");
        return Err(Error::INVALID_PARAMETER);
    };
    let max = parameters.dword("MaxBytes")?.unwrap_or(DEFAULT_MAX_BYTES) as usize;
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = Arc::new(WskClient::register(driver)?);
    let tasks = TaskSet::new()?;
    let resolve = client.resolve(&url.host, url.port);
    let task_client = Arc::clone(&client);
    tasks.spawn(async move {
        match fetch(resolve, task_client, url, max).await {
            Ok(response) => report(&text, &response),
            Err(error) => kprint!("wsk_http_get: {text}: {error}\n"),
        }
    })?;
    Ok(Running {
        _tasks: tasks,
        _client: client,
    })
}

/// Cancels the fetch if it is still running, waits for it, deregisters. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    // Taken in a statement of its own: the lock (DISPATCH_LEVEL) is released before waiting.
    let running = RUNNING.lock().take();
    drop(running);
    kprint!("wsk_http_get: unloaded\n");
}

export_driver_entry!(driver_entry);
