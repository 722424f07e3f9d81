//! `wsk_https_get.sys`: fetches an `https://` URL — name resolution with `WskGetAddressInfo`,
//! a connection to the first address that answers, a TLS 1.3 handshake (`embedded-tls` over
//! [`wsk::io::AsyncStream`]) that accepts only the pinned server certificate, an HTTP/1.0
//! `GET`, the response read to the end — and prints the status line, the body's length and
//! its FNV-1a hash.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_https_get\Parameters`):
//! - `Url` (`REG_SZ`, default `https://localhost:8443/`): an `https://` URL; the host is a name
//!   or an address (IPv6 in brackets), the port 1 to 65535 (default 443); no user
//!   information, no spaces or control characters, ASCII only.
//! - `ServerCertSha256` (`REG_SZ`, **required**): the SHA-256 fingerprint of the server's
//!   certificate (its DER encoding), 64 hexadecimal digits, colons between bytes allowed
//!   (`openssl x509 -noout -fingerprint -sha256` prints it). The connection is used only if
//!   the server presents that certificate and proves it holds its private key (the
//!   handshake's `CertificateVerify`, ECDSA P-256 with SHA-256). Without the parameter the
//!   driver does not start: there is no unverified mode. The certificate's names, issuer and
//!   validity period are not looked at (the pin replaces them). The INF's placeholder (all
//!   zeros) matches no certificate.
//! - `MaxBytes` (`REG_DWORD`, default 1 MiB): the largest body accepted.
//! - `ConnectTimeoutMs` (`REG_DWORD`, default 10 000, 1 to 600 000): the resolution and the
//!   TCP connection must be done within it.
//! - `HandshakeTimeoutMs` (`REG_DWORD`, default 10 000, 1 to 600 000): the TLS handshake
//!   must be done within it.
//! - `ResponseTimeoutMs` (`REG_DWORD`, default 30 000, 1 to 3 600 000): the longest the
//!   server may keep silent — before it takes the request, or between two parts of the
//!   response.
//! - `ResponseDeadlineMs` (`REG_DWORD`, default 300 000, 0 to 86 400 000; 0: none): the
//!   longest the whole response may take, from the request's sending to the body's end.
//!
//! The response is parsed as `wsk_http_get` parses it (`wsk_driver_runtime::http`); the body
//! is hashed as it arrives, never kept.
//!
//! The handshake's randomness: a ChaCha20 generator seeded in `DriverEntry` (PASSIVE_LEVEL)
//! with 32 bytes of `BCryptGenRandom` (`BCRYPT_USE_SYSTEM_PREFERRED_RNG`, `cng.sys`). The
//! handshake's key exchange is ECDHE on P-256, its cipher suite `TLS_AES_128_GCM_SHA256`.
//!
//! `DriverEntry` seeds the generator, registers, starts the fetch as a task and returns. The
//! task is polled at PASSIVE_LEVEL only, from a work item of the driver
//! (`wsk_driver_runtime::passive`), its first poll included: the resolution is issued there,
//! and a completion that wakes the task hands it to the work item, so the handshake's
//! cryptography (milliseconds of CPU) and its deep frames (the task's poll alone takes over
//! 8 KiB) run on a system worker thread, never in `DriverEntry`'s stack nor at
//! DISPATCH_LEVEL on top of the network stack. `DriverUnload` cancels what is in flight,
//! waits for it and deregisters.
#![no_std]

extern crate alloc;

mod pinning;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::net::{IpAddr, SocketAddr};
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use embedded_tls::{
    Aes128GcmSha256, CryptoProvider, TlsConfig, TlsConnection, TlsContext, TlsError, TlsVerifier,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, SeedableRng};
use wsk::io::AsyncStream;
use wsk::task::TaskSet;
use wsk::{Error, SpinLock, WskClient};
use wsk_driver_runtime::http::{
    FetchFailure, Fetched, Response, ResponseError, Scheme, Url, parse_url,
};
use wsk_driver_runtime::parameters::ParameterError;
use wsk_driver_runtime::passive::PassiveLevel;
use wsk_driver_runtime::timer::{Timers, timeout};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING};

use pinning::{FINGERPRINT_LEN, PinnedCertificate, parse_fingerprint};

