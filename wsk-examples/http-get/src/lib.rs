//! `wsk_http_get.sys`: fetches a URL over HTTP — name resolution with `WskGetAddressInfo`, a
//! connection to the first address that answers, an HTTP/1.0 `GET`, the response read to the
//! end — and prints the status line, the body's length and its FNV-1a hash.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_http_get\Parameters`):
//! - `Url` (`REG_SZ`, default `http://localhost:8000/`): an `http://` URL (no TLS in this
//!   example); the host is a name or an address (IPv6 in brackets), the port 1 to 65535 in
//!   decimal digits; no user information, no spaces or control characters, ASCII only.
//! - `MaxBytes` (`REG_DWORD`, default 1 MiB): the largest body accepted.
//! - `ConnectTimeoutMs` (`REG_DWORD`, default 10 000, 1 to 600 000): the resolution and the
//!   connection must be done within it.
//! - `ResponseTimeoutMs` (`REG_DWORD`, default 30 000, 1 to 3 600 000): the longest the
//!   server may keep silent — before it takes the request, or between two parts of the
//!   response.
//! - `ResponseDeadlineMs` (`REG_DWORD`, default 300 000, 0 to 86 400 000; 0: none): the
//!   longest the whole response may take, from the request's sending to the body's end —
//!   a server that trickles bytes is not silent, but is stopped by it.
//!
//! The response is parsed strictly (`wsk_driver_runtime::http`, shared with `wsk_https_get`):
//! its head's lines end with CRLF and hold no other control character than tab; a chunk size
//! line is hexadecimal digits, optionally an extension (`;...`), then CRLF; a chunk's data is
//! followed by CRLF; the trailer's lines end with CRLF. A chunk size line and the trailer may
//! each be 16 KiB at most. The status line is printed escaped.
//!
//! The body is not kept: it is decoded as it arrives (chunked transfer coding included) and
//! streamed into its hash, through one 16 KiB buffer, whatever its size. Only the response's
//! head is kept (16 KiB at most).
//!
//! `DriverEntry` starts the fetch as a task and returns; the resolution is issued from
//! `DriverEntry`'s own thread (it needs PASSIVE_LEVEL), the rest runs in completion routines
//! and the runtime's timer work item. `DriverUnload` cancels what is in flight, waits for it
//! and deregisters.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::pin::pin;

use wsk::task::TaskSet;
use wsk::{AddressFamily, Buf, ConnectionSocket, Error, SpinLock, WskClient};
use wsk_driver_runtime::http::{
    FetchFailure as Failure, Fetched, Response, Scheme, Url, parse_url,
};
use wsk_driver_runtime::parameters::ParameterError;
use wsk_driver_runtime::timer::{Timers, timeout};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING};

const DEFAULT_URL: &str = "http://localhost:8000/";
const DEFAULT_MAX_BYTES: u32 = 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;
const DEFAULT_RESPONSE_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_RESPONSE_DEADLINE_MS: u32 = 300_000;
/// The receive buffer.
const CHUNK: usize = 16 * 1024;

