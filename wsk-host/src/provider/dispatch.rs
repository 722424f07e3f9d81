//! The provider's socket dispatch tables and the functions behind them.

use std::sync::Arc;

use wsk_sys::*;

use super::address::{domain, write_sockaddr};
use super::indication;
use super::socket::{Category, Delivery, HostSocket, Io, Op, destination, finish};
use super::{socket_for_call, status_of_io};
use crate::faults::Scripted;
use crate::irp;
use crate::verifier::{Rule, bug_check, require_irql};

static LISTEN: WSK_PROVIDER_LISTEN_DISPATCH = WSK_PROVIDER_LISTEN_DISPATCH {
    Basic: BASIC,
    WskBind: Some(bind),
    WskAccept: Some(accept),
    WskInspectComplete: Some(inspect_complete),
    WskGetLocalAddress: Some(local_address),
};

static CONNECTION: WSK_PROVIDER_CONNECTION_DISPATCH = WSK_PROVIDER_CONNECTION_DISPATCH {
    Basic: BASIC,
    WskBind: Some(bind),
    WskConnect: Some(connect),
    WskGetLocalAddress: Some(local_address),
    WskGetRemoteAddress: Some(remote_address),
    WskSend: Some(send),
    WskReceive: Some(receive),
    WskDisconnect: Some(disconnect),
    WskRelease: Some(release_data),
    WskConnectEx: Some(connect_ex),
    WskSendEx: Some(send_ex),
    WskReceiveEx: Some(receive_ex),
};

static DATAGRAM: WSK_PROVIDER_DATAGRAM_DISPATCH = WSK_PROVIDER_DATAGRAM_DISPATCH {
    Basic: BASIC,
    WskBind: Some(bind),
    WskSendTo: Some(send_to),
    WskReceiveFrom: Some(receive_from),
    WskRelease: Some(release_datagrams),
    WskGetLocalAddress: Some(local_address),
    WskSendMessages: Some(send_messages),
};

static STREAM: WSK_PROVIDER_STREAM_DISPATCH = WSK_PROVIDER_STREAM_DISPATCH {
    Basic: BASIC,
    WskBind: Some(bind),
    WskAccept: Some(accept),
    WskConnect: Some(connect),
    WskListen: Some(listen),
    WskSend: Some(send),
    WskReceive: Some(receive),
    WskDisconnect: Some(disconnect),
    WskRelease: Some(release_data),
    WskGetLocalAddress: Some(local_address),
    WskGetRemoteAddress: Some(remote_address),
    WskConnectEx: Some(connect_ex),
    WskSendEx: Some(send_ex),
    WskReceiveEx: Some(receive_ex),
};

/// The table of basic sockets: control and close only.
static BASIC_TABLE: WSK_PROVIDER_BASIC_DISPATCH = BASIC;

const BASIC: WSK_PROVIDER_BASIC_DISPATCH = WSK_PROVIDER_BASIC_DISPATCH {
    WskControlSocket: Some(control_socket),
    WskCloseSocket: Some(close_socket),
};

/// The dispatch table of a category.
pub(crate) fn table_for(category: Category) -> *const core::ffi::c_void {
    match category {
        Category::Basic => (&raw const BASIC_TABLE).cast(),
        Category::Listen => (&raw const LISTEN).cast(),
        Category::Connection => (&raw const CONNECTION).cast(),
        Category::Datagram => (&raw const DATAGRAM).cast(),
        Category::Stream => (&raw const STREAM).cast(),
    }
}

