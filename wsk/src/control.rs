//! `WskControlSocket` for every socket kind, in one implementation: socket options of any
//! size (get and set, as bytes or typed), and the WSK socket IOCTLs (`SIO_WSK_*`).
//!
//! Every request here takes an IRP from the socket's cache and a buffer owned by its
//! completion block (input copied in when the request is made, output of the size the
//! caller chose): the provider reads and writes it until the completion, whatever happens
//! to the operation. Each may be issued at IRQL <= DISPATCH_LEVEL (the provider's limit for
//! `WskControlSocket` with an IRP); waiting for it needs IRQL <= APC_LEVEL as for any
//! [`Op`].
//!
//! Which options a socket takes is the transport's business (WSK passes them to TCP/IP):
//! an option the socket's kind or state does not support fails with the provider's status
//! (`STATUS_NOT_SUPPORTED`, `STATUS_INVALID_PARAMETER`...). WSK has no `SIO_KEEPALIVE_VALS`;
//! keep-alive timing goes through `TCP_KEEPALIVE`, `TCP_KEEPINTVL` and `TCP_KEEPCNT`
//! ([`SocketOptions::set_keep_alive_time`] and its neighbours).

use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk_sys::*;

use crate::addr::RawAddr;
use crate::completion::{BlockRef, Held};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{SocketCore, SocketKind};
use crate::{ConnectionSocket, DatagramSocket, Error, ListenSocket, Result, StreamSocket};
use sealed::Sealed as _;

/// Which `WskControlSocket` request (`WSK_CONTROL_SOCKET_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlKind {
    /// `WskSetOption`: `code` is the option name, `level` its level.
    SetOption,
    /// `WskGetOption`.
    GetOption,
    /// `WskIoctl`: `code` is the control code; `level` is ignored.
    Ioctl,
}

impl ControlKind {
    fn raw(self) -> WSK_CONTROL_SOCKET_TYPE {
        match self {
            ControlKind::SetOption => WskSetOption,
            ControlKind::GetOption => WskGetOption,
            ControlKind::Ioctl => WskIoctl,
        }
    }
}

/// `WskControlSocket` with a buffer owned by the request's completion block: the input, then
/// room for the output. Yields what `decode` makes of the output bytes the provider wrote.
pub struct ControlRequest<T = Vec<u8>> {
    core: Shared<SocketCore>,
    kind: ControlKind,
    code: ULONG,
    level: ULONG,
    /// Input then output room; `Err` when it could not be allocated or the request is
    /// refused before reaching the provider.
    buffer: Option<Result<Vec<u8>>>,
    input_len: usize,
    output_len: usize,
    decode: fn(Vec<u8>) -> Result<T>,
}

fn bytes(output: Vec<u8>) -> Result<Vec<u8>> {
    Ok(output)
}

fn nothing(_output: Vec<u8>) -> Result<()> {
    Ok(())
}

impl<T> ControlRequest<T> {
    fn new(
        core: &Shared<SocketCore>,
        kind: ControlKind,
        (level, code): (ULONG, ULONG),
        input: &[u8],
        output_len: usize,
        decode: fn(Vec<u8>) -> Result<T>,
    ) -> ControlRequest<T> {
        let buffer = (|| {
            let total = input
                .len()
                .checked_add(output_len)
                .filter(|&n| n <= ULONG::MAX as usize)
                .ok_or(Error::INVALID_BUFFER_SIZE)?;
            let mut buffer = Vec::new();
            buffer
                .try_reserve_exact(total)
                .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
            buffer.extend_from_slice(input);
            buffer.resize(total, 0);
            Ok(buffer)
        })();
        ControlRequest {
            core: core.clone(),
            kind,
            code,
            level,
            buffer: Some(buffer),
            input_len: input.len(),
            output_len,
            decode,
        }
    }

    fn refused(mut self, error: Error) -> ControlRequest<T> {
        self.buffer = Some(Err(error));
        self
    }
}