const DEFAULT_URL: &str = "https://localhost:8443/";
const DEFAULT_MAX_BYTES: u32 = 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;
const DEFAULT_HANDSHAKE_TIMEOUT_MS: u32 = 10_000;
const DEFAULT_RESPONSE_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_RESPONSE_DEADLINE_MS: u32 = 300_000;
/// The TLS read buffer: the largest record (16 KiB of plaintext and its overhead).
const RECORD_READ: usize = 16 * 1024 + 256;
/// The TLS write buffer: the request's records (larger writes are split).
const RECORD_WRITE: usize = 4096;
/// The plaintext read at a time.
const CHUNK: usize = 4096;
/// The `User-Agent`.
const AGENT: &str = "wsk-rs-https-get";

/// What the driver keeps between `DriverEntry` and `DriverUnload`.
/// The tasks drop first (cancelled, waited for), then the way to PASSIVE_LEVEL, the timers,
/// then the client (the task held the only other reference).
struct Running {
    _tasks: TaskSet,
    _passive: PassiveLevel,
    _timers: Arc<Timers>,
    _client: Arc<WskClient>,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// A fingerprint in hexadecimal.
struct Hex<'a>(&'a [u8; FINGERPRINT_LEN]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What went wrong with a fetch.
enum Failure {
    /// What an `http://` fetch can meet too (WSK errors, timeouts, the response).
    Fetch(FetchFailure),
    /// The TLS handshake was not done within the handshake timeout (ms).
    HandshakeTimeout(SocketAddr, u32),
    /// The server presented another certificate than the pinned one.
    NotPinned(SocketAddr),
    /// The handshake ended without the server proving it holds the pinned certificate's key.
    NotProven(SocketAddr),
    /// The TLS layer failed (handshake or records).
    Tls(SocketAddr, TlsError),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Fetch(error.into())
    }
}

impl From<ResponseError> for Failure {
    fn from(error: ResponseError) -> Failure {
        Failure::Fetch(error.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Fetch(failure) => write!(f, "{failure}"),
            Failure::HandshakeTimeout(address, ms) => write!(
                f,
                "the TLS handshake with {address} was not done within {ms} ms \
                 (HandshakeTimeoutMs): {}",
                Error::TIMED_OUT
            ),
            Failure::NotPinned(address) => write!(
                f,
                "certificate verification failed: {address} presented another certificate \
                 than the pinned one (ServerCertSha256); nothing was sent"
            ),
            Failure::NotProven(address) => write!(
                f,
                "certificate verification failed: the server at {address} did not prove it \
                 holds the pinned certificate's key; nothing was sent"
            ),
            Failure::Tls(address, error) => write!(f, "TLS with {address} failed: {error:?}"),
        }
    }
}

/// The limits of a fetch.
#[derive(Clone, Copy)]
struct Limits {
    max_body: u64,
    connect_timeout_ms: u32,
    handshake_timeout_ms: u32,
    response_timeout_ms: u32,
    /// 0: none.
    response_deadline_ms: u32,
}

/// The handshake's generator and verifier, lent to `embedded-tls`.
struct Crypto<'a> {
    rng: &'a mut ChaCha20Rng,
    verifier: &'a mut PinnedCertificate,
}

impl CryptoProvider for Crypto<'_> {
    type CipherSuite = Aes128GcmSha256;
    // No client certificate: nothing is signed.
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut *self.verifier)
    }
}

/// A vector of `len` zeros, or `INSUFFICIENT_RESOURCES`.
fn zeroed(len: usize) -> Result<Vec<u8>, Error> {
    let mut vec = Vec::new();
    vec.try_reserve_exact(len)
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    vec.resize(len, 0);
    Ok(vec)
}

/// Writes all of `bytes` as TLS records.
async fn write_all(
    tls: &mut TlsConnection<'_, AsyncStream, Aes128GcmSha256>,
    mut bytes: &[u8],
) -> Result<(), TlsError> {
    while !bytes.is_empty() {
        let written = tls.write(bytes).await?;
        bytes = &bytes[written..];
    }
    Ok(())
}

/// The future of [`TlsConnection::read`], made `Send` for the task set.
///
/// `embedded-tls` keeps the bounds of its record buffer (a `Range<*const u8>`) across the
/// receive it awaits, which makes its read future `!Send`. Those pointers are compared with
/// the decrypted record's position, never dereferenced, and the buffer they bound is the one
/// borrowed by the connection the future also borrows: moving the future to another
/// processor moves nothing it points into.
struct RecordRead<F>(F);

