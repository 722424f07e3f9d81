//! The provider's client-level functions (`WSK_PROVIDER_DISPATCH`): socket creation, client
//! control, name resolution.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wsk_sys::*;

use super::address::{domain, write_sockaddr};
use super::dispatch::begin_connect;
use super::socket::{Category, Delivery, HostSocket, Io, destination, finish};
use super::{HostClient, client_for_call};
use crate::faults::Scripted;
use crate::irp;
use crate::pool;
use crate::verifier::{Rule, bug_check, require_irql};

/// Pool tag of the provider's address lists (`WskA`).
const ADDRESS_INFO_TAG: ULONG = u32::from_le_bytes(*b"WskA");

/// Address lists handed out by `WskGetAddressInfo` and not yet freed.
static ADDRESS_LISTS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

pub(crate) fn outstanding_address_info() -> usize {
    ADDRESS_LISTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, HashSet::len)
}

pub(crate) fn forget_address_info() {
    *ADDRESS_LISTS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *CACHED_SDS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *TRANSPORT_CHANGES.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *RESOLUTIONS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Creates a host socket of a category and family, non-blocking.
fn host_socket(category: Category, family: ADDRESS_FAMILY) -> Result<socket2::Socket, NTSTATUS> {
    let domain = domain(family).ok_or(STATUS_INVALID_PARAMETER)?;
    let (kind, protocol) = match category {
        Category::Datagram => (socket2::Type::DGRAM, socket2::Protocol::UDP),
        _ => (socket2::Type::STREAM, socket2::Protocol::TCP),
    };
    let socket =
        socket2::Socket::new(domain, kind, Some(protocol)).map_err(|e| super::status_of_io(&e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| super::status_of_io(&e))?;
    Ok(socket)
}

fn category_of(flags: ULONG) -> Option<Category> {
    match flags {
        WSK_FLAG_BASIC_SOCKET => Some(Category::Basic),
        WSK_FLAG_LISTEN_SOCKET => Some(Category::Listen),
        WSK_FLAG_CONNECTION_SOCKET => Some(Category::Connection),
        WSK_FLAG_DATAGRAM_SOCKET => Some(Category::Datagram),
        WSK_FLAG_STREAM_SOCKET => Some(Category::Stream),
        _ => None,
    }
}

/// What the fault plan scripts for `routine`: the status to return, the IRP completed with it
/// (a failure) or left alone (abandoned), or `None` to do the work.
fn scripted(routine: &str, irp: PIRP) -> Option<NTSTATUS> {
    match crate::faults::scripted(routine)? {
        Scripted::Fail(status) if irp::begin_request(irp, routine) => {
            Some(finish(irp, status, 0, Delivery::Inline))
        }
        Scripted::Fail(status) | Scripted::Abandon(status) => Some(status),
    }
}

/// Starts a client-level request: IRQL, client and IRP checks.
fn start(
    routine: &str,
    client: PWSK_CLIENT,
    irp: PIRP,
    max_irql: KIRQL,
) -> Result<&'static HostClient, NTSTATUS> {
    if !require_irql(routine, max_irql) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if let Some(status) = scripted(routine, irp) {
        return Err(status);
    }
    let Some(host) = client_for_call(client, routine) else {
        return Err(STATUS_INVALID_PARAMETER);
    };
    if !irp::begin_request(irp, routine) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(host)
}

pub(crate) unsafe extern "system" fn socket(
    Client: PWSK_CLIENT,
    AddressFamily: ADDRESS_FAMILY,
    SocketType: USHORT,
    Protocol: ULONG,
    Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const core::ffi::c_void,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    _SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: PIRP,
) -> NTSTATUS {
    if let Some(category) = category_of(Flags) {
        let kind = match category {
            Category::Basic => "WskSocket(basic)",
            Category::Listen => "WskSocket(listen)",
            Category::Connection => "WskSocket(connection)",
            Category::Datagram => "WskSocket(datagram)",
            Category::Stream => "WskSocket(stream)",
        };
        if let Some(status) = scripted(kind, Irp) {
            return status;
        }
    }
    let client = match start("WskSocket", Client, Irp, DISPATCH_LEVEL) {
        Ok(client) => client,
        Err(status) => return status,
    };
    let Some(category) = category_of(Flags) else {
        return finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline);
    };
    let expected = if category == Category::Datagram {
        (SOCK_DGRAM, IPPROTO_UDP)
    } else {
        (SOCK_STREAM, IPPROTO_TCP)
    };
    if (SocketType, Protocol) != expected {
        return finish(Irp, STATUS_NOT_SUPPORTED, 0, Delivery::Inline);
    }
    let status_or_socket = host_socket(category, AddressFamily).map(|io| {
        HostSocket::new(
            category,
            AddressFamily,
            client,
            Io::Unbound(io),
            SocketContext,
            Dispatch,
        )
    });
    match status_or_socket {
        Ok(socket) => {
            let information = socket.as_wsk() as usize;
            finish(Irp, STATUS_SUCCESS, information, Delivery::Inline)
        }
        Err(status) => finish(Irp, status, 0, Delivery::Inline),
    }
}