impl<T> Issue for ControlRequest<T> {
    type Output = Result<T>;

    fn start(&mut self) -> Result<BlockRef> {
        let buffer = self
            .buffer
            .take()
            .unwrap_or(Err(Error::INVALID_PARAMETER))?;
        if self.kind == ControlKind::SetOption
            && (self.level, self.code) == (SOL_SOCKET, SO_CONDITIONAL_ACCEPT)
        {
            // From now on the provider may call the inspect and abort callbacks with this
            // socket's core as context, handler or not (even if the request fails: the
            // record only ever makes `into_raw` refuse).
            self.core.arm_callbacks();
        }
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: nothing in flight on a fresh block.
        unsafe { block.held().store(Held::Bytes(buffer)) };
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let (kind, code, level) = (self.kind.raw(), self.code, self.level);
        let (input_len, output_len) = (self.input_len, self.output_len);
        // SAFETY: `start` stored the buffer (`input_len + output_len` bytes) in the block,
        // which holds it until the completion; its heap storage does not move while held
        // (nothing touches the vector until then), so both pointers stay in it.
        unsafe {
            let Held::Bytes(buffer) = &mut *block.held_ptr() else {
                unreachable!("a control request's start stores its buffer");
            };
            let base = buffer.as_mut_ptr();
            let input = if input_len == 0 {
                core::ptr::null_mut()
            } else {
                base.cast()
            };
            let output = if output_len == 0 {
                core::ptr::null_mut()
            } else {
                base.add(input_len).cast()
            };
            self.core.call(irp, |socket| {
                let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
                let control = (*basic)
                    .WskControlSocket
                    .expect("every socket has WskControlSocket");
                control(
                    socket,
                    kind,
                    code,
                    level,
                    input_len as SIZE_T,
                    input,
                    output_len as SIZE_T,
                    output,
                    core::ptr::null_mut(),
                    irp,
                )
            })
        }
    }

    fn finish(&mut self, block: &mut BlockRef, status: NTSTATUS, information: usize) -> Result<T> {
        // SAFETY: done: the buffer is ours again.
        let held = core::mem::take(unsafe { block.held() });
        if status == STATUS_BUFFER_TOO_SMALL || status == STATUS_BUFFER_OVERFLOW {
            // The provider reports the size it needed where it knows it.
            return Err(if information > self.output_len {
                Error::buffer_too_small(information)
            } else {
                Error::from_status(status)
            });
        }
        Error::check(status)?;
        let mut output = match held {
            Held::Bytes(buffer) => buffer,
            _ => Vec::new(),
        };
        output.drain(..self.input_len.min(output.len()));
        output.truncate(information.min(self.output_len));
        (self.decode)(output)
    }

    fn fail(&mut self, error: Error) -> Result<T> {
        Err(error)
    }
}

/// An option value with a fixed layout: how it goes to and comes from the provider.
trait OptionValue: Sized {
    /// Size of the value in bytes.
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: Vec<u8>) -> Result<Self>;
}

impl OptionValue for u32 {
    const SIZE: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_ne_bytes());
    }
    fn decode(bytes: Vec<u8>) -> Result<u32> {
        // Some options (booleans, on some stacks) come back in fewer bytes.
        match bytes.len() {
            4.. => Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            1 => Ok(bytes[0].into()),
            _ => Err(Error::INVALID_BUFFER_SIZE),
        }
    }
}

impl OptionValue for bool {
    const SIZE: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode(out);
    }
    fn decode(bytes: Vec<u8>) -> Result<bool> {
        u32::decode(bytes).map(|v| v != 0)
    }
}

/// `LINGER`: `Some(seconds)` lingers, `None` does not.
impl OptionValue for Option<u16> {
    const SIZE: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u16::from(self.is_some()).to_ne_bytes());
        out.extend_from_slice(&self.unwrap_or(0).to_ne_bytes());
    }
    fn decode(bytes: Vec<u8>) -> Result<Option<u16>> {
        if bytes.len() < 4 {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        let on = u16::from_ne_bytes([bytes[0], bytes[1]]);
        let seconds = u16::from_ne_bytes([bytes[2], bytes[3]]);
        Ok((on != 0).then_some(seconds))
    }
}