/// What the driver keeps between `DriverEntry` and `DriverUnload`.
/// The tasks drop first (cancelled, waited for), then the timers, then the client (the task
/// held the only other reference).
struct Running {
    _tasks: TaskSet,
    _timers: Arc<Timers>,
    _client: Arc<WskClient>,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// The limits of a fetch.
#[derive(Clone, Copy)]
struct Limits {
    max_body: u64,
    connect_timeout_ms: u32,
    response_timeout_ms: u32,
    /// 0: none.
    response_deadline_ms: u32,
}

/// Fetches `url`, streaming the body into its hash. Once connected, the outcome — the
/// complete response, or what went wrong with it — is given to `report` as soon as it is
/// known, before the connection is closed or reset (so a close the provider is slow to
/// complete does not hold the result back); `Err` is a failure before that, not reported.
async fn fetch(
    resolve: wsk::ops::Resolve,
    client: Arc<WskClient>,
    timers: Arc<Timers>,
    url: Url,
    limits: Limits,
    report: impl FnOnce(&Result<Fetched, Failure>),
) -> Result<(), Failure> {
    let connecting = pin!(async {
        let addresses: Vec<SocketAddr> = resolve.await?;
        let mut last_error = Error::from_status(wsk_sys::STATUS_BAD_NETWORK_PATH);
        for address in addresses {
            match connect(&client, address).await {
                Ok(socket) => return Ok((socket, address)),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    });
    let (socket, address) = timeout(timers.sleep(limits.connect_timeout_ms), connecting)
        .await
        .ok_or(Failure::ConnectTimeout(limits.connect_timeout_ms))??;
    kprint!("wsk_http_get: connected to {address}\n");
    let parts = url.request("wsk-rs-http-get");
    let mut request = Buf::with_capacity(parts.iter().map(|part| part.len()).sum())?;
    for part in parts {
        request.extend_from_slice(part.as_bytes())?;
    }
    // The response, from the request's sending to the body's end; raced against the
    // deadline. Dropped before the socket is closed (it borrows it).
    let outcome = {
        let response = pin!(async {
            let silent = Failure::Silent(address, limits.response_timeout_ms);
            let Some((sent, _request)) = timeout(
                timers.sleep(limits.response_timeout_ms),
                socket.send_all(request),
            )
            .await
            else {
                return Err(silent);
            };
            sent?;
            let mut response = Response::new(limits.max_body);
            let mut buf = Buf::with_capacity(CHUNK)?;
            loop {
                buf.clear();
                let Some((received, back)) = timeout(
                    timers.sleep(limits.response_timeout_ms),
                    socket.receive(buf),
                )
                .await
                else {
                    break Err(silent);
                };
                buf = back;
                match received {
                    Ok(0) => break response.finish().map_err(Failure::from),
                    Ok(_) => {}
                    Err(error) => break Err(error.into()),
                }
                if let Err(error) = response.push(&buf) {
                    break Err(error.into());
                }
            }
        });
        match limits.response_deadline_ms {
            0 => response.await,
            ms => timeout(timers.sleep(ms), response)
                .await
                .unwrap_or(Err(Failure::Deadline(address, ms))),
        }
    };
    report(&outcome);
    match outcome {
        Ok(_) => socket.close().await?,
        Err(_) => {
            let _ = socket.abort().await;
        }
    }
    Ok(())
}

/// Connects to `address` in three calls — `WskSocket`, `WskBind` to any local address,
/// `WskConnect` — rather than `WskSocketConnect`'s one: every WSK provider implements these
/// (Wine's 8.0 provider does not implement `WskSocketConnect`).
async fn connect(client: &WskClient, address: SocketAddr) -> wsk::Result<ConnectionSocket> {
    let family = AddressFamily::of(&address);
    let socket = ConnectionSocket::create(client, family).await?;
    socket.bind(family.unspecified()).await?;
    socket.connect(address).await?;
    Ok(socket)
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
            "wsk_http_get",
            &RUNNING,
            Some(driver_unload),
            || start(driver, registry_path),
        )
    }
}

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: ParameterError) -> Error {
    kprint!("wsk_http_get: {error}\n");
    error.into()
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let text = parameters
        .string("Url")
        .map_err(reported)?
        .unwrap_or_else(|| DEFAULT_URL.into());
    let url = match parse_url(&text, Scheme::Http) {
        Ok(url) => url,
        Err(why) => {
            kprint!(
                "wsk_http_get: parameter Url: `{}`: {why}\n",
                text.escape_debug()
            );
            return Err(Error::INVALID_PARAMETER);
        }
    };
    let limits = Limits {
        max_body: u64::from(
            parameters
                .dword_in("MaxBytes", DEFAULT_MAX_BYTES, 0..=u32::MAX)
                .map_err(reported)?,
        ),
        connect_timeout_ms: parameters
            .dword_in("ConnectTimeoutMs", DEFAULT_CONNECT_TIMEOUT_MS, 1..=600_000)
            .map_err(reported)?,
        response_timeout_ms: parameters
            .dword_in(
                "ResponseTimeoutMs",
                DEFAULT_RESPONSE_TIMEOUT_MS,
                1..=3_600_000,
            )
            .map_err(reported)?,
        response_deadline_ms: parameters
            .dword_in(
                "ResponseDeadlineMs",
                DEFAULT_RESPONSE_DEADLINE_MS,
                0..=86_400_000,
            )
            .map_err(reported)?,
    };
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = Arc::new(WskClient::register(driver)?);
    let timers = Arc::new(Timers::new(&client)?);
    let tasks = TaskSet::new(driver)?;
    let resolve = client.resolve(&url.host, url.port);
    let task_client = Arc::clone(&client);
    let task_timers = Arc::clone(&timers);
    let fut = async move {
        let report = |outcome: &Result<Fetched, Failure>| match outcome {
            Ok(fetched) => kprint!(
                "wsk_http_get: {text}: {}; body {} bytes{}, fnv1a64 {:016x}\n",
                fetched.status.escape_debug(),
                fetched.length,
                if fetched.chunked { " (chunked)" } else { "" },
                fetched.hash
            ),
            Err(failure) => kprint!("wsk_http_get: {text}: {failure}\n"),
        };
        if let Err(failure) = fetch(resolve, task_client, task_timers, url, limits, report).await {
            kprint!("wsk_http_get: {text}: {failure}\n");
        }
    };
    tasks.spawn(fut)?;
    Ok(Running {
        _tasks: tasks,
        _timers: timers,
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