pub(crate) unsafe extern "system" fn socket_connect(
    Client: PWSK_CLIENT,
    SocketType: USHORT,
    Protocol: ULONG,
    LocalAddress: PSOCKADDR,
    RemoteAddress: PSOCKADDR,
    _Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    _SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: PIRP,
) -> NTSTATUS {
    let client = match start("WskSocketConnect", Client, Irp, DISPATCH_LEVEL) {
        Ok(client) => client,
        Err(status) => return status,
    };
    if (SocketType, Protocol) != (SOCK_STREAM, IPPROTO_TCP) {
        return finish(Irp, STATUS_NOT_SUPPORTED, 0, Delivery::Inline);
    }
    // SAFETY: the client's addresses.
    let (local, remote) = unsafe { (socket_addr_at(LocalAddress), destination(RemoteAddress)) };
    let (local, remote) = match (local, remote) {
        (Some(local), Ok(remote)) if domain_matches(&local, &remote) => (local, remote),
        (Some(_), Ok(_)) => {
            return finish(Irp, STATUS_INVALID_ADDRESS_COMPONENT, 0, Delivery::Inline);
        }
        (None, _) => return finish(Irp, STATUS_INVALID_ADDRESS, 0, Delivery::Inline),
        (_, Err(status)) => return finish(Irp, status, 0, Delivery::Inline),
    };
    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    let io = match host_socket(Category::Connection, family).and_then(|s| {
        s.bind(&local.into())
            .map(|()| s)
            .map_err(|e| super::status_of_bind(&e, local.port()))
    }) {
        Ok(io) => io,
        Err(status) => return finish(Irp, status, 0, Delivery::Inline),
    };
    let socket = HostSocket::new(
        Category::Connection,
        family,
        client,
        Io::Bound(io),
        SocketContext,
        Dispatch.cast(),
    );
    // The socket is returned in `Information` on success; a failed connect discards it (the
    // client never sees it).
    begin_connect(&socket, remote, Irp, true)
}