/// Starts a request: checks the IRQL, the socket and the IRP. On failure the IRP (if any was
/// accepted) is completed and the status to return is given.
fn start(
    routine: &str,
    socket: PWSK_SOCKET,
    irp: PIRP,
    categories: &[Category],
) -> Result<Arc<HostSocket>, NTSTATUS> {
    if !require_irql(routine, DISPATCH_LEVEL) {
        return Err(fail(irp, routine, STATUS_INVALID_DEVICE_STATE));
    }
    match crate::faults::scripted(routine) {
        Some(Scripted::Fail(status)) => return Err(fail(irp, routine, status)),
        Some(Scripted::Abandon(status)) => return Err(status),
        None => {}
    }
    let Some(host) = socket_for_call(socket, routine) else {
        return Err(fail(irp, routine, STATUS_FILE_FORCED_CLOSED));
    };
    if !categories.contains(&host.category) {
        bug_check(
            Rule::InvalidParameter,
            format!("{routine} on a {:?} socket", host.category),
        );
        return Err(fail(irp, routine, STATUS_NOT_SUPPORTED));
    }
    if !irp::begin_request(irp, routine) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(host)
}

/// Completes a request refused before it started (when its IRP can be used).
fn fail(irp: PIRP, routine: &str, status: NTSTATUS) -> NTSTATUS {
    if !irp.is_null() && irp::begin_request(irp, routine) {
        finish(irp, status, 0, Delivery::Inline)
    } else {
        status
    }
}

const CONNECTED: &[Category] = &[Category::Connection, Category::Stream];

