//! The WSK provider: clients, sockets and their dispatch tables, over real host sockets.
//!
//! Requests complete in the calling thread when they can finish at once (and the fault plan
//! allows) — at DISPATCH_LEVEL, or at the caller's IRQL when the plan says
//! `inline_completion_at_caller_irql` — else from the provider's thread, at DISPATCH_LEVEL, as
//! the real stack does. Event callbacks come from the provider's thread, or from several
//! delivery threads at once when the plan says `concurrent_events`.

mod address;
mod client_calls;
mod control;
pub(crate) mod dispatch;
mod indication;
mod inspect;
mod reactor;
pub(crate) mod socket;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use wsk_sys::*;

use crate::verifier::{Rule, bug_check};
use socket::{Category, HostSocket};

/// A registered WSK client (`PWSK_CLIENT` points to it).
pub(crate) struct HostClient {
    dispatch: *const WSK_CLIENT_DISPATCH,
    captures: AtomicU32,
    static_events: AtomicU32,
    provider_dispatch: WSK_PROVIDER_DISPATCH,
}

// SAFETY: the client's dispatch table is immutable and usable from any thread.
unsafe impl Send for HostClient {}
// SAFETY: as above.
unsafe impl Sync for HostClient {}

impl HostClient {
    pub(crate) fn new(_context: PVOID, dispatch: *const WSK_CLIENT_DISPATCH) -> HostClient {
        // SAFETY: the client's dispatch table outlives its registration.
        let version = unsafe { (*dispatch).Version };
        HostClient {
            dispatch,
            captures: AtomicU32::new(0),
            static_events: AtomicU32::new(0),
            provider_dispatch: WSK_PROVIDER_DISPATCH {
                Version: version,
                Reserved: 0,
                WskSocket: Some(client_calls::socket),
                WskSocketConnect: Some(client_calls::socket_connect),
                WskControlClient: Some(client_calls::control_client),
                WskGetAddressInfo: Some(client_calls::get_address_info),
                WskFreeAddressInfo: Some(client_calls::free_address_info),
                WskGetNameInfo: Some(client_calls::get_name_info),
            },
        }
    }

    pub(crate) fn requested_version(&self) -> u16 {
        // SAFETY: the client's dispatch table outlives its registration.
        unsafe { (*self.dispatch).Version }
    }

    pub(crate) fn provider_dispatch(&self) -> *const WSK_PROVIDER_DISPATCH {
        &raw const self.provider_dispatch
    }

    pub(crate) fn capture(&self) {
        self.captures.fetch_add(1, Ordering::AcqRel);
    }

    /// Releases a capture; `false` when there was none.
    pub(crate) fn release(&self) -> bool {
        self.captures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn captures(&self) -> u32 {
        self.captures.load(Ordering::Acquire)
    }

    /// `WSK_SET_STATIC_EVENT_CALLBACKS`: only before any socket exists.
    pub(crate) fn set_static_events(&self, mask: ULONG) -> NTSTATUS {
        if sockets_of(self) > 0 {
            return STATUS_INVALID_DEVICE_STATE;
        }
        self.static_events.store(mask, Ordering::Release);
        STATUS_SUCCESS
    }

    /// The static events that apply to a new socket of `category`.
    pub(crate) fn static_events(&self, category: Category) -> ULONG {
        let mask = self.static_events.load(Ordering::Acquire);
        let applicable = match category {
            Category::Basic => 0,
            Category::Listen => WSK_EVENT_ACCEPT,
            Category::Connection => {
                WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
            }
            Category::Datagram => WSK_EVENT_RECEIVE_FROM,
            Category::Stream => {
                WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
            }
        };
        mask & applicable
    }
}

/// Open sockets, by address (which is also their poll token).
static SOCKETS: Mutex<Option<HashMap<usize, Arc<HostSocket>>>> = Mutex::new(None);
/// Recently closed sockets: kept alive so that a call on one is detected, not undefined.
static RETIRED: Mutex<VecDeque<Arc<HostSocket>>> = Mutex::new(VecDeque::new());
const RETIRED_LENGTH: usize = 1024;

fn sockets() -> MutexGuard<'static, Option<HashMap<usize, Arc<HostSocket>>>> {
    SOCKETS.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn add_socket(socket: &Arc<HostSocket>) {
    sockets()
        .get_or_insert_with(HashMap::new)
        .insert(Arc::as_ptr(socket) as usize, Arc::clone(socket));
}

/// Moves a closed socket out of the open ones.
pub(crate) fn retire_socket(socket: &Arc<HostSocket>) {
    sockets()
        .get_or_insert_with(HashMap::new)
        .remove(&(Arc::as_ptr(socket) as usize));
    let mut retired = RETIRED.lock().unwrap_or_else(|e| e.into_inner());
    retired.push_back(Arc::clone(socket));
    if retired.len() > RETIRED_LENGTH {
        retired.pop_front();
    }
}

pub(crate) fn socket_by_token(token: usize) -> Option<Arc<HostSocket>> {
    socket_by_address(token)
}

pub(crate) fn socket_by_address(address: usize) -> Option<Arc<HostSocket>> {
    sockets().as_ref().and_then(|m| m.get(&address).cloned())
}

/// The open socket behind a `PWSK_SOCKET` a client called with; reports a call on a closed
/// (or unknown) socket.
pub(crate) fn socket_for_call(socket: PWSK_SOCKET, routine: &str) -> Option<Arc<HostSocket>> {
    if let Some(found) = socket_by_address(socket as usize) {
        if !found.lock().closing {
            return Some(found);
        }
        bug_check(
            Rule::SocketUseAfterClose,
            format!("{routine} on socket {socket:p} after WskCloseSocket"),
        );
        return None;
    }
    let retired = RETIRED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|s| std::ptr::eq(Arc::as_ptr(s).cast::<u8>(), socket as *const u8));
    if retired {
        bug_check(
            Rule::SocketUseAfterClose,
            format!("{routine} on socket {socket:p}, whose close completed"),
        );
    } else {
        bug_check(
            Rule::InvalidParameter,
            format!("{routine} on {socket:p}, which is not a socket of this provider"),
        );
    }
    None
}