// SAFETY: see the type's documentation: the only part of the future that is not `Send` is a
// pair of addresses into memory the future's `Send` borrows already cover.
unsafe impl<F> Send for RecordRead<F> {}

impl<F: Future> Future for RecordRead<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        unsafe { self.map_unchecked_mut(|read| &mut read.0) }.poll(cx)
    }
}

/// Reads decrypted bytes into `buf` (see [`RecordRead`]).
fn read<'a>(
    tls: &'a mut TlsConnection<'_, AsyncStream, Aes128GcmSha256>,
    buf: &'a mut [u8],
) -> RecordRead<impl Future<Output = Result<usize, TlsError>> + 'a> {
    RecordRead(tls.read(buf))
}

/// Fetches `url` from a server that must present the certificate pinned by `pin`.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    resolve: wsk::ops::Resolve,
    client: Arc<WskClient>,
    timers: Arc<Timers>,
    url: Url,
    pin: [u8; FINGERPRINT_LEN],
    mut rng: ChaCha20Rng,
    limits: Limits,
) -> Result<Fetched, Failure> {
    let connecting = pin!(async {
        let addresses: Vec<SocketAddr> = resolve.await?;
        let mut last_error = Error::from_status(wsk_sys::STATUS_BAD_NETWORK_PATH);
        for address in addresses {
            match client.connect(address).await {
                Ok(socket) => return Ok((socket, address)),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    });
    let (socket, address) = timeout(timers.sleep(limits.connect_timeout_ms), connecting)
        .await
        .ok_or(Failure::Fetch(FetchFailure::ConnectTimeout(
            limits.connect_timeout_ms,
        )))??;
    kprint!("wsk_https_get: connected to {address}\n");

    let stream = AsyncStream::new(socket)?;
    let mut read_records = zeroed(RECORD_READ)?;
    let mut write_records = zeroed(RECORD_WRITE)?;
    // Dropped on every path out of this function: its stream's operations are cancelled and
    // its socket closed (in the background, or waited for by `close` below).
    let mut tls: TlsConnection<'_, AsyncStream, Aes128GcmSha256> =
        TlsConnection::new(stream, &mut read_records, &mut write_records);
    // The server's name goes in the handshake (SNI) when it is a name, not an address.
    let config = match url.host.parse::<IpAddr>() {
        Ok(_) => TlsConfig::new(),
        Err(_) => TlsConfig::new().with_server_name(&url.host),
    };
    let mut verifier = PinnedCertificate::new(pin);
    let opened = {
        let context = TlsContext::new(
            &config,
            Crypto {
                rng: &mut rng,
                verifier: &mut verifier,
            },
        );
        timeout(
            timers.sleep(limits.handshake_timeout_ms),
            pin!(tls.open(context)),
        )
        .await
    };
    let not_pinned = match verifier.presented() {
        Some(presented) if *presented != pin => {
            kprint!(
                "wsk_https_get: {address} presented a certificate with SHA-256 {}\n",
                Hex(presented)
            );
            Some(Failure::NotPinned(address))
        }
        _ => None,
    };
    match opened {
        None => {
            return Err(Failure::HandshakeTimeout(
                address,
                limits.handshake_timeout_ms,
            ));
        }
        Some(Err(error)) => return Err(not_pinned.unwrap_or(Failure::Tls(address, error))),
        Some(Ok(())) if !verifier.proven() => return Err(Failure::NotProven(address)),
        Some(Ok(())) => {}
    }
    kprint!(
        "wsk_https_get: TLS 1.3 with {address}: the server proved the pinned certificate \
         (SHA-256 {})\n",
        Hex(&pin)
    );

    // The response, from the request's sending to the body's end; raced against the
    // deadline.
    let outcome = {
        let response = pin!(async {
            let silent = Failure::Fetch(FetchFailure::Silent(address, limits.response_timeout_ms));
            let sent = {
                let request = pin!(async {
                    for part in url.request(AGENT) {
                        write_all(&mut tls, part.as_bytes()).await?;
                    }
                    tls.flush().await
                });
                timeout(timers.sleep(limits.response_timeout_ms), request).await
            };
            match sent {
                None => return Err(silent),
                Some(Err(error)) => return Err(Failure::Tls(address, error)),
                Some(Ok(())) => {}
            }
            let mut response = Response::new(limits.max_body);
            let mut chunk = zeroed(CHUNK)?;
            loop {
                let read = timeout(
                    timers.sleep(limits.response_timeout_ms),
                    pin!(read(&mut tls, &mut chunk)),
                )
                .await;
                match read {
                    None => break Err(silent),
                    // The end of the stream: the server's close_notify (or the end of the
                    // connection); the HTTP framing says whether the body is whole.
                    Some(Ok(0) | Err(TlsError::ConnectionClosed)) => {
                        break response.finish().map_err(Failure::from);
                    }
                    Some(Ok(n)) => {
                        if let Err(error) = response.push(&chunk[..n]) {
                            break Err(error.into());
                        }
                    }
                    Some(Err(error)) => break Err(Failure::Tls(address, error)),
                }
            }
        });
        match limits.response_deadline_ms {
            0 => response.await,
            ms => timeout(timers.sleep(ms), response)
                .await
                .unwrap_or(Err(Failure::Fetch(FetchFailure::Deadline(address, ms)))),
        }
    };
    // The server ended the session (close_notify, or the connection's end) before the
    // outcome is known either way: there is no TLS session left to close. Dropping the
    // connection drops its stream, whose socket closes in the background (the client's
    // teardown waits for it at unload). `embedded-tls` would answer a received close_notify
    // with a plaintext one, which the server takes for an attack.
    drop(tls);
    outcome
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
            "wsk_https_get",
            &RUNNING,
            Some(driver_unload),
            || start(driver, registry_path),
        )
    }
}

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: ParameterError) -> Error {
    kprint!("wsk_https_get: {error}\n");
    error.into()
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let text = parameters
        .string("Url")
        .map_err(reported)?
        .unwrap_or_else(|| DEFAULT_URL.into());
    let url = match parse_url(&text, Scheme::Https) {
        Ok(url) => url,
        Err(why) => {
            kprint!(
                "wsk_https_get: parameter Url: `{}`: {why}\n",
                text.escape_debug()
            );
            return Err(Error::INVALID_PARAMETER);
        }
    };
    let Some(pin_text) = parameters.string("ServerCertSha256").map_err(reported)? else {
        kprint!(
            "wsk_https_get: parameter ServerCertSha256: missing: the server's certificate \
             must be pinned (there is no unverified mode)\n"
        );
        return Err(Error::INVALID_PARAMETER);
    };
    let pin = match parse_fingerprint(pin_text.trim()) {
        Ok(pin) => pin,
        Err(why) => {
            kprint!(
                "wsk_https_get: parameter ServerCertSha256: `{}`: {why}\n",
                pin_text.escape_debug()
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
        handshake_timeout_ms: parameters
            .dword_in(
                "HandshakeTimeoutMs",
                DEFAULT_HANDSHAKE_TIMEOUT_MS,
                1..=600_000,
            )
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
    // The generator's seed, from the kernel's (PASSIVE_LEVEL, as BCRYPT_USE_SYSTEM_PREFERRED_RNG
    // requires); the handshake runs at DISPATCH_LEVEL and draws from the ChaCha20 stream.
    let mut seed = [0u8; 32];
    wsk_driver_runtime::random::fill(&mut seed)?;
    let rng = ChaCha20Rng::from_seed(seed);
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
        match fetch(resolve, task_client, task_timers, url, pin, rng, limits).await {
            Ok(fetched) => kprint!(
                "wsk_https_get: {text}: {}; body {} bytes{}, fnv1a64 {:016x}\n",
                fetched.status.escape_debug(),
                fetched.length,
                if fetched.chunked { " (chunked)" } else { "" },
                fetched.hash
            ),
            Err(failure) => kprint!("wsk_https_get: {text}: {failure}\n"),
        }
    };
    // Polled at PASSIVE_LEVEL only, on a system worker thread: the handshake's cryptography
    // neither runs at DISPATCH_LEVEL nor on top of the network stack's frames.
    let passive = PassiveLevel::new(driver)?;
    tasks.spawn(passive.run(fut))?;
    Ok(Running {
        _tasks: tasks,
        _passive: passive,
        _timers: timers,
        _client: client,
    })
}

/// Cancels the fetch if it is still running, waits for it, deregisters. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    // Taken in a statement of its own: the lock (DISPATCH_LEVEL) is released before waiting.
    let running = RUNNING.lock().take();
    drop(running);
    kprint!("wsk_https_get: unloaded\n");
}

export_driver_entry!(driver_entry);