unsafe extern "system" fn close_socket(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS {
    match start(
        "WskCloseSocket",
        Socket,
        Irp,
        &[
            Category::Basic,
            Category::Listen,
            Category::Connection,
            Category::Datagram,
            Category::Stream,
        ],
    ) {
        Ok(host) => host.close(Irp),
        Err(status) => status,
    }
}

unsafe extern "system" fn bind(
    Socket: PWSK_SOCKET,
    LocalAddress: PSOCKADDR,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let all = [
        Category::Listen,
        Category::Connection,
        Category::Datagram,
        Category::Stream,
    ];
    let host = match start("WskBind", Socket, Irp, &all) {
        Ok(host) => host,
        Err(status) => return status,
    };
    // SAFETY: the client's address.
    let status = match unsafe { socket_addr_at(LocalAddress) } {
        Some(address) if domain(host.family) == Some(socket2::Domain::for_address(address)) => {
            bind_to(&host, address)
        }
        Some(_) => STATUS_INVALID_ADDRESS_COMPONENT,
        None => STATUS_INVALID_ADDRESS,
    };
    finish(Irp, status, 0, Delivery::Inline)
}

fn bind_to(host: &Arc<HostSocket>, address: std::net::SocketAddr) -> NTSTATUS {
    let mut state = host.lock();
    let Io::Unbound(socket) = std::mem::replace(&mut state.io, Io::Gone) else {
        return STATUS_ADDRESS_ALREADY_ASSOCIATED;
    };
    if let Err(error) = socket.bind(&address.into()) {
        state.io = Io::Unbound(socket);
        return super::status_of_bind(&error, address.port());
    }
    state.io = match host.category {
        Category::Listen => match socket.listen(128) {
            Ok(()) => Io::Listener(mio::net::TcpListener::from_std(socket.into())),
            Err(error) => return status_of_io(&error),
        },
        Category::Datagram => Io::Datagram(mio::net::UdpSocket::from_std(socket.into())),
        Category::Basic | Category::Connection | Category::Stream => Io::Bound(socket),
    };
    host.watch(&mut state);
    STATUS_SUCCESS
}

unsafe extern "system" fn listen(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS {
    let host = match start("WskListen", Socket, Irp, &[Category::Stream]) {
        Ok(host) => host,
        Err(status) => return status,
    };
    let status = {
        let mut state = host.lock();
        match std::mem::replace(&mut state.io, Io::Gone) {
            Io::Bound(socket) => match socket.listen(128) {
                Ok(()) => {
                    state.io = Io::Listener(mio::net::TcpListener::from_std(socket.into()));
                    host.watch(&mut state);
                    STATUS_SUCCESS
                }
                Err(error) => {
                    state.io = Io::Bound(socket);
                    status_of_io(&error)
                }
            },
            other => {
                state.io = other;
                STATUS_INVALID_DEVICE_STATE
            }
        }
    };
    finish(Irp, status, 0, Delivery::Inline)
}

unsafe extern "system" fn accept(
    ListenSocket: PWSK_SOCKET,
    _Flags: ULONG,
    AcceptSocketContext: PVOID,
    AcceptSocketDispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    LocalAddress: PSOCKADDR,
    RemoteAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    match start(
        "WskAccept",
        ListenSocket,
        Irp,
        &[Category::Listen, Category::Stream],
    ) {
        Ok(host) => host.submit(
            Irp,
            Op::Accept {
                local: LocalAddress,
                remote: RemoteAddress,
                context: AcceptSocketContext,
                dispatch: AcceptSocketDispatch.cast(),
            },
        ),
        Err(status) => status,
    }
}

unsafe extern "system" fn inspect_complete(
    ListenSocket: PWSK_SOCKET,
    InspectID: PWSK_INSPECT_ID,
    Action: WSK_INSPECT_ACTION,
    Irp: PIRP,
) -> NTSTATUS {
    match start("WskInspectComplete", ListenSocket, Irp, &[Category::Listen]) {
        Ok(host) => {
            let status = super::inspect::complete(&host, InspectID, Action);
            finish(Irp, status, 0, Delivery::Inline)
        }
        Err(status) => status,
    }
}

/// Starts a connect: binds to the wildcard address if needed, then connects the host socket
/// without blocking; the completion comes when the connection is established or fails.
pub(crate) fn begin_connect(
    host: &Arc<HostSocket>,
    remote: std::net::SocketAddr,
    irp: PIRP,
    information_is_socket: bool,
) -> NTSTATUS {
    if crate::faults::refuse_connections() {
        return host.fail_connect(irp, STATUS_CONNECTION_REFUSED, information_is_socket);
    }
    let status = {
        let mut state = host.lock();
        match std::mem::replace(&mut state.io, Io::Gone) {
            Io::Bound(socket) => match socket.connect(&remote.into()) {
                Ok(()) => {
                    state.io = Io::Connecting(mio::net::TcpStream::from_std(socket.into()));
                    host.watch(&mut state);
                    None
                }
                Err(error)
                    if error.raw_os_error() == Some(EINPROGRESS)
                        || error.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    state.io = Io::Connecting(mio::net::TcpStream::from_std(socket.into()));
                    host.watch(&mut state);
                    None
                }
                Err(error) => Some(super::status_of_connect(&error)),
            },
            Io::Unbound(socket) => {
                state.io = Io::Unbound(socket);
                Some(STATUS_INVALID_DEVICE_STATE)
            }
            other => {
                state.io = other;
                Some(STATUS_CONNECTION_ACTIVE)
            }
        }
    };
    match status {
        Some(status) => host.fail_connect(irp, status, information_is_socket),
        None => host.submit(
            irp,
            Op::Connect {
                information_is_socket,
            },
        ),
    }
}

/// The OS error of a non-blocking connect still in progress (Windows reports
/// `WSAEWOULDBLOCK`, which `std` maps to `WouldBlock`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const EINPROGRESS: i32 = 115;
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
const EINPROGRESS: i32 = 36;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
)))]
const EINPROGRESS: i32 = i32::MIN;