/// The registered client behind a `PWSK_CLIENT`.
pub(crate) fn client_for_call(client: PWSK_CLIENT, routine: &str) -> Option<&'static HostClient> {
    let live = crate::netio::is_registered(client as usize);
    if !live {
        bug_check(
            Rule::CaptureReleaseMismatch,
            format!("{routine} with client {client:p}, which is not registered"),
        );
        return None;
    }
    // SAFETY: registered clients live until deregistration, which waits for every socket and
    // capture; the caller holds a capture.
    Some(unsafe { &*(client as *const HostClient) })
}

/// Number of open sockets.
pub(crate) fn open_sockets() -> usize {
    sockets().as_ref().map_or(0, HashMap::len)
}

/// Number of open sockets of a client.
pub(crate) fn sockets_of(client: &HostClient) -> usize {
    let client = std::ptr::from_ref(client);
    sockets()
        .as_ref()
        .map_or(0, |m| m.values().filter(|s| s.client == client).count())
}

/// Requests (sends, receives, accepts, connects) queued on open sockets, waiting for the
/// network.
pub(crate) fn queued_requests() -> usize {
    let sockets: Vec<Arc<HostSocket>> = sockets()
        .as_ref()
        .map_or_else(Vec::new, |m| m.values().cloned().collect());
    sockets.iter().map(|socket| socket.queued_requests()).sum()
}

pub(crate) fn outstanding_address_info() -> usize {
    client_calls::outstanding_address_info()
}

/// Runs `f` on the host socket behind a provider socket; see `Session::with_host_socket`.
pub(crate) fn with_host_socket<R>(
    socket: PWSK_SOCKET,
    f: impl FnOnce(socket2::SockRef<'_>) -> R,
) -> Option<R> {
    control::inspect_host_socket(socket, f)
}

/// The transports changed: pending `WSK_TRANSPORT_LIST_CHANGE` requests complete.
pub(crate) fn transports_changed() {
    client_calls::transports_changed();
}

/// Forgets every socket and address list (a new session).
pub(crate) fn forget() {
    *sockets() = None;
    RETIRED.lock().unwrap_or_else(|e| e.into_inner()).clear();
    client_calls::forget_address_info();
}

/// Waits until the provider's thread is idle (if it was ever started).
pub(crate) fn wait_idle(timeout: Duration) {
    reactor::wait_idle_if_started(timeout);
}

/// Host error numbers `std` gives no `ErrorKind` of its own: (EMFILE, ENFILE, ENOBUFS,
/// EADDRNOTAVAIL) of the host (Windows: the `WSAE*` codes; ENFILE has none there).
#[cfg(any(target_os = "linux", target_os = "android"))]
const HOST_ERRORS: (i32, i32, i32, i32) = (24, 23, 105, 99);
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
const HOST_ERRORS: (i32, i32, i32, i32) = (24, 23, 55, 49);
#[cfg(windows)]
const HOST_ERRORS: (i32, i32, i32, i32) = (10024, -1, 10055, 10049);
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    windows
)))]
const HOST_ERRORS: (i32, i32, i32, i32) = (-1, -1, -1, -1);