fn decode_value<V: OptionValue>(bytes: Vec<u8>) -> Result<V> {
    V::decode(bytes)
}

/// Options whose value carries a pointer the provider would follow: only through the
/// `unsafe` [`SocketOptions::control`].
pub(crate) fn carries_pointer(level: ULONG, name: ULONG) -> bool {
    level == SOL_SOCKET && (name == SO_WSK_SECURITY || name == SO_WSK_EVENT_CALLBACK)
}

/// The operation of the option and control requests: yields the value read (the output
/// bytes for the byte forms, `()` for setters).
pub type Control<T = Vec<u8>> = Op<ControlRequest<T>>;

mod sealed {
    use crate::shared::Shared;
    use crate::socket::SocketCore;

    /// Seals [`SocketOptions`](super::SocketOptions) and reaches the socket's core, out of
    /// reach of other crates.
    pub trait Sealed {
        fn socket_core(&self) -> &Shared<SocketCore>;
    }
}

macro_rules! typed_option {
    ($(#[$doc:meta])* $get:ident, $set:ident, $ty:ty, $level:expr, $name:expr) => {
        $(#[$doc])*
        /// Reads it back with the getter of the same name. IRQL <= DISPATCH_LEVEL.
        fn $set(&self, value: $ty) -> Control<()> {
            set_typed(self.socket_core(), ($level, $name), &value)
        }
        $(#[$doc])*
        /// The current value. IRQL <= DISPATCH_LEVEL.
        fn $get(&self) -> Control<$ty> {
            get_typed(self.socket_core(), ($level, $name))
        }
    };
}

fn set_typed<V: OptionValue>(
    core: &Shared<SocketCore>,
    id: (ULONG, ULONG),
    value: &V,
) -> Control<()> {
    let mut bytes = Vec::new();
    if bytes.try_reserve_exact(V::SIZE).is_err() {
        return Op::new(
            ControlRequest::new(core, ControlKind::SetOption, id, &[], 0, nothing)
                .refused(Error::INSUFFICIENT_RESOURCES),
        );
    }
    value.encode(&mut bytes);
    Op::new(ControlRequest::new(
        core,
        ControlKind::SetOption,
        id,
        &bytes,
        0,
        nothing,
    ))
}

fn get_typed<V: OptionValue>(core: &Shared<SocketCore>, id: (ULONG, ULONG)) -> Control<V> {
    Op::new(ControlRequest::new(
        core,
        ControlKind::GetOption,
        id,
        &[],
        V::SIZE,
        decode_value::<V>,
    ))
}

/// Socket options and socket controls (`WskControlSocket`), the same for every socket
/// kind: [`ConnectionSocket`], [`ListenSocket`], [`DatagramSocket`], [`StreamSocket`].
///
/// Each method returns an operation ([`Control`]) that may be issued at IRQL <=
/// DISPATCH_LEVEL; await it, or `wait()` for it at IRQL <= APC_LEVEL. Which options a kind
/// takes is the transport's: listed for each setter, and the others fail with the
/// provider's status.
///
/// ```no_run
/// use wsk::{ConnectionSocket, SocketOptions};
///
/// /// Keep-alive after 60 s idle, then every 10 s; read back what the transport took.
/// fn tune(socket: &ConnectionSocket) -> wsk::Result<u32> {
///     SocketOptions::set_keep_alive(socket, true).wait()?;
///     socket.set_keep_alive_time(60).wait()?;
///     SocketOptions::set_keep_alive_interval(socket, 10).wait()?;
///     socket.keep_alive_time().wait()
/// }
/// ```
///
/// The trait is sealed: its methods reach the crate's socket machinery, so only the
/// crate's socket kinds implement it.
///
/// ```compile_fail,E0277
/// struct Mine;
/// impl wsk::SocketOptions for Mine {}
/// ```
pub trait SocketOptions: sealed::Sealed {
    /// Sets an option of any size (`WskSetOption`): `value` is copied into the request.
    /// Options whose value holds a pointer (`SO_WSK_SECURITY`, `SO_WSK_EVENT_CALLBACK`) are
    /// refused with [`Error::INVALID_PARAMETER`]: they go through [`control`](Self::control).
    fn set_option_bytes(&self, level: u32, name: u32, value: &[u8]) -> Control<()> {
        let request = ControlRequest::new(
            self.socket_core(),
            ControlKind::SetOption,
            (level, name),
            value,
            0,
            nothing,
        );
        Op::new(if carries_pointer(level, name) {
            request.refused(Error::INVALID_PARAMETER)
        } else {
            request
        })
    }

    /// Reads an option of any size (`WskGetOption`) into a buffer of `capacity` bytes:
    /// yields the bytes the provider wrote (their count is the output length). A buffer too
    /// small fails with kind [`InvalidBufferSize`](crate::ErrorKind::InvalidBufferSize), and
    /// [`Error::needed_size`] tells the size needed when the provider reports it.
    fn option_bytes(&self, level: u32, name: u32, capacity: usize) -> Control {
        let request = ControlRequest::new(
            self.socket_core(),
            ControlKind::GetOption,
            (level, name),
            &[],
            capacity,
            bytes,
        );
        Op::new(if carries_pointer(level, name) {
            request.refused(Error::INVALID_PARAMETER)
        } else {
            request
        })
    }

    /// Any `WskControlSocket` request, raw: `kind`, `code` (option name or IOCTL code),
    /// `level` (options only), the input bytes (copied into the request) and the size of
    /// the output buffer. Yields the output bytes written. Use it for the controls without
    /// a typed method (`SIO_WSK_REGISTER_EXTENSION`, `SIO_WSK_SET_RECEIVE_EX_CALLBACK`,
    /// `SO_WSK_SECURITY`, transport IOCTLs).
    ///
    /// # Safety
    /// The provider reads the input as the structure `code` defines, and follows any
    /// pointer in it: every pointer in `input` must be valid for what the control does with
    /// it, for as long as the provider keeps it (a security descriptor captured with
    /// `WSK_CACHE_SD` until released, an extension interface until the socket is closed).
    /// `SO_WSK_EVENT_CALLBACK` must not be used: enabling events is the event handlers'
    /// (`set_events`).
    unsafe fn control(
        &self,
        kind: ControlKind,
        code: u32,
        level: u32,
        input: &[u8],
        output_capacity: usize,
    ) -> Control {
        Op::new(ControlRequest::new(
            self.socket_core(),
            kind,
            (level, code),
            input,
            output_capacity,
            bytes,
        ))
    }

    typed_option!(
        /// Keep-alive probes (`SOL_SOCKET`, `SO_KEEPALIVE`): connection and stream sockets.
        keep_alive, set_keep_alive, bool, SOL_SOCKET, SO_KEEPALIVE
    );
    typed_option!(
        /// Idle time before keep-alive probes start, in seconds (`IPPROTO_TCP`,
        /// `TCP_KEEPALIVE`): connection and stream sockets.
        keep_alive_time, set_keep_alive_time, u32, IPPROTO_TCP, TCP_KEEPALIVE
    );
    typed_option!(
        /// Interval between keep-alive probes, in seconds (`IPPROTO_TCP`, `TCP_KEEPINTVL`):
        /// connection and stream sockets.
        keep_alive_interval, set_keep_alive_interval, u32, IPPROTO_TCP, TCP_KEEPINTVL
    );
    typed_option!(
        /// Keep-alive probes sent before the connection is dropped (`IPPROTO_TCP`,
        /// `TCP_KEEPCNT`): connection and stream sockets.
        keep_alive_retries, set_keep_alive_retries, u32, IPPROTO_TCP, TCP_KEEPCNT
    );
    typed_option!(
        /// Lingering on close (`SOL_SOCKET`, `SO_LINGER`): `Some(seconds)` lingers, `None`
        /// does not. Connection and stream sockets.
        linger, set_linger, Option<u16>, SOL_SOCKET, SO_LINGER
    );
    typed_option!(
        /// Size of the send buffer in bytes (`SOL_SOCKET`, `SO_SNDBUF`): every kind.
        send_buffer_size, set_send_buffer_size, u32, SOL_SOCKET, SO_SNDBUF
    );
    typed_option!(
        /// Size of the receive buffer in bytes (`SOL_SOCKET`, `SO_RCVBUF`): every kind.
        receive_buffer_size, set_receive_buffer_size, u32, SOL_SOCKET, SO_RCVBUF
    );
    typed_option!(
        /// Binding an address in use (`SOL_SOCKET`, `SO_REUSEADDR`), before binding:
        /// every kind.
        reuse_address, set_reuse_address, bool, SOL_SOCKET, SO_REUSEADDR
    );
    typed_option!(
        /// Exclusive use of the bound address (`SOL_SOCKET`, `SO_EXCLUSIVEADDRUSE`), before
        /// binding: every kind.
        exclusive_address_use, set_exclusive_address_use, bool, SOL_SOCKET, SO_EXCLUSIVEADDRUSE
    );
    typed_option!(
        /// Sending to broadcast addresses (`SOL_SOCKET`, `SO_BROADCAST`): datagram sockets.
        broadcast, set_broadcast, bool, SOL_SOCKET, SO_BROADCAST
    );
    typed_option!(
        /// Conditional accept (`SOL_SOCKET`, `SO_CONDITIONAL_ACCEPT`), before binding:
        /// listening sockets whose handler inspects each connection
        /// ([`ListenEvents::on_inspect`](crate::ListenEvents::on_inspect)).
        conditional_accept, set_conditional_accept, bool, SOL_SOCKET, SO_CONDITIONAL_ACCEPT
    );
    typed_option!(
        /// The Nagle algorithm off (`IPPROTO_TCP`, `TCP_NODELAY`): connection and stream
        /// sockets.
        no_delay, set_no_delay, bool, IPPROTO_TCP, TCP_NODELAY
    );
    typed_option!(
        /// IPv4 time to live (`IPPROTO_IP`, `IP_TTL`): IPv4 sockets.
        ttl, set_ttl, u32, IPPROTO_IP, IP_TTL
    );
    typed_option!(
        /// IPv6 unicast hop limit (`IPPROTO_IPV6`, `IPV6_UNICAST_HOPS`): IPv6 sockets.
        unicast_hops_v6, set_unicast_hops_v6, u32, IPPROTO_IPV6, IPV6_UNICAST_HOPS
    );
    typed_option!(
        /// IPv4 type of service (`IPPROTO_IP`, `IP_TOS`): IPv4 sockets.
        tos, set_tos, u32, IPPROTO_IP, IP_TOS
    );
    typed_option!(
        /// An IPv6 socket restricted to IPv6 (`IPPROTO_IPV6`, `IPV6_V6ONLY`), before
        /// binding: IPv6 sockets.
        only_v6, set_only_v6, bool, IPPROTO_IPV6, IPV6_V6ONLY
    );
    typed_option!(
        /// Multicast sent to this host too (`IPPROTO_IP`, `IP_MULTICAST_LOOP`): IPv4
        /// datagram sockets.
        multicast_loop_v4, set_multicast_loop_v4, bool, IPPROTO_IP, IP_MULTICAST_LOOP
    );
    typed_option!(
        /// Multicast sent to this host too (`IPPROTO_IPV6`, `IPV6_MULTICAST_LOOP`): IPv6
        /// datagram sockets.
        multicast_loop_v6, set_multicast_loop_v6, bool, IPPROTO_IPV6, IPV6_MULTICAST_LOOP
    );
    typed_option!(
        /// Time to live of multicast datagrams (`IPPROTO_IP`, `IP_MULTICAST_TTL`): IPv4
        /// datagram sockets.
        multicast_ttl_v4, set_multicast_ttl_v4, u32, IPPROTO_IP, IP_MULTICAST_TTL
    );
    typed_option!(
        /// Hop limit of multicast datagrams (`IPPROTO_IPV6`, `IPV6_MULTICAST_HOPS`): IPv6
        /// datagram sockets.
        multicast_hops_v6, set_multicast_hops_v6, u32, IPPROTO_IPV6, IPV6_MULTICAST_HOPS
    );

    /// Joins the IPv4 multicast group `group` on the interface of address `interface`
    /// (`IP_ADD_MEMBERSHIP`; [`Ipv4Addr::UNSPECIFIED`]: the system's choice). Datagram
    /// sockets. IRQL <= DISPATCH_LEVEL.
    fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Control<()> {
        self.set_option_bytes(IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq_v4(group, interface))
    }

    /// Leaves an IPv4 multicast group (`IP_DROP_MEMBERSHIP`). IRQL <= DISPATCH_LEVEL.
    fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Control<()> {
        self.set_option_bytes(IPPROTO_IP, IP_DROP_MEMBERSHIP, &mreq_v4(group, interface))
    }

    /// Joins the IPv6 multicast group `group` on interface index `interface` (0: the
    /// system's choice) (`IPV6_ADD_MEMBERSHIP`). Datagram sockets. IRQL <= DISPATCH_LEVEL.
    fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> Control<()> {
        self.set_option_bytes(
            IPPROTO_IPV6,
            IPV6_ADD_MEMBERSHIP,
            &mreq_v6(group, interface),
        )
    }

    /// Leaves an IPv6 multicast group (`IPV6_DROP_MEMBERSHIP`). IRQL <= DISPATCH_LEVEL.
    fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> Control<()> {
        self.set_option_bytes(
            IPPROTO_IPV6,
            IPV6_DROP_MEMBERSHIP,
            &mreq_v6(group, interface),
        )
    }
}

/// `IP_MREQ`: the group, then the interface address, in network order.
fn mreq_v4(group: Ipv4Addr, interface: Ipv4Addr) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&group.octets());
    out[4..].copy_from_slice(&interface.octets());
    out
}

/// `IPV6_MREQ`: the group, then the interface index.
fn mreq_v6(group: Ipv6Addr, interface: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..16].copy_from_slice(&group.octets());
    out[16..].copy_from_slice(&interface.to_ne_bytes());
    out
}