fn domain_matches(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

pub(crate) unsafe extern "system" fn control_client(
    Client: PWSK_CLIENT,
    ControlCode: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    OutputSize: SIZE_T,
    OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: PIRP,
) -> NTSTATUS {
    if !require_irql("WskControlClient", PASSIVE_LEVEL) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let Some(client) = client_for_call(Client, "WskControlClient") else {
        return STATUS_INVALID_PARAMETER;
    };
    let (status, returned) = match ControlCode {
        WSK_SET_STATIC_EVENT_CALLBACKS => {
            if !Irp.is_null() {
                bug_check(
                    Rule::InvalidParameter,
                    "WSK_SET_STATIC_EVENT_CALLBACKS takes no IRP",
                );
                return STATUS_INVALID_PARAMETER;
            }
            if InputBuffer.is_null()
                || (InputSize as usize) < std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>()
            {
                return STATUS_INVALID_PARAMETER;
            }
            // SAFETY: the client's input holds a WSK_EVENT_CALLBACK_CONTROL.
            let control = unsafe {
                InputBuffer
                    .cast::<WSK_EVENT_CALLBACK_CONTROL>()
                    .read_unaligned()
            };
            (client.set_static_events(control.EventMask), 0)
        }
        WSK_TRANSPORT_LIST_QUERY => {
            let transports = [
                (SOCK_STREAM, IPPROTO_TCP, AF_INET),
                (SOCK_STREAM, IPPROTO_TCP, AF_INET6),
                (SOCK_DGRAM, IPPROTO_UDP, AF_INET),
                (SOCK_DGRAM, IPPROTO_UDP, AF_INET6),
            ];
            let needed = transports.len() * std::mem::size_of::<WSK_TRANSPORT>();
            if OutputBuffer.is_null() || (OutputSize as usize) < needed {
                (STATUS_BUFFER_TOO_SMALL, needed)
            } else {
                let out = OutputBuffer.cast::<WSK_TRANSPORT>();
                for (i, (kind, protocol, family)) in transports.into_iter().enumerate() {
                    // SAFETY: the client's output holds `needed` bytes.
                    unsafe {
                        out.add(i).write(WSK_TRANSPORT {
                            Version: MAKE_WSK_VERSION(1, 0),
                            SocketType: kind,
                            Protocol: protocol,
                            AddressFamily: family,
                            ProviderId: GUID::default(),
                        })
                    };
                }
                (STATUS_SUCCESS, needed)
            }
        }
        WSK_TRANSPORT_LIST_CHANGE => {
            if Irp.is_null() {
                bug_check(
                    Rule::InvalidParameter,
                    "WSK_TRANSPORT_LIST_CHANGE needs an IRP",
                );
                return STATUS_INVALID_PARAMETER;
            }
            if !irp::begin_request(Irp, "WskControlClient") {
                return STATUS_INVALID_PARAMETER;
            }
            return pend_transport_change(Irp);
        }
        WSK_CACHE_SD => {
            let pointer = std::mem::size_of::<PVOID>();
            if InputBuffer.is_null()
                || (InputSize as usize) < pointer
                || OutputBuffer.is_null()
                || (OutputSize as usize) < pointer
            {
                (STATUS_INVALID_PARAMETER, 0)
            } else {
                // SAFETY: the client's input holds a security descriptor pointer.
                let descriptor = unsafe { InputBuffer.cast::<PVOID>().read_unaligned() };
                if descriptor.is_null() {
                    (STATUS_INVALID_PARAMETER, 0)
                } else {
                    // The cached copy: a pool block of the provider's, released by
                    // WSK_RELEASE_SD (a leak shows in the pool accounting).
                    let cached = pool::allocate_internal(CACHED_SD_SIZE, CACHED_SD_TAG);
                    CACHED_SDS
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert_with(HashSet::new)
                        .insert(cached as usize);
                    // SAFETY: the client's output holds a pointer.
                    unsafe { OutputBuffer.cast::<PVOID>().write_unaligned(cached.cast()) };
                    (STATUS_SUCCESS, pointer)
                }
            }
        }
        WSK_RELEASE_SD => {
            if InputBuffer.is_null() || (InputSize as usize) < std::mem::size_of::<PVOID>() {
                (STATUS_INVALID_PARAMETER, 0)
            } else {
                // SAFETY: the client's input holds the cached descriptor's pointer.
                let cached = unsafe { InputBuffer.cast::<PVOID>().read_unaligned() } as usize;
                let known = CACHED_SDS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                    .is_some_and(|set| set.remove(&cached));
                if known {
                    pool::free(cached as *mut u8, CACHED_SD_TAG);
                    (STATUS_SUCCESS, 0)
                } else {
                    bug_check(
                        Rule::InvalidParameter,
                        format!(
                            "WSK_RELEASE_SD({cached:#x}): not a cached descriptor, or released twice"
                        ),
                    );
                    (STATUS_INVALID_PARAMETER, 0)
                }
            }
        }
        // The host has no TDI transports.
        WSK_TDI_DEVICENAME_MAPPING | WSK_TDI_BEHAVIOR => (STATUS_NOT_SUPPORTED, 0),
        _ => (STATUS_NOT_SUPPORTED, 0),
    };
    if !OutputSizeReturned.is_null() {
        // SAFETY: the client's output count.
        unsafe { *OutputSizeReturned = returned as SIZE_T };
    }
    if !Irp.is_null() && irp::begin_request(Irp, "WskControlClient") {
        return finish(Irp, status, returned, Delivery::Inline);
    }
    status
}

/// Pool tag and size of the provider's cached security descriptors (`WskS`).
const CACHED_SD_TAG: ULONG = u32::from_le_bytes(*b"WskS");
const CACHED_SD_SIZE: usize = 20;

/// Security descriptors cached by `WSK_CACHE_SD` and not yet released.
static CACHED_SDS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// `WSK_TRANSPORT_LIST_CHANGE` requests pending until the transports change
/// ([`transports_changed`]) or they are cancelled, by IRP.
static TRANSPORT_CHANGES: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn take_transport_change(irp: usize) -> bool {
    TRANSPORT_CHANGES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .is_some_and(|pending| pending.remove(&irp))
}

fn pend_transport_change(irp: PIRP) -> NTSTATUS {
    TRANSPORT_CHANGES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(irp as usize);
    // SAFETY: the IRP is owned by this request; its cancel routine is set once the request
    // is recorded as pending.
    unsafe {
        IoMarkIrpPending(irp);
        IoSetCancelRoutine(irp, Some(cancel_transport_change));
        if (*irp).Cancel != 0
            && IoSetCancelRoutine(irp, None).is_some()
            && take_transport_change(irp as usize)
        {
            crate::session::count(|c| c.cancelled += 1);
            finish(irp, STATUS_CANCELLED, 0, Delivery::Pending);
        }
    }
    STATUS_PENDING
}

unsafe extern "system" fn cancel_transport_change(_device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held.
    unsafe { IoReleaseCancelSpinLock((*irp).CancelIrql) };
    if take_transport_change(irp as usize) {
        crate::session::count(|c| c.cancelled += 1);
        finish(irp, STATUS_CANCELLED, 0, Delivery::Pending);
    }
}

/// The transports changed: completes every pending `WSK_TRANSPORT_LIST_CHANGE`.
pub(crate) fn transports_changed() {
    let pending: Vec<usize> = TRANSPORT_CHANGES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .map(|set| set.drain().collect())
        .unwrap_or_default();
    for irp in pending {
        // SAFETY: taken from the pending requests: this call completes it; a cancel routine
        // that runs now finds nothing to do.
        unsafe { IoSetCancelRoutine(irp as PIRP, None) };
        let _run = super::reactor::DispatchRun::begin("a transport list change");
        finish(irp as PIRP, STATUS_SUCCESS, 0, Delivery::Pending);
    }
}

/// # Safety
/// `text` must be null or a valid counted string.
unsafe fn string_of(text: PUNICODE_STRING) -> Option<String> {
    // SAFETY: forwarded.
    let text = unsafe { text.as_ref()? };
    // SAFETY: a counted string's buffer holds `Length` bytes.
    let units = unsafe { std::slice::from_raw_parts(text.Buffer, text.Length as usize / 2) };
    Some(String::from_utf16_lossy(units))
}

/// Whether the counted string `text` (null: none) has a NUL right after its `Length` bytes,
/// inside its `MaximumLength`.
///
/// # Safety
/// `text` is null or a valid counted string whose buffer holds `MaximumLength` bytes.
unsafe fn terminated(text: PUNICODE_STRING) -> bool {
    // SAFETY: forwarded.
    let Some(text) = (unsafe { text.as_ref() }) else {
        return true;
    };
    if text.Buffer.is_null() {
        return true;
    }
    let length = usize::from(text.Length);
    if usize::from(text.MaximumLength) < length + 2 {
        return false;
    }
    // SAFETY: the unit after `Length` bytes is inside `MaximumLength` (checked).
    unsafe { text.Buffer.add(length / 2).read_unaligned() == 0 }
}

pub(crate) unsafe extern "system" fn get_address_info(
    Client: PWSK_CLIENT,
    NodeName: PUNICODE_STRING,
    ServiceName: PUNICODE_STRING,
    NameSpace: ULONG,
    _Provider: *mut GUID,
    Hints: PADDRINFOEXW,
    Result: *mut PADDRINFOEXW,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    if let Err(status) = start("WskGetAddressInfo", Client, Irp, PASSIVE_LEVEL) {
        return status;
    }
    if NameSpace != NS_ALL && NameSpace != NS_DNS {
        return finish(Irp, STATUS_NOT_SUPPORTED, 0, Delivery::Inline);
    }
    // Counted: Windows reads the strings by their `Length`, but a client should leave them
    // terminated as `RtlInitUnicodeString` does, for providers that do not.
    // SAFETY: the client's strings, valid for the call.
    let unterminated = unsafe { [NodeName, ServiceName].map(|name| !terminated(name)) };
    let unterminated = unterminated.iter().filter(|&&u| u).count() as u64;
    if unterminated > 0 {
        crate::session::count(|c| c.address_info_names_unterminated += unterminated);
    }
    // SAFETY: the client's strings and hints.
    let (node, service, hints) = unsafe {
        (
            string_of(NodeName),
            string_of(ServiceName),
            Hints.as_ref().copied(),
        )
    };
    let Some(node) = node else {
        return finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline);
    };
    let port = match service.as_deref().map(str::parse::<u16>) {
        None => 0,
        Some(Ok(port)) => port,
        Some(Err(_)) => return finish(Irp, STATUS_NOT_SUPPORTED, 0, Delivery::Inline),
    };
    let family = hints.map_or(0, |h| h.ai_family);
    let numeric_only = hints.is_some_and(|h| h.ai_flags & AI_NUMERICHOST != 0);
    let result = Result as usize;
    let irp = Irp as usize;
    // The request is cancellable while it waits: the cancel routine completes it with
    // STATUS_CANCELLED at once, whatever the resolver is doing.
    let token = NEXT_RESOLUTION.fetch_add(1, Ordering::Relaxed);
    RESOLUTIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(irp, token);
    // SAFETY: the IRP is owned by this request; its cancel routine is set once the request is
    // recorded as pending, and taken back (below, or by the resolver thread) before completion.
    unsafe {
        IoMarkIrpPending(Irp);
        IoSetCancelRoutine(Irp, Some(cancel_resolution));
        if (*Irp).Cancel != 0 && IoSetCancelRoutine(Irp, None).is_some() {
            // Cancelled before the routine was set: completed now, nothing resolved.
            if take_resolution(irp, Some(token)) {
                crate::session::count(|c| c.cancelled += 1);
                finish(Irp, STATUS_CANCELLED, 0, Delivery::Pending);
            }
            return STATUS_PENDING;
        }
    }
    // Resolution blocks: it runs on a thread of its own, and the IRP completes from there —
    // unless it was cancelled meanwhile: then the thread's result is dropped.
    let spawned = std::thread::Builder::new()
        .name("wsk-host-resolver".into())
        .spawn(move || {
            let addresses: Result<Vec<SocketAddr>, NTSTATUS> = if numeric_only {
                node.parse::<std::net::IpAddr>()
                    .map(|ip| vec![SocketAddr::new(ip, port)])
                    .map_err(|_| STATUS_INVALID_PARAMETER)
            } else {
                (node.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect)
                    .map_err(|_| STATUS_NOT_FOUND)
            };
            let addresses = addresses.map(|all| {
                all.into_iter()
                    .filter(|a| family == 0 || (family == i32::from(AF_INET)) == a.is_ipv4())
                    .collect::<Vec<_>>()
            });
            if !take_resolution(irp, Some(token)) {
                // Cancelled: the IRP completed already and is the client's again.
                return;
            }
            // SAFETY: the request is this thread's to complete (taken from the pending ones);
            // a cancel routine that runs now finds nothing to do.
            unsafe { IoSetCancelRoutine(irp as PIRP, None) };
            let (status, list) = match addresses {
                Ok(list) if list.is_empty() => (STATUS_NOT_FOUND, std::ptr::null_mut()),
                Ok(list) => (STATUS_SUCCESS, build_list(&list)),
                Err(status) => (status, std::ptr::null_mut()),
            };
            // SAFETY: the client's result slot, valid until the IRP completes.
            unsafe { *(result as *mut PADDRINFOEXW) = list };
            let _run = super::reactor::DispatchRun::begin("a name resolution's completion");
            finish(irp as PIRP, status, 0, Delivery::Pending);
        });
    if let Err(error) = spawned {
        eprintln!("wsk-host: starting a resolver thread failed: {error}");
        if take_resolution(irp, Some(token)) {
            // SAFETY: the request is this function's to complete again.
            unsafe { IoSetCancelRoutine(Irp, None) };
            finish(Irp, STATUS_INSUFFICIENT_RESOURCES, 0, Delivery::Pending);
        }
    }
    STATUS_PENDING
}