/// The NTSTATUS Windows gives where the host failed with `error`.
///
/// Out of descriptors (EMFILE, ENFILE), of buffers (ENOBUFS) or of memory: a WSK socket is
/// no handle on Windows, and what runs out there is non-paged pool, which the stack reports
/// as `STATUS_INSUFFICIENT_RESOURCES` — the status a driver must be ready for (and retry
/// later) when it accepts or creates sockets under load.
pub(crate) fn status_of_io(error: &std::io::Error) -> NTSTATUS {
    use std::io::ErrorKind::*;
    let (emfile, enfile, enobufs, _) = HOST_ERRORS;
    if let Some(code) = error.raw_os_error() {
        if code == emfile || code == enfile || code == enobufs {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
    }
    match error.kind() {
        ConnectionRefused => STATUS_CONNECTION_REFUSED,
        ConnectionReset => STATUS_CONNECTION_RESET,
        ConnectionAborted => STATUS_CONNECTION_ABORTED,
        BrokenPipe => STATUS_CONNECTION_RESET,
        NotConnected => STATUS_CONNECTION_INVALID,
        AddrInUse => STATUS_ADDRESS_ALREADY_EXISTS,
        AddrNotAvailable => STATUS_INVALID_ADDRESS,
        TimedOut => STATUS_IO_TIMEOUT,
        PermissionDenied => STATUS_ACCESS_DENIED,
        InvalidInput => STATUS_INVALID_PARAMETER,
        HostUnreachable => STATUS_HOST_UNREACHABLE,
        NetworkUnreachable => STATUS_NETWORK_UNREACHABLE,
        OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
        _ => STATUS_UNSUCCESSFUL,
    }
}

/// The NTSTATUS Windows gives where a connect failed with `error`: no local port left for
/// its implicit bind (EADDRNOTAVAIL) is `STATUS_TOO_MANY_ADDRESSES`, what Windows' transport
/// reports at ephemeral port exhaustion; anything else as [`status_of_io`].
pub(crate) fn status_of_connect(error: &std::io::Error) -> NTSTATUS {
    if error.raw_os_error() == Some(HOST_ERRORS.3) {
        return STATUS_TOO_MANY_ADDRESSES;
    }
    status_of_io(error)
}

/// The NTSTATUS Windows gives where a bind to `port` failed with `error`: a bind to port 0
/// that finds no port free (EADDRINUSE) is `STATUS_TOO_MANY_ADDRESSES` (ephemeral port
/// exhaustion); anything else as [`status_of_io`].
pub(crate) fn status_of_bind(error: &std::io::Error, port: u16) -> NTSTATUS {
    if port == 0 && error.kind() == std::io::ErrorKind::AddrInUse {
        return STATUS_TOO_MANY_ADDRESSES;
    }
    status_of_io(error)
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn exhausted_resources_are_insufficient_resources() {
        let (emfile, enfile, enobufs, _) = HOST_ERRORS;
        for code in [emfile, enfile, enobufs].into_iter().filter(|c| *c > 0) {
            assert_eq!(
                status_of_io(&Error::from_raw_os_error(code)),
                STATUS_INSUFFICIENT_RESOURCES,
                "error {code}"
            );
        }
        assert_eq!(
            status_of_io(&Error::from(ErrorKind::OutOfMemory)),
            STATUS_INSUFFICIENT_RESOURCES
        );
    }

    #[test]
    fn exhausted_ports_are_too_many_addresses() {
        let address_not_available = Error::from_raw_os_error(HOST_ERRORS.3);
        assert_eq!(
            status_of_connect(&address_not_available),
            STATUS_TOO_MANY_ADDRESSES
        );
        assert_eq!(
            status_of_bind(&Error::from(ErrorKind::AddrInUse), 0),
            STATUS_TOO_MANY_ADDRESSES
        );
        // A fixed port in use is just that; a bind to an address that is not local too.
        assert_eq!(
            status_of_bind(&Error::from(ErrorKind::AddrInUse), 7007),
            STATUS_ADDRESS_ALREADY_EXISTS
        );
        assert_eq!(
            status_of_bind(&address_not_available, 0),
            STATUS_INVALID_ADDRESS
        );
        assert_eq!(
            status_of_io(&Error::from(ErrorKind::ConnectionRefused)),
            STATUS_CONNECTION_REFUSED
        );
    }
}