macro_rules! socket_options_for {
    ($($kind:ty),*) => {$(
        impl sealed::Sealed for $kind {
            fn socket_core(&self) -> &Shared<SocketCore> {
                &self.handle().core
            }
        }
        impl SocketOptions for $kind {}
    )*};
}

socket_options_for!(ConnectionSocket, ListenSocket, DatagramSocket, StreamSocket);

// ---- the SIO_WSK_* controls with a defined payload -------------------------------------------

fn decode_size(bytes: Vec<u8>) -> Result<usize> {
    const SIZE: usize = core::mem::size_of::<SIZE_T>();
    if bytes.len() < SIZE {
        return Err(Error::INVALID_BUFFER_SIZE);
    }
    let mut raw = [0u8; SIZE];
    raw.copy_from_slice(&bytes[..SIZE]);
    Ok(SIZE_T::from_ne_bytes(raw) as usize)
}

fn decode_inspect_id(bytes: Vec<u8>) -> Result<crate::InspectId> {
    const SIZE: usize = core::mem::size_of::<WSK_INSPECT_ID>();
    if bytes.len() < SIZE {
        return Err(Error::INVALID_BUFFER_SIZE);
    }
    // SAFETY: WSK_INSPECT_ID is plain integers, any bytes valid; the padding is not read
    // as a field.
    let raw = unsafe { bytes.as_ptr().cast::<WSK_INSPECT_ID>().read_unaligned() };
    Ok(crate::InspectId::from_raw(&raw))
}

