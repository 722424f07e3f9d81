//! `WskControlSocket`: socket options (host options through `socket2`), event callbacks
//! (`SO_WSK_EVENT_CALLBACK`) and the WSK IOCTLs.

use std::sync::Arc;

use socket2::SockRef;
use wsk_sys::*;

use super::reactor::reactor;
use super::socket::{Category, HostSocket, Io};
use crate::verifier::{Rule, bug_check};

/// A control request.
pub(crate) struct Request {
    pub(crate) kind: WSK_CONTROL_SOCKET_TYPE,
    pub(crate) code: ULONG,
    pub(crate) level: ULONG,
    pub(crate) input: (PVOID, usize),
    pub(crate) output: (PVOID, usize),
}

impl Request {
    fn input_u32(&self) -> Option<u32> {
        if self.input.0.is_null() || self.input.1 < 4 {
            return None;
        }
        // SAFETY: the client's input buffer of `input.1` bytes.
        Some(unsafe { self.input.0.cast::<u32>().read_unaligned() })
    }

    fn write_output(&self, bytes: &[u8]) -> Option<usize> {
        if self.output.0.is_null() || self.output.1 < bytes.len() {
            return None;
        }
        // SAFETY: the client's output buffer of `output.1` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.output.0.cast::<u8>(), bytes.len())
        };
        Some(bytes.len())
    }
}

/// Runs a control request; returns its status and the bytes written to the output.
/// `without_irp`: the request came with a NULL IRP (allowed for event callbacks).
pub(crate) fn control(
    host: &Arc<HostSocket>,
    request: &Request,
    without_irp: bool,
) -> (NTSTATUS, usize) {
    match request.kind {
        WskSetOption if request.code == SO_WSK_EVENT_CALLBACK && request.level == SOL_SOCKET => {
            (event_callback(host, request), 0)
        }
        _ if without_irp => {
            bug_check(
                Rule::InvalidParameter,
                format!("WskControlSocket code {:#x} needs an IRP", request.code),
            );
            (STATUS_INVALID_PARAMETER, 0)
        }
        WskSetOption => (set_option(host, request), 0),
        WskGetOption => get_option(host, request),
        WskIoctl => ioctl(host, request),
        _ => (STATUS_INVALID_PARAMETER, 0),
    }
}

fn event_callback(host: &Arc<HostSocket>, request: &Request) -> NTSTATUS {
    if request.input.0.is_null()
        || request.input.1 < std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>()
    {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the client's input buffer holds a WSK_EVENT_CALLBACK_CONTROL.
    let control = unsafe {
        request
            .input
            .0
            .cast::<WSK_EVENT_CALLBACK_CONTROL>()
            .read_unaligned()
    };
    // SAFETY: `NpiId` points to a GUID (the WSK NPI identifier for standard events).
    let npi_is_wsk = !control.NpiId.is_null()
        && unsafe { *control.NpiId.cast::<[u8; 16]>() } == guid_bytes(&NPI_WSK_INTERFACE_ID);
    if !npi_is_wsk {
        return STATUS_INVALID_PARAMETER;
    }
    let allowed = match host.category {
        Category::Basic => 0,
        Category::Listen => WSK_EVENT_ACCEPT,
        Category::Connection => WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG,
        Category::Datagram => WSK_EVENT_RECEIVE_FROM,
        Category::Stream => {
            WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
        }
    };
    let mask = control.EventMask & !WSK_EVENT_DISABLE;
    if mask & !allowed != 0 {
        return STATUS_INVALID_PARAMETER;
    }
    {
        let mut state = host.lock();
        let ready = match host.category {
            Category::Basic => false,
            Category::Listen | Category::Datagram => {
                matches!(state.io, Io::Listener(_) | Io::Datagram(_))
            }
            Category::Connection => matches!(state.io, Io::Stream(_)),
            Category::Stream => matches!(state.io, Io::Stream(_) | Io::Listener(_)),
        };
        if !ready {
            // Listening and datagram sockets must be bound, connection sockets connected.
            return STATUS_INVALID_DEVICE_STATE;
        }
        if control.EventMask & WSK_EVENT_DISABLE != 0 {
            state.events &= !mask;
        } else {
            if mask & WSK_EVENT_SEND_BACKLOG != 0 && state.events & WSK_EVENT_SEND_BACKLOG == 0 {
                // As on Windows, the first send-backlog event follows its enabling.
                state.send_backlog_due = true;
            }
            state.events |= mask;
        }
    }
    reactor().kick(Arc::clone(host));
    STATUS_SUCCESS
}

fn guid_bytes(guid: &GUID) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&guid.Data1.to_ne_bytes());
    bytes[4..6].copy_from_slice(&guid.Data2.to_ne_bytes());
    bytes[6..8].copy_from_slice(&guid.Data3.to_ne_bytes());
    bytes[8..].copy_from_slice(&guid.Data4);
    bytes
}