/// `WskGetAddressInfo` requests waiting for their resolution, by IRP: whoever takes one out
/// (the resolver thread when it finishes, the cancel routine) completes it.
///
/// Each request is recorded with a token of its own: a client reuses its IRPs, so the IRP
/// alone does not tell a late resolver thread of a cancelled request from the request the
/// same IRP carries now.
static RESOLUTIONS: Mutex<Option<HashMap<usize, u64>>> = Mutex::new(None);

/// The token of the next `WskGetAddressInfo` request.
static NEXT_RESOLUTION: AtomicU64 = AtomicU64::new(1);

/// Takes a pending resolution's IRP out of the pending ones — only the request `token` names
/// when given (a resolver thread), whatever request the IRP carries otherwise (its cancel
/// routine); `false` when another party took it first.
fn take_resolution(irp: usize, token: Option<u64>) -> bool {
    let mut pending = RESOLUTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pending) = pending.as_mut() else {
        return false;
    };
    match (pending.get(&irp), token) {
        (Some(&current), Some(token)) if current != token => false,
        (Some(_), _) => pending.remove(&irp).is_some(),
        (None, _) => false,
    }
}

/// The cancel routine of a pending `WskGetAddressInfo`: completes it with `STATUS_CANCELLED`
/// (the resolver thread's result, when it comes, is dropped).
unsafe extern "system" fn cancel_resolution(_device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held.
    unsafe { IoReleaseCancelSpinLock((*irp).CancelIrql) };
    // The IRP carries one pending request at a time: the one being cancelled.
    if take_resolution(irp as usize, None) {
        crate::session::count(|c| c.cancelled += 1);
        finish(irp, STATUS_CANCELLED, 0, Delivery::Pending);
    }
}