unsafe extern "system" fn connect(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskConnect", Socket, Irp, CONNECTED) {
        Ok(host) => host,
        Err(status) => return status,
    };
    // SAFETY: the client's address.
    match unsafe { destination(RemoteAddress) } {
        Ok(remote) => begin_connect(&host, remote, Irp, false),
        Err(status) => finish(Irp, status, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn connect_ex(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    // SAFETY: the client's buffer descriptor.
    let data = match unsafe { Buffer.as_ref() } {
        Some(buffer) if buffer.Length > 65_535 => {
            return fail(Irp, "WskConnectEx", STATUS_INVALID_BUFFER_SIZE);
        }
        // SAFETY: a buffer descriptor of the client's, read now (the data is copied).
        Some(buffer) if buffer.Length > 0 => unsafe { super::socket::gather(buffer) },
        _ => Vec::new(),
    };
    let host = match start("WskConnectEx", Socket, Irp, CONNECTED) {
        Ok(host) => host,
        Err(status) => return status,
    };
    // SAFETY: the client's address.
    match unsafe { destination(RemoteAddress) } {
        Ok(remote) => {
            // Sent as soon as the connection is established, before it completes.
            host.lock().connect_data = data;
            begin_connect(&host, remote, Irp, false)
        }
        Err(status) => finish(Irp, status, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn local_address(
    Socket: PWSK_SOCKET,
    LocalAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    let all = [
        Category::Listen,
        Category::Connection,
        Category::Datagram,
        Category::Stream,
    ];
    let host = match start("WskGetLocalAddress", Socket, Irp, &all) {
        Ok(host) => host,
        Err(status) => return status,
    };
    let address = {
        let state = host.lock();
        match &state.io {
            Io::Unbound(s) | Io::Bound(s) => s.local_addr().ok().and_then(|a| a.as_socket()),
            Io::Connecting(s) | Io::Stream(s) => s.local_addr().ok(),
            Io::Listener(l) => l.local_addr().ok(),
            Io::Datagram(d) => d.local_addr().ok(),
            Io::Gone => None,
        }
    };
    let status = match address {
        Some(address) => {
            // SAFETY: the client's storage for an address of the socket's family.
            unsafe { write_sockaddr(LocalAddress, &address) };
            STATUS_SUCCESS
        }
        None => STATUS_INVALID_DEVICE_STATE,
    };
    finish(Irp, status, 0, Delivery::Inline)
}

unsafe extern "system" fn remote_address(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskGetRemoteAddress", Socket, Irp, CONNECTED) {
        Ok(host) => host,
        Err(status) => return status,
    };
    let address = match &host.lock().io {
        Io::Stream(s) => s.peer_addr().ok(),
        _ => None,
    };
    let status = match address {
        Some(address) => {
            // SAFETY: the client's storage for an address of the socket's family.
            unsafe { write_sockaddr(RemoteAddress, &address) };
            STATUS_SUCCESS
        }
        None => STATUS_CONNECTION_INVALID,
    };
    finish(Irp, status, 0, Delivery::Inline)
}

/// The client's buffer descriptor, if it is one the provider can use: `None` for a null
/// one, or one whose offset and length exceed its MDL chain (a violation, reported).
///
/// # Safety
/// `buffer` must be null or a valid `WSK_BUF` whose MDLs are valid.
unsafe fn read_buf(function: &str, buffer: PWSK_BUF) -> Option<WSK_BUF> {
    // SAFETY: forwarded.
    let buf = unsafe { buffer.as_ref().copied() }?;
    // SAFETY: forwarded.
    unsafe { crate::mdl::check_chain(function, &buf) }.then_some(buf)
}

unsafe extern "system" fn send(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskSend", Socket, Irp, CONNECTED) {
        Ok(host) => host,
        Err(status) => return status,
    };
    // SAFETY: the client's buffer descriptor.
    match unsafe { read_buf("WskSend", Buffer) } {
        Some(buf) => host.submit(
            Irp,
            Op::Send {
                buf,
                done: 0,
                total: buf.Length as usize,
            },
        ),
        None => finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn send_ex(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    ControlInfoLength: ULONG,
    _ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    if ControlInfoLength != 0 {
        return fail(Irp, "WskSendEx", STATUS_NOT_SUPPORTED);
    }
    // SAFETY: forwarded.
    unsafe { send(Socket, Buffer, Flags, Irp) }
}

unsafe extern "system" fn receive(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskReceive", Socket, Irp, CONNECTED) {
        Ok(host) => host,
        Err(status) => return status,
    };
    if Flags & WSK_FLAG_WAITALL != 0 && Flags & WSK_FLAG_DRAIN != 0 {
        return finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline);
    }
    // SAFETY: the client's buffer descriptor.
    match unsafe { read_buf("WskReceive", Buffer) } {
        Some(buf) => host.submit(
            Irp,
            Op::Receive {
                buf,
                flags: Flags,
                filled: 0,
                total: buf.Length as usize,
            },
        ),
        None => finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn receive_ex(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    ControlInfoLength: PULONG,
    _ControlInfo: PCMSGHDR,
    _ControlFlags: PULONG,
    Irp: PIRP,
) -> NTSTATUS {
    if !ControlInfoLength.is_null() {
        // SAFETY: the client's length: no control information is received.
        unsafe { *ControlInfoLength = 0 };
    }
    // SAFETY: forwarded.
    unsafe { receive(Socket, Buffer, Flags, Irp) }
}

unsafe extern "system" fn disconnect(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskDisconnect", Socket, Irp, CONNECTED) {
        Ok(host) => host,
        Err(status) => return status,
    };
    if Flags & WSK_FLAG_ABORTIVE != 0 {
        let mut completions = Vec::new();
        {
            let mut state = host.lock();
            host.abort(&mut state, STATUS_CONNECTION_ABORTED, &mut completions);
        }
        crate::provider::socket::deliver_all(completions);
        return finish(Irp, STATUS_SUCCESS, 0, Delivery::Inline);
    }
    // SAFETY: the client's buffer descriptor, if any.
    let buf = unsafe { read_buf("WskDisconnect", Buffer) }.filter(|b| b.Length > 0);
    let total = buf.map_or(0, |b| b.Length as usize);
    host.submit(
        Irp,
        Op::Disconnect {
            buf,
            done: 0,
            total,
        },
    )
}

unsafe extern "system" fn release_data(
    Socket: PWSK_SOCKET,
    DataIndication: PWSK_DATA_INDICATION,
) -> NTSTATUS {
    require_irql("WskRelease", DISPATCH_LEVEL);
    match socket_for_call(Socket, "WskRelease") {
        Some(host) => indication::release(&host, DataIndication as usize, false),
        None => STATUS_INVALID_PARAMETER,
    }
}

unsafe extern "system" fn release_datagrams(
    Socket: PWSK_SOCKET,
    DatagramIndication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    require_irql("WskRelease", DISPATCH_LEVEL);
    match socket_for_call(Socket, "WskRelease") {
        Some(host) => indication::release(&host, DatagramIndication as usize, true),
        None => STATUS_INVALID_PARAMETER,
    }
}

/// The destination of a datagram: the given address, else the fixed remote address.
///
/// # Safety
/// `remote` must be null or a valid socket address.
unsafe fn datagram_destination(
    host: &Arc<HostSocket>,
    remote: PSOCKADDR,
) -> Result<std::net::SocketAddr, NTSTATUS> {
    if remote.is_null() {
        return host.lock().fixed_remote.ok_or(STATUS_INVALID_ADDRESS);
    }
    // SAFETY: forwarded.
    let address = unsafe { destination(remote) }?;
    if domain(host.family) != Some(socket2::Domain::for_address(address)) {
        return Err(STATUS_INVALID_ADDRESS_COMPONENT);
    }
    Ok(address)
}

unsafe extern "system" fn send_to(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlInfoLength: ULONG,
    _ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskSendTo", Socket, Irp, &[Category::Datagram]) {
        Ok(host) => host,
        Err(status) => return status,
    };
    if ControlInfoLength != 0 {
        return finish(Irp, STATUS_NOT_SUPPORTED, 0, Delivery::Inline);
    }
    // SAFETY: the client's address and buffer descriptor.
    let (remote, buf) = unsafe {
        (
            datagram_destination(&host, RemoteAddress),
            read_buf("WskSendTo", Buffer),
        )
    };
    match (remote, buf) {
        (Ok(remote), Some(buf)) => host.submit(Irp, Op::SendTo { buf, remote }),
        (Err(status), _) => finish(Irp, status, 0, Delivery::Inline),
        (_, None) => finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn send_messages(
    Socket: PWSK_SOCKET,
    BufferList: PWSK_BUF_LIST,
    _Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlInfoLength: ULONG,
    _ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskSendMessages", Socket, Irp, &[Category::Datagram]) {
        Ok(host) => host,
        Err(status) => return status,
    };
    if ControlInfoLength != 0 || BufferList.is_null() {
        return finish(
            Irp,
            if BufferList.is_null() {
                STATUS_INVALID_PARAMETER
            } else {
                STATUS_NOT_SUPPORTED
            },
            0,
            Delivery::Inline,
        );
    }
    // SAFETY: the client's address.
    match unsafe { datagram_destination(&host, RemoteAddress) } {
        Ok(remote) => host.submit(
            Irp,
            Op::SendMessages {
                list: BufferList,
                remote,
            },
        ),
        Err(status) => finish(Irp, status, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn receive_from(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlLength: PULONG,
    _ControlInfo: PCMSGHDR,
    ControlFlags: PULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let host = match start("WskReceiveFrom", Socket, Irp, &[Category::Datagram]) {
        Ok(host) => host,
        Err(status) => return status,
    };
    // SAFETY: the client's optional outputs: no control information is received.
    unsafe {
        if !ControlLength.is_null() {
            *ControlLength = 0;
        }
        if !ControlFlags.is_null() {
            *ControlFlags = 0;
        }
    }
    // SAFETY: the client's buffer descriptor.
    match unsafe { read_buf("WskReceiveFrom", Buffer) } {
        Some(buf) => host.submit(
            Irp,
            Op::ReceiveFrom {
                buf,
                remote: RemoteAddress,
            },
        ),
        None => finish(Irp, STATUS_INVALID_PARAMETER, 0, Delivery::Inline),
    }
}

unsafe extern "system" fn control_socket(
    Socket: PWSK_SOCKET,
    RequestType: WSK_CONTROL_SOCKET_TYPE,
    ControlCode: ULONG,
    Level: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    OutputSize: SIZE_T,
    OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: PIRP,
) -> NTSTATUS {
    let request = super::control::Request {
        kind: RequestType,
        code: ControlCode,
        level: Level,
        input: (InputBuffer, InputSize as usize),
        output: (OutputBuffer, OutputSize as usize),
    };
    if Irp.is_null() {
        if !require_irql("WskControlSocket", DISPATCH_LEVEL) {
            return STATUS_INVALID_DEVICE_STATE;
        }
        let Some(host) = socket_for_call(Socket, "WskControlSocket") else {
            return STATUS_FILE_FORCED_CLOSED;
        };
        let (status, returned) = super::control::control(&host, &request, true);
        if !OutputSizeReturned.is_null() {
            // SAFETY: the client's output count.
            unsafe { *OutputSizeReturned = returned as SIZE_T };
        }
        return status;
    }
    let all = [
        Category::Basic,
        Category::Listen,
        Category::Connection,
        Category::Datagram,
        Category::Stream,
    ];
    let host = match start("WskControlSocket", Socket, Irp, &all) {
        Ok(host) => host,
        Err(status) => return status,
    };
    let (status, returned) = super::control::control(&host, &request, false);
    if crate::faults::completion_delay().is_some() {
        // Delayed completions (fault plan): the control is done, its IRP completes later
        // from the provider's thread, so the request is in flight meanwhile.
        // SAFETY: the IRP is this request's; it is completed once, later.
        unsafe { IoMarkIrpPending(Irp) };
        return finish(Irp, status, returned, Delivery::Pending);
    }
    finish(Irp, status, returned, Delivery::Inline)
}