/// Runs `f` on the host socket, whatever its stage.
fn with_socket<R>(
    host: &Arc<HostSocket>,
    f: impl FnOnce(SockRef<'_>) -> std::io::Result<R>,
) -> Result<R, NTSTATUS> {
    let state = host.lock();
    let result = match &state.io {
        Io::Unbound(s) | Io::Bound(s) => f(SockRef::from(s)),
        Io::Connecting(s) | Io::Stream(s) => f(SockRef::from(s)),
        Io::Listener(l) => f(SockRef::from(l)),
        Io::Datagram(d) => f(SockRef::from(d)),
        Io::Gone => return Err(STATUS_INVALID_DEVICE_STATE),
    };
    result.map_err(|e| super::status_of_io(&e))
}

/// Runs `f` on the host socket behind an open provider socket (for tests that check what an
/// option did to the real socket); `None` for an unknown or closed socket.
pub(crate) fn inspect_host_socket<R>(
    socket: PWSK_SOCKET,
    f: impl FnOnce(SockRef<'_>) -> R,
) -> Option<R> {
    let host = super::socket_by_address(socket as usize)?;
    let state = host.lock();
    Some(match &state.io {
        Io::Unbound(s) | Io::Bound(s) => f(SockRef::from(s)),
        Io::Connecting(s) | Io::Stream(s) => f(SockRef::from(s)),
        Io::Listener(l) => f(SockRef::from(l)),
        Io::Datagram(d) => f(SockRef::from(d)),
        Io::Gone => return None,
    })
}

impl Request {
    /// The client's input bytes.
    fn input_bytes(&self) -> &[u8] {
        if self.input.0.is_null() || self.input.1 == 0 {
            return &[];
        }
        // SAFETY: the client's input buffer of `input.1` bytes, read during the call.
        unsafe { std::slice::from_raw_parts(self.input.0.cast::<u8>(), self.input.1) }
    }
}

fn set_option(host: &Arc<HostSocket>, request: &Request) -> NTSTATUS {
    let input = request.input_bytes();
    let result = match (request.level, request.code) {
        (SOL_SOCKET, SO_WSK_SECURITY) => return STATUS_NOT_SUPPORTED,
        (SOL_SOCKET, SO_LINGER) => {
            if input.len() < 4 {
                return STATUS_INVALID_PARAMETER;
            }
            let on = u16::from_ne_bytes([input[0], input[1]]);
            let seconds = u16::from_ne_bytes([input[2], input[3]]);
            let value = (on != 0).then(|| std::time::Duration::from_secs(seconds.into()));
            with_socket(host, |s| s.set_linger(value))
        }
        (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP) => {
            if input.len() < 8 {
                return STATUS_INVALID_PARAMETER;
            }
            let group = std::net::Ipv4Addr::new(input[0], input[1], input[2], input[3]);
            let interface = std::net::Ipv4Addr::new(input[4], input[5], input[6], input[7]);
            if request.code == IP_ADD_MEMBERSHIP {
                with_socket(host, |s| s.join_multicast_v4(&group, &interface))
            } else {
                with_socket(host, |s| s.leave_multicast_v4(&group, &interface))
            }
        }
        (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) => {
            if input.len() < 20 {
                return STATUS_INVALID_PARAMETER;
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&input[..16]);
            let group = std::net::Ipv6Addr::from(octets);
            let interface = u32::from_ne_bytes([input[16], input[17], input[18], input[19]]);
            if request.code == IPV6_ADD_MEMBERSHIP {
                with_socket(host, |s| s.join_multicast_v6(&group, interface))
            } else {
                with_socket(host, |s| s.leave_multicast_v6(&group, interface))
            }
        }
        (level, code) => {
            let Some(value) = request.input_u32() else {
                return STATUS_INVALID_PARAMETER;
            };
            match (level, code) {
                (SOL_SOCKET, SO_REUSEADDR) => {
                    with_socket(host, |s| s.set_reuse_address(value != 0))
                }
                (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => {
                    // Exclusive use is the default of the host's sockets without SO_REUSEADDR.
                    with_socket(host, |s| {
                        s.set_reuse_address(value == 0 && s.reuse_address()?)
                    })
                }
                (SOL_SOCKET, SO_KEEPALIVE) => with_socket(host, |s| s.set_keepalive(value != 0)),
                (SOL_SOCKET, SO_BROADCAST) => with_socket(host, |s| s.set_broadcast(value != 0)),
                (SOL_SOCKET, SO_CONDITIONAL_ACCEPT) => {
                    if !matches!(host.category, Category::Listen | Category::Stream) {
                        return STATUS_INVALID_PARAMETER;
                    }
                    host.lock().conditional = value != 0;
                    Ok(())
                }
                (SOL_SOCKET, SO_OOBINLINE) => {
                    with_socket(host, |s| s.set_out_of_band_inline(value != 0))
                }
                (SOL_SOCKET, SO_RCVBUF) => {
                    with_socket(host, |s| s.set_recv_buffer_size(value as usize))
                }
                (SOL_SOCKET, SO_SNDBUF) => {
                    let result = with_socket(host, |s| s.set_send_buffer_size(value as usize));
                    if result.is_ok() {
                        // The ideal send backlog follows the send buffer.
                        host.lock().send_backlog_due = true;
                        reactor().kick(Arc::clone(host));
                    }
                    result
                }
                (IPPROTO_TCP, TCP_NODELAY) => with_socket(host, |s| s.set_tcp_nodelay(value != 0)),
                (IPPROTO_TCP, TCP_KEEPALIVE) => keepalive(host, |k| {
                    k.with_time(std::time::Duration::from_secs(value.into()))
                }),
                (IPPROTO_TCP, TCP_KEEPINTVL) => keepalive(host, |k| {
                    k.with_interval(std::time::Duration::from_secs(value.into()))
                }),
                (IPPROTO_TCP, TCP_KEEPCNT) => keepalive(host, |k| k.with_retries(value)),
                (IPPROTO_IPV6, IPV6_V6ONLY) => with_socket(host, |s| s.set_only_v6(value != 0)),
                (IPPROTO_IPV6, IPV6_UNICAST_HOPS) => {
                    with_socket(host, |s| s.set_unicast_hops_v6(value))
                }
                (IPPROTO_IPV6, IPV6_MULTICAST_HOPS) => {
                    with_socket(host, |s| s.set_multicast_hops_v6(value))
                }
                (IPPROTO_IPV6, IPV6_MULTICAST_LOOP) => {
                    with_socket(host, |s| s.set_multicast_loop_v6(value != 0))
                }
                (IPPROTO_IP, IP_TTL) => with_socket(host, |s| s.set_ttl_v4(value)),
                (IPPROTO_IP, IP_TOS) => with_socket(host, |s| s.set_tos_v4(value)),
                (IPPROTO_IP, IP_MULTICAST_TTL) => {
                    with_socket(host, |s| s.set_multicast_ttl_v4(value))
                }
                (IPPROTO_IP, IP_MULTICAST_LOOP) => {
                    with_socket(host, |s| s.set_multicast_loop_v4(value != 0))
                }
                _ => return STATUS_NOT_SUPPORTED,
            }
        }
    };
    match result {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status,
    }
}

fn keepalive(
    host: &Arc<HostSocket>,
    build: impl FnOnce(socket2::TcpKeepalive) -> socket2::TcpKeepalive,
) -> Result<(), NTSTATUS> {
    with_socket(host, |s| {
        s.set_tcp_keepalive(&build(socket2::TcpKeepalive::new()))
    })
}

/// Writes an option's or control's output; a buffer too small fails with
/// `STATUS_BUFFER_TOO_SMALL` and the size needed as the returned count (what the client's
/// `IoStatus.Information` carries).
fn output(request: &Request, bytes: &[u8]) -> (NTSTATUS, usize) {
    match request.write_output(bytes) {
        Some(written) => (STATUS_SUCCESS, written),
        None => (STATUS_BUFFER_TOO_SMALL, bytes.len()),
    }
}

fn get_option(host: &Arc<HostSocket>, request: &Request) -> (NTSTATUS, usize) {
    if (request.level, request.code) == (SOL_SOCKET, SO_LINGER) {
        return match with_socket(host, |s| s.linger()) {
            Ok(linger) => {
                let mut bytes = [0u8; 4];
                bytes[..2].copy_from_slice(&u16::from(linger.is_some()).to_ne_bytes());
                let seconds = linger.map_or(0, |d| d.as_secs().min(u16::MAX.into()) as u16);
                bytes[2..].copy_from_slice(&seconds.to_ne_bytes());
                output(request, &bytes)
            }
            Err(status) => (status, 0),
        };
    }
    let secs = |d: std::time::Duration| d.as_secs().min(u32::MAX.into()) as u32;
    let value: Result<u32, NTSTATUS> = match (request.level, request.code) {
        (SOL_SOCKET, SO_REUSEADDR) => with_socket(host, |s| s.reuse_address()).map(u32::from),
        (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => {
            with_socket(host, |s| s.reuse_address()).map(|r| u32::from(!r))
        }
        (SOL_SOCKET, SO_KEEPALIVE) => with_socket(host, |s| s.keepalive()).map(u32::from),
        (SOL_SOCKET, SO_BROADCAST) => with_socket(host, |s| s.broadcast()).map(u32::from),
        (SOL_SOCKET, SO_CONDITIONAL_ACCEPT) => Ok(u32::from(host.lock().conditional)),
        (SOL_SOCKET, SO_OOBINLINE) => with_socket(host, |s| s.out_of_band_inline()).map(u32::from),
        (SOL_SOCKET, SO_RCVBUF) => with_socket(host, |s| s.recv_buffer_size()).map(|v| v as u32),
        (SOL_SOCKET, SO_SNDBUF) => with_socket(host, |s| s.send_buffer_size()).map(|v| v as u32),
        (SOL_SOCKET, SO_TYPE) => Ok(u32::from(if host.category == Category::Datagram {
            SOCK_DGRAM
        } else {
            SOCK_STREAM
        })),
        (SOL_SOCKET, SO_ERROR) => with_socket(host, |s| s.take_error())
            .map(|e| e.map_or(0, |e| e.raw_os_error().unwrap_or(1) as u32)),
        (IPPROTO_TCP, TCP_NODELAY) => with_socket(host, |s| s.tcp_nodelay()).map(u32::from),
        (IPPROTO_TCP, TCP_KEEPALIVE) => with_socket(host, |s| s.tcp_keepalive_time()).map(secs),
        (IPPROTO_TCP, TCP_KEEPINTVL) => with_socket(host, |s| s.tcp_keepalive_interval()).map(secs),
        (IPPROTO_TCP, TCP_KEEPCNT) => with_socket(host, |s| s.tcp_keepalive_retries()),
        (IPPROTO_IPV6, IPV6_V6ONLY) => with_socket(host, |s| s.only_v6()).map(u32::from),
        (IPPROTO_IPV6, IPV6_UNICAST_HOPS) => with_socket(host, |s| s.unicast_hops_v6()),
        (IPPROTO_IPV6, IPV6_MULTICAST_HOPS) => with_socket(host, |s| s.multicast_hops_v6()),
        (IPPROTO_IPV6, IPV6_MULTICAST_LOOP) => {
            with_socket(host, |s| s.multicast_loop_v6()).map(u32::from)
        }
        (IPPROTO_IP, IP_TTL) => with_socket(host, |s| s.ttl_v4()),
        (IPPROTO_IP, IP_TOS) => with_socket(host, |s| s.tos_v4()),
        (IPPROTO_IP, IP_MULTICAST_TTL) => with_socket(host, |s| s.multicast_ttl_v4()),
        (IPPROTO_IP, IP_MULTICAST_LOOP) => {
            with_socket(host, |s| s.multicast_loop_v4()).map(u32::from)
        }
        _ => Err(STATUS_NOT_SUPPORTED),
    };
    match value {
        Ok(value) => output(request, &value.to_ne_bytes()),
        Err(status) => (status, 0),
    }
}

fn ioctl(host: &Arc<HostSocket>, request: &Request) -> (NTSTATUS, usize) {
    let size_of = |value: usize| (value as SIZE_T).to_ne_bytes();
    match request.code {
        SIO_WSK_QUERY_RECEIVE_BACKLOG => {
            let backlog = match host.category {
                // The host's datagram queue is the OS socket's: the next datagram's size
                // (what a peek reports) stands for the backlog.
                Category::Datagram => {
                    let state = host.lock();
                    match &state.io {
                        Io::Datagram(d) => {
                            let mut probe = vec![std::mem::MaybeUninit::<u8>::uninit(); 65_536];
                            SockRef::from(d).peek_from(&mut probe).map_or(0, |(n, _)| n)
                        }
                        _ => 0,
                    }
                }
                _ => host.lock().buffered.len(),
            };
            output(request, &size_of(backlog))
        }
        SIO_WSK_QUERY_IDEAL_SEND_BACKLOG if host.category != Category::Datagram => {
            let ideal = with_socket(host, |s| s.send_buffer_size()).unwrap_or(65_536);
            output(request, &size_of(ideal))
        }
        SIO_WSK_SET_REMOTE_ADDRESS | SIO_WSK_SET_SENDTO_ADDRESS
            if host.category == Category::Datagram =>
        {
            // SAFETY: the client's input is a socket address.
            match unsafe { super::socket::destination(request.input.0.cast()) } {
                Ok(address) => {
                    host.lock().fixed_remote = Some(address);
                    (STATUS_SUCCESS, 0)
                }
                Err(status) => (status, 0),
            }
        }
        SIO_WSK_SET_TCP_SILENT_MODE if host.category != Category::Datagram => {
            let mut state = host.lock();
            if !matches!(state.io, Io::Stream(_)) || !state.sends.is_empty() {
                // Silent mode needs a connected socket with no send in progress.
                return (STATUS_INVALID_DEVICE_STATE, 0);
            }
            state.silent = true;
            (STATUS_SUCCESS, 0)
        }
        SIO_WSK_QUERY_INSPECT_ID => match host.lock().inspect_id {
            Some(id) => {
                // WSK_INSPECT_ID: Key, SerialNumber, then padding (written as zeros).
                let mut bytes = [0u8; std::mem::size_of::<WSK_INSPECT_ID>()];
                let key = id.Key.to_ne_bytes();
                bytes[..key.len()].copy_from_slice(&key);
                bytes[key.len()..key.len() + 4].copy_from_slice(&id.SerialNumber.to_ne_bytes());
                output(request, &bytes)
            }
            // Not accepted through an inspection.
            None => (STATUS_INVALID_DEVICE_STATE, 0),
        },
        _ => (STATUS_NOT_SUPPORTED, 0),
    }
}