/// One node of a result list with room for its address.
#[repr(C)]
struct AddressNode {
    info: ADDRINFOEXW,
    address: SOCKADDR_INET,
}

fn build_list(addresses: &[SocketAddr]) -> PADDRINFOEXW {
    let mut head: PADDRINFOEXW = std::ptr::null_mut();
    for address in addresses.iter().rev() {
        let node = pool::allocate_internal(std::mem::size_of::<AddressNode>(), ADDRESS_INFO_TAG)
            .cast::<AddressNode>();
        // SAFETY: a fresh, zeroed pool block the size of a node.
        unsafe {
            write_sockaddr((&raw mut (*node).address).cast(), address);
            (*node).info = ADDRINFOEXW {
                ai_family: i32::from(if address.is_ipv4() { AF_INET } else { AF_INET6 }),
                ai_socktype: i32::from(SOCK_STREAM),
                ai_protocol: IPPROTO_TCP as i32,
                ai_addrlen: if address.is_ipv4() { 16 } else { 28 },
                ai_addr: (&raw mut (*node).address).cast(),
                ai_next: head,
                ..Default::default()
            };
        }
        head = node.cast();
    }
    if !head.is_null() {
        ADDRESS_LISTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(head as usize);
    }
    head
}

pub(crate) unsafe extern "system" fn free_address_info(
    Client: PWSK_CLIENT,
    AddrInfo: PADDRINFOEXW,
) {
    require_irql("WskFreeAddressInfo", PASSIVE_LEVEL);
    if client_for_call(Client, "WskFreeAddressInfo").is_none() {
        return;
    }
    let known = ADDRESS_LISTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .is_some_and(|l| l.remove(&(AddrInfo as usize)));
    if !known {
        bug_check(
            Rule::InvalidParameter,
            format!(
                "WskFreeAddressInfo({AddrInfo:p}): not a list from WskGetAddressInfo, or freed twice"
            ),
        );
        return;
    }
    let mut node = AddrInfo;
    while !node.is_null() {
        // SAFETY: a node of a list this provider built.
        let next = unsafe { (*node).ai_next };
        pool::free(node.cast(), ADDRESS_INFO_TAG);
        node = next;
    }
}