fn ioctl<T>(
    core: &Shared<SocketCore>,
    code: ULONG,
    input: &[u8],
    output_len: usize,
    decode: fn(Vec<u8>) -> Result<T>,
) -> Control<T> {
    Op::new(ControlRequest::new(
        core,
        ControlKind::Ioctl,
        (0, code),
        input,
        output_len,
        decode,
    ))
}

fn address_ioctl(core: &Shared<SocketCore>, code: ULONG, address: SocketAddr) -> Control<()> {
    if let Err(error) = crate::addr::require_family(&address, core.family) {
        return Op::new(
            ControlRequest::new(core, ControlKind::Ioctl, (0, code), &[], 0, nothing)
                .refused(error),
        );
    }
    let raw = RawAddr::from_socket_addr(&address);
    ioctl(core, code, raw.as_bytes(), 0, nothing)
}

impl DatagramSocket {
    /// Fixes the remote address of the socket (`SIO_WSK_SET_REMOTE_ADDRESS`): datagrams
    /// sent without an address go there, and only datagrams from there are received.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn set_remote_address(&self, remote: SocketAddr) -> Control<()> {
        address_ioctl(self.socket_core(), SIO_WSK_SET_REMOTE_ADDRESS, remote)
    }

    /// Sets the default destination of sends without an address
    /// (`SIO_WSK_SET_SENDTO_ADDRESS`), without filtering what is received. IRQL <=
    /// DISPATCH_LEVEL.
    pub fn set_send_to_address(&self, remote: SocketAddr) -> Control<()> {
        address_ioctl(self.socket_core(), SIO_WSK_SET_SENDTO_ADDRESS, remote)
    }

    /// Bytes received and buffered by the transport, not yet taken
    /// (`SIO_WSK_QUERY_RECEIVE_BACKLOG`). IRQL <= DISPATCH_LEVEL.
    pub fn receive_backlog(&self) -> Control<usize> {
        ioctl(
            self.socket_core(),
            SIO_WSK_QUERY_RECEIVE_BACKLOG,
            &[],
            core::mem::size_of::<SIZE_T>(),
            decode_size,
        )
    }
}