pub(crate) unsafe extern "system" fn get_name_info(
    Client: PWSK_CLIENT,
    SockAddr: PSOCKADDR,
    _SockAddrLength: ULONG,
    NodeName: PUNICODE_STRING,
    ServiceName: PUNICODE_STRING,
    Flags: ULONG,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    if let Err(status) = start("WskGetNameInfo", Client, Irp, PASSIVE_LEVEL) {
        return status;
    }
    // SAFETY: the client's address.
    let Some(address) = (unsafe { socket_addr_at(SockAddr) }) else {
        return finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline);
    };
    // Names come from the loopback convention only: no query leaves the machine.
    let node = if Flags & NI_NUMERICHOST == 0 && address.ip().is_loopback() {
        "localhost".to_string()
    } else if Flags & NI_NAMEREQD != 0 {
        return finish(Irp, STATUS_NOT_FOUND, 0, Delivery::Inline);
    } else {
        address.ip().to_string()
    };
    let service = address.port().to_string();
    // SAFETY: the client's output strings.
    let status = unsafe {
        match (fill(NodeName, &node), fill(ServiceName, &service)) {
            (true, true) => STATUS_SUCCESS,
            _ => STATUS_BUFFER_OVERFLOW,
        }
    };
    finish(Irp, status, 0, Delivery::Inline)
}

/// Writes `text` into a client's counted string; `false` when it does not fit.
///
/// # Safety
/// `out` must be null or a writable counted string with `MaximumLength` bytes of buffer.
unsafe fn fill(out: PUNICODE_STRING, text: &str) -> bool {
    // SAFETY: forwarded.
    let Some(out) = (unsafe { out.as_mut() }) else {
        return true;
    };
    let units: Vec<u16> = text.encode_utf16().collect();
    if units.len() * 2 > out.MaximumLength as usize {
        return false;
    }
    // SAFETY: the buffer holds `MaximumLength` bytes.
    unsafe { std::ptr::copy_nonoverlapping(units.as_ptr(), out.Buffer, units.len()) };
    out.Length = (units.len() * 2) as USHORT;
    true
}