impl ConnectionSocket {
    /// The ideal amount of data to keep queued for sending, in bytes
    /// (`SIO_WSK_QUERY_IDEAL_SEND_BACKLOG`); its changes come to
    /// [`ConnectionEvents::on_send_backlog`](crate::ConnectionEvents::on_send_backlog).
    /// IRQL <= DISPATCH_LEVEL.
    pub fn ideal_send_backlog(&self) -> Control<usize> {
        ioctl(
            self.socket_core(),
            SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
            &[],
            core::mem::size_of::<SIZE_T>(),
            decode_size,
        )
    }

    /// The inspect identifier of a connection accepted on a conditional-accept listening
    /// socket (`SIO_WSK_QUERY_INSPECT_ID`). IRQL <= DISPATCH_LEVEL.
    pub fn inspect_id(&self) -> Control<crate::InspectId> {
        ioctl(
            self.socket_core(),
            SIO_WSK_QUERY_INSPECT_ID,
            &[],
            core::mem::size_of::<WSK_INSPECT_ID>(),
            decode_inspect_id,
        )
    }

    /// Puts the connection in TCP silent mode (`SIO_WSK_SET_TCP_SILENT_MODE`, Windows 8):
    /// it sends nothing more — no data, no acknowledgement, no reset — and only closing is
    /// left. IRQL <= DISPATCH_LEVEL.
    pub fn set_tcp_silent_mode(&self) -> Control<()> {
        ioctl(
            self.socket_core(),
            SIO_WSK_SET_TCP_SILENT_MODE,
            &[],
            0,
            nothing,
        )
    }
}
