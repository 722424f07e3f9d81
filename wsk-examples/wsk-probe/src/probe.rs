//! The probe: each WSK operation, in an order where each one's result feeds the next, against
//! loopback sockets of the probe's own (a listener on 127.0.0.1 it connects to, datagram
//! sockets that send to each other), each with a deadline.
//!
//! Requests of the safe layer are futures raced against the clock ([`crate::deadline`]): one
//! not completed by the deadline is dropped, which cancels its IRP (`IoCancelIrp`), and reported
//! `not completed`. Its completion block (IRP and buffers) stays with the request until the
//! provider completes it — for good, if the provider never does. A socket-level request left
//! that way does not delay anything (the socket's close does not wait for it). A client-level
//! request (socket creation, name resolution) or a close left that way would make the safe
//! client's teardown wait forever: the probe then does not tear the client down (it leaves
//! it registered: see [`Probe::client_stuck`]). What the safe layer cannot give a deadline to in the first place —
//! `WskSocketConnect`, which Wine's provider neither completes nor pends — and what it does not
//! wrap (basic sockets) goes through [`crate::raw`].

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use crate::deadline::{self, Clock};
use wsk::{
    AcceptDecision, AddressFamily, Buf, BufList, ConnectionEvents, ConnectionSocket,
    DatagramEvents, DatagramSocket, Feature, Incoming, ListenEvents, ListenSocket, ReceiveDecision,
    ReceivedData, ReceivedDatagrams, SpinLock, StreamSocket, WskClient,
};
use wsk_sys::*;

use crate::raw::{self, Arguments, RawClient};
use crate::table::{Api, Completion, Table};

/// The probe's settings (see the crate documentation for the parameters).
#[derive(Clone, Debug)]
pub struct Config {
    /// How long each request may take, in milliseconds.
    pub deadline_ms: u32,
    /// 0: every socket binds an ephemeral port, learnt with `WskGetLocalAddress`; N: the
    /// sockets bind N, N+1, ... N+5 (for providers without `WskGetLocalAddress`).
    pub listen_port: u16,
    /// An external peer to connect to and send a line to, if any.
    pub peer: Option<SocketAddr>,
    /// Kernel routines exported as stubs that end the driver when called (Wine's): the rows
    /// of operations that call one are skipped.
    pub unimplemented: Vec<String>,
}

impl Config {
    /// Whether the kernel implements the routine `name`: not named in `Unimplemented`. (The
    /// image imports it, so it loaded only where the kernel exports it; a stub's export looks
    /// like any other to `MmGetSystemRoutineAddress`.)
    fn implements(&self, name: &str) -> bool {
        !self.unimplemented.iter().any(|stub| stub == name)
    }
}

/// The line sent to the external peer.
pub const PEER_MESSAGE: &[u8] = b"wsk_probe: hello\n";

/// What the event callbacks saw.
struct Seen {
    received: AtomicUsize,
    disconnected: AtomicBool,
    received_from: AtomicUsize,
    accepts: AtomicUsize,
    /// The status of the last accept callback's taking of its connection.
    accept_status: AtomicI32,
    /// The connection the accept callback took.
    accepted: SpinLock<Option<ConnectionSocket>>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            received: AtomicUsize::new(0),
            disconnected: AtomicBool::new(false),
            received_from: AtomicUsize::new(0),
            accepts: AtomicUsize::new(0),
            accept_status: AtomicI32::new(STATUS_SUCCESS),
            accepted: SpinLock::new(None),
        }
    }
}

/// The handler of every probed socket: counts what it is told.
struct Watch(Arc<Seen>);

impl ConnectionEvents for Watch {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        self.0.received.fetch_add(data.len(), Ordering::AcqRel);
        data.consume()
    }

    fn on_disconnect(&self, _abortive: bool) {
        self.0.disconnected.store(true, Ordering::Release);
    }
}

impl ListenEvents for Watch {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        let decision = match incoming.accept() {
            Ok((socket, decision)) => {
                let previous = self.0.accepted.lock().replace(socket);
                // Closed outside the lock (in the background).
                drop(previous);
                decision
            }
            Err((error, decision)) => {
                self.0
                    .accept_status
                    .store(error.status(), Ordering::Release);
                decision
            }
        };
        self.0.accepts.fetch_add(1, Ordering::AcqRel);
        decision
    }
}

impl DatagramEvents for Watch {
    fn on_receive_from<'a>(&self, datagrams: ReceivedDatagrams<'a>) -> ReceiveDecision<'a> {
        let bytes: usize = datagrams.iter().map(|d| d.len()).sum();
        self.0.received_from.fetch_add(bytes, Ordering::AcqRel);
        datagrams.consume()
    }
}

/// The checks of a completed request: what is wrong (`None`: nothing) and a note.
type Check = (Option<String>, String);

fn fine(note: String) -> Check {
    (None, note)
}

fn wrong(problem: String) -> Check {
    (Some(problem), String::new())
}

/// The probe's state while it runs.
pub struct Probe<'a> {
    client: &'a WskClient,
    clock: Clock,
    config: Config,
    /// The rows so far.
    pub table: Table,
    /// A client-level request or a close was given up: the client's teardown would wait for
    /// it forever.
    pub client_stuck: bool,
    /// A raw socket's close was given up: `WskDeregister` would wait for it.
    pub raw_stuck: bool,
}

/// Whether `address` is 127.0.0.1 with the expected port (any non-zero one when `port` is 0).
fn check_local(address: &SocketAddr, port: u16) -> Check {
    if address.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return wrong(format!("{address}: expected 127.0.0.1"));
    }
    if address.port() == 0 || (port != 0 && address.port() != port) {
        return wrong(format!("{address}: expected port {port}"));
    }
    fine(format!("{address}"))
}

impl<'a> Probe<'a> {
    /// A probe with the safe client.
    pub fn new(client: &'a WskClient, config: Config) -> Probe<'a> {
        Probe {
            client,
            clock: Clock::new(),
            config,
            table: Table::default(),
            client_stuck: false,
            raw_stuck: false,
        }
    }

    /// Races `request` against the deadline: `None` if it did not complete in time (it is
    /// dropped, which cancels it).
    async fn bounded<F: Future + Unpin>(&self, request: F) -> Option<F::Output> {
        deadline::within(self.clock, self.config.deadline_ms, request).await
    }

    /// Records the row of a safe request: `None` when it did not complete (a client-level
    /// one marks the client stuck), its error, or `check` of its value. Returns the value
    /// when it completed with success and `check` found nothing wrong.
    fn record<T>(
        &mut self,
        operation: &'static str,
        client_level: bool,
        outcome: Option<wsk::Result<T>>,
        check: impl FnOnce(&T) -> Check,
    ) -> Option<T> {
        match outcome {
            None => {
                if client_level {
                    self.client_stuck = true;
                }
                let note = format!("cancelled after {} ms", self.config.deadline_ms);
                self.table.add(
                    operation,
                    Api::Safe,
                    Completion::NotCompleted(None),
                    None,
                    &note,
                );
                None
            }
            Some(Err(error)) => {
                self.table.add(
                    operation,
                    Api::Safe,
                    Completion::Completed(error.status()),
                    None,
                    &format!("{:?}", error.kind()),
                );
                None
            }
            Some(Ok(value)) => {
                let (problem, note) = check(&value);
                let ok = problem.is_none();
                self.table.add(
                    operation,
                    Api::Safe,
                    Completion::Completed(STATUS_SUCCESS),
                    problem.as_deref(),
                    &note,
                );
                ok.then_some(value)
            }
        }
    }

    /// Records rows `operations` not recorded yet as skipped, saying why.
    fn skip_rest(&mut self, operations: &[&'static str], why: &str) {
        for &operation in operations {
            if !self.table.has(operation) {
                let api = if operation.starts_with("raw ") {
                    Api::Raw
                } else {
                    Api::Safe
                };
                self.table.skip(operation, api, why);
            }
        }
    }

    /// The address for the socket number `offset` of the probe: 127.0.0.1 with port 0, or
    /// with `ListenPort + offset`.
    fn local(&self, offset: u16) -> SocketAddr {
        let port = if self.config.listen_port == 0 {
            0
        } else {
            self.config.listen_port.saturating_add(offset)
        };
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// Runs the `WskGetLocalAddress` row of a socket bound to `bound`; the address to reach
    /// it at (the configured one when its port is fixed, whatever the row found).
    async fn learn(
        &mut self,
        operation: &'static str,
        bound: SocketAddr,
        lookup: wsk::Op<wsk::ops::AddressRequest>,
    ) -> Option<SocketAddr> {
        let found = self.bounded(lookup).await;
        let found = self.record(operation, false, found, |a| check_local(a, bound.port()));
        if bound.port() != 0 {
            Some(bound)
        } else {
            found
        }
    }

    /// Waits until `ready` says so, at most the deadline; whether it did.
    async fn wait_until(&self, ready: impl Fn() -> bool) -> bool {
        let until = self
            .clock
            .now_ms()
            .saturating_add(u64::from(self.config.deadline_ms));
        loop {
            if ready() {
                return true;
            }
            if self.clock.now_ms() >= until {
                return false;
            }
            deadline::tick().await;
        }
    }

    /// The row of an event callback: seen within the deadline or not.
    fn record_event(&mut self, operation: &'static str, seen: bool, note: &str) {
        let completion = if seen {
            Completion::Completed(STATUS_SUCCESS)
        } else {
            Completion::NotCompleted(None)
        };
        let note = if seen {
            String::from(note)
        } else {
            format!("no callback within {} ms", self.config.deadline_ms)
        };
        self.table
            .add(operation, Api::Safe, completion, None, &note);
    }

    /// Closes a socket with a deadline, recording the row if `operation` is given; a close
    /// not completed marks the client stuck.
    async fn close(&mut self, operation: Option<&'static str>, close: wsk::Close) {
        let closed = self.bounded(close).await;
        if closed.is_none() {
            self.client_stuck = true;
        }
        if let Some(operation) = operation {
            self.record(operation, true, closed, |()| fine(String::new()));
        }
    }

    /// Receives exactly `expected.len()` bytes on `socket` and compares them.
    async fn receive_exactly(
        &mut self,
        operation: &'static str,
        socket: &ConnectionSocket,
        expected: &[u8],
    ) -> bool {
        let Ok(buf) = Buf::with_capacity(expected.len()) else {
            self.table.add(
                operation,
                Api::Safe,
                Completion::Completed(STATUS_INSUFFICIENT_RESOURCES),
                None,
                "",
            );
            return false;
        };
        let received = self
            .bounded(socket.receive_exact(buf, expected.len()))
            .await
            .map(|(result, buf)| result.map(|n| (n, buf)));
        self.record(operation, false, received, |(n, buf)| {
            if &buf[..] == expected {
                fine(format!("{n} bytes, as sent"))
            } else {
                wrong(format!("{n} bytes, not the {} sent", expected.len()))
            }
        })
        .is_some()
    }

    /// The connection-oriented operations: listen, bind, connect, accept, addresses, send,
    /// receive, vectored send, options, disconnect, close; and `WskSocketConnect` (raw)
    /// against the same listener.
    pub async fn connections(&mut self, raw: Option<&RawClient>) {
        const ROWS: &[&str] = &[
            "WskSocket(listen)",
            "WskBind(listen)",
            "WskGetLocalAddress(listen)",
            "WskSocket(connection)",
            "WskBind(connection)",
            "WskConnect",
            "WskAccept",
            "WskGetLocalAddress(connection)",
            "WskGetRemoteAddress",
            "WskSend",
            "WskReceive",
            "WskSend(vectored)",
            "WskReceive(vectored)",
            "WskControlSocket(set SO_RCVBUF)",
            "WskControlSocket(get SO_RCVBUF)",
            "raw WskSocketConnect",
            "raw WskCloseSocket(connection)",
            "WskDisconnect",
            "WskCloseSocket(connection)",
            "WskCloseSocket(listen)",
        ];
        let created = self
            .bounded(ListenSocket::create(self.client, AddressFamily::V4))
            .await;
        let Some(listener) =
            self.record("WskSocket(listen)", true, created, |_| fine(String::new()))
        else {
            return self.skip_rest(ROWS, "no listening socket");
        };
        let bound = self.local(0);
        let bind = self.bounded(listener.bind_to(bound)).await;
        if self
            .record("WskBind(listen)", false, bind, |()| {
                fine(format!("{bound}"))
            })
            .is_none()
        {
            self.close(None, listener.close()).await;
            return self.skip_rest(ROWS, "the listener is not bound");
        }
        let Some(server_address) = self
            .learn("WskGetLocalAddress(listen)", bound, listener.local_addr())
            .await
        else {
            self.close(None, listener.close()).await;
            return self.skip_rest(ROWS, "the listener's port is unknown (set ListenPort)");
        };

        let created = self
            .bounded(ConnectionSocket::create(self.client, AddressFamily::V4))
            .await;
        let Some(client) = self.record("WskSocket(connection)", true, created, |_| {
            fine(String::new())
        }) else {
            self.close(Some("WskCloseSocket(listen)"), listener.close())
                .await;
            return self.skip_rest(ROWS, "no connection socket");
        };
        let from = self.local(1);
        let bind = self.bounded(client.bind(from)).await;
        let connect = if self
            .record("WskBind(connection)", false, bind, |()| {
                fine(format!("{from}"))
            })
            .is_some()
        {
            let connect = self.bounded(client.connect(server_address)).await;
            self.record("WskConnect", false, connect, |()| {
                fine(format!("to {server_address}"))
            })
        } else {
            None
        };
        let accepted = if connect.is_some() {
            let accept = self.bounded(listener.accept()).await;
            self.record("WskAccept", false, accept, |(_, peer)| {
                if peer.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
                    fine(format!("from {peer}"))
                } else {
                    wrong(format!("from {peer}: expected 127.0.0.1"))
                }
            })
        } else {
            None
        };
        if let Some((server, _)) = accepted {
            self.exchange(&client, &server, from.port(), server_address)
                .await;
            self.close(None, server.close()).await;
        }
        self.socket_connect(raw, server_address);
        self.close(Some("WskCloseSocket(connection)"), client.close())
            .await;
        self.close(Some("WskCloseSocket(listen)"), listener.close())
            .await;
        self.skip_rest(ROWS, "the connection is not established");
    }

    /// Addresses, data both ways, options and the disconnect on an established connection.
    async fn exchange(
        &mut self,
        client: &ConnectionSocket,
        server: &ConnectionSocket,
        client_port: u16,
        server_address: SocketAddr,
    ) {
        let local = self.bounded(client.local_addr()).await;
        self.record("WskGetLocalAddress(connection)", false, local, |a| {
            check_local(a, client_port)
        });
        let remote = self.bounded(client.peer_addr()).await;
        self.record("WskGetRemoteAddress", false, remote, |a| {
            if *a == server_address {
                fine(format!("{a}"))
            } else {
                wrong(format!("{a}: expected {server_address}"))
            }
        });

        let message: &[u8] = b"wsk_probe: one buffer";
        if let Ok(buf) = Buf::from_slice(message) {
            let sent = self
                .bounded(client.send(buf))
                .await
                .map(|(result, _)| result);
            let sent = self.record("WskSend", false, sent, |&n| {
                if n == message.len() {
                    fine(format!("{n} bytes"))
                } else {
                    wrong(format!("{n} of {} bytes", message.len()))
                }
            });
            if sent.is_some() {
                self.receive_exactly("WskReceive", server, message).await;
            }
        }

        if self.config.implements("IoBuildPartialMdl") {
            let parts: [&[u8]; 3] = [b"wsk_probe: ", b"three ", b"buffers"];
            let mut list = BufList::new();
            let mut whole = Vec::new();
            for part in parts {
                whole.extend_from_slice(part);
                if let Ok(buf) = Buf::from_slice(part) {
                    let _ = list.push(buf);
                }
            }
            let sent = self
                .bounded(client.send_vectored(list))
                .await
                .map(|(result, _)| result);
            let sent = self.record("WskSend(vectored)", false, sent, |&n| {
                if n == whole.len() {
                    fine(format!("{n} bytes from 3 buffers"))
                } else {
                    wrong(format!("{n} of {} bytes", whole.len()))
                }
            });
            if sent.is_some() {
                self.receive_exactly("WskReceive(vectored)", server, &whole)
                    .await;
            }
        } else {
            // `BufList` describes its buffers with partial MDLs: on a kernel without the
            // routine (Wine 8.0 exports a stub) the call would end the driver.
            let why = "the kernel lacks IoBuildPartialMdl (a BufList's MDL chain)";
            self.table.skip("WskSend(vectored)", Api::Safe, why);
            self.table.skip("WskReceive(vectored)", Api::Safe, why);
        }

        let set = self.bounded(client.set_receive_buffer_size(65536)).await;
        self.record("WskControlSocket(set SO_RCVBUF)", false, set, |_| {
            fine(String::from("65536"))
        });
        let get = self.bounded(client.option(SOL_SOCKET, SO_RCVBUF)).await;
        self.record("WskControlSocket(get SO_RCVBUF)", false, get, |&v| {
            if v > 0 {
                fine(format!("{v}"))
            } else {
                wrong(format!("{v}"))
            }
        });

        let disconnect = self
            .bounded(client.disconnect())
            .await
            .map(|(result, _)| result);
        // A graceful disconnect: the peer reads the end of the stream.
        let end = if matches!(disconnect, Some(Ok(()))) {
            match Buf::with_capacity(16) {
                Ok(buf) => self
                    .bounded(server.receive(buf))
                    .await
                    .map(|(result, _)| result),
                Err(error) => Some(Err(error)),
            }
        } else {
            None
        };
        self.record("WskDisconnect", false, disconnect, |()| match end {
            Some(Ok(0)) => fine(String::from("the peer read the end of the stream")),
            Some(Ok(n)) => wrong(format!("the peer read {n} more bytes, not the end")),
            Some(Err(error)) => wrong(format!("the peer's receive failed: {error}")),
            None => wrong(String::from("the peer saw no end of the stream")),
        });
    }

    /// `WskSocketConnect` through the raw client, to the probe's listener, and the close of
    /// the socket it made.
    fn socket_connect(&mut self, raw: Option<&RawClient>, server: SocketAddr) {
        let Some(raw) = raw else {
            for operation in ["raw WskSocketConnect", "raw WskCloseSocket(connection)"] {
                self.table.skip(operation, Api::Raw, "no raw client");
            }
            return;
        };
        let Some(socket_connect) = raw.dispatch().WskSocketConnect else {
            self.table.skip(
                "raw WskSocketConnect",
                Api::Raw,
                "the provider's table has no WskSocketConnect",
            );
            return;
        };
        let client = raw.provider().Client;
        let arguments = Arguments {
            local: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            remote: Some(server),
            creates_socket: true,
            ..Arguments::default()
        };
        // SAFETY: the IRP goes to exactly one call; the addresses are the request's own; no
        // client context or dispatch (no event callbacks).
        let outcome = unsafe {
            raw::issue(self.config.deadline_ms, arguments, |irp, storage| {
                socket_connect(
                    client,
                    SOCK_STREAM,
                    IPPROTO_TCP,
                    storage.local,
                    storage.remote,
                    0,
                    core::ptr::null_mut(),
                    core::ptr::null(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            })
        };
        let socket = self.record_raw("raw WskSocketConnect", outcome, &format!("to {server}"));
        let socket = socket.map(|information| information as PWSK_SOCKET);
        match socket.filter(|s| !s.is_null()) {
            Some(socket) => self.raw_close("raw WskCloseSocket(connection)", socket),
            None => self.table.skip(
                "raw WskCloseSocket(connection)",
                Api::Raw,
                "WskSocketConnect made no socket",
            ),
        }
    }

    /// Records the row of a raw request; the information of a success.
    fn record_raw(
        &mut self,
        operation: &'static str,
        outcome: raw::Outcome,
        note: &str,
    ) -> Option<usize> {
        match outcome {
            raw::Outcome::Completed(status, information) => {
                self.table.add(
                    operation,
                    Api::Raw,
                    Completion::Completed(status),
                    None,
                    note,
                );
                NT_SUCCESS(status).then_some(information)
            }
            raw::Outcome::NotIssued(status) => {
                self.table.add(
                    operation,
                    Api::Raw,
                    Completion::Completed(status),
                    None,
                    "not issued: no IRP",
                );
                None
            }
            raw::Outcome::NotCompleted(returned) => {
                let note = format!(
                    "cancelled after {} ms, given up after {} more; IRP leaked",
                    self.config.deadline_ms,
                    raw::GRACE_MS
                );
                self.table.add(
                    operation,
                    Api::Raw,
                    Completion::NotCompleted(Some(returned)),
                    None,
                    &note,
                );
                None
            }
        }
    }

    /// Closes a raw socket (`WskCloseSocket`) with a deadline; a close given up leaves the
    /// raw client unable to deregister (recorded in `raw_stuck`).
    fn raw_close(&mut self, operation: &'static str, socket: PWSK_SOCKET) {
        // SAFETY: a socket the provider handed over, not closed yet; its dispatch begins with
        // the basic table.
        let close =
            unsafe { (*(*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>()).WskCloseSocket };
        let Some(close) = close else {
            self.raw_stuck = true;
            self.table.add(
                operation,
                Api::Raw,
                Completion::NotRun,
                Some("the socket's table has no WskCloseSocket"),
                "",
            );
            return;
        };
        // A close that could not be issued (no IRP) is tried again: the socket stays open
        // until one is, and WskDeregister would wait for it.
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            // SAFETY: the IRP goes to exactly one call.
            let outcome = unsafe {
                raw::issue(self.config.deadline_ms, Arguments::default(), |irp, _| {
                    close(socket, irp)
                })
            };
            if !matches!(outcome, raw::Outcome::NotIssued(_)) || attempts == 3 {
                break outcome;
            }
        };
        // Only a completed close has closed the socket (WskCloseSocket closes it whatever its
        // status).
        if !matches!(outcome, raw::Outcome::Completed(..)) {
            self.raw_stuck = true;
        }
        let note = if attempts > 1 {
            format!("{attempts} attempts")
        } else {
            String::new()
        };
        self.record_raw(operation, outcome, &note);
    }

    /// The event callbacks of listening and connection sockets: accept, receive, disconnect.
    pub async fn connection_events(&mut self) {
        const ROWS: &[&str] = &["event accept", "event receive", "event disconnect"];
        let seen = Arc::new(Seen::new());
        let bound = self.local(2);
        let listen = self
            .bounded(ListenSocket::bind_with_events(
                self.client,
                bound,
                Watch(Arc::clone(&seen)),
            ))
            .await;
        let listener = match listen {
            Some(Ok(listener)) => listener,
            None => {
                // Socket creation is a client-level request.
                self.client_stuck = true;
                return self.skip_rest(ROWS, "no listening socket with an accept handler");
            }
            Some(Err(_)) => {
                return self.skip_rest(ROWS, "no listening socket with an accept handler");
            }
        };
        let learnt = match self.bounded(listener.local_addr()).await {
            Some(Ok(address)) if bound.port() == 0 => Some(address),
            _ if bound.port() != 0 => Some(bound),
            _ => None,
        };
        let Some(server_address) = learnt else {
            self.close(None, listener.close()).await;
            return self.skip_rest(ROWS, "the listener's port is unknown (set ListenPort)");
        };
        let client = match self
            .bounded(ConnectionSocket::create(self.client, AddressFamily::V4))
            .await
        {
            Some(Ok(socket)) => socket,
            None => {
                self.client_stuck = true;
                self.close(None, listener.close()).await;
                return self.skip_rest(ROWS, "no connection socket");
            }
            Some(Err(_)) => {
                self.close(None, listener.close()).await;
                return self.skip_rest(ROWS, "no connection socket");
            }
        };
        let from = self.local(3);
        let connected = matches!(self.bounded(client.bind(from)).await, Some(Ok(())))
            && matches!(
                self.bounded(client.connect(server_address)).await,
                Some(Ok(()))
            );
        if !connected {
            self.close(None, client.close()).await;
            self.close(None, listener.close()).await;
            return self.skip_rest(ROWS, "the connection is not established");
        }
        let accepted = self
            .wait_until(|| seen.accepts.load(Ordering::Acquire) > 0)
            .await;
        let status = seen.accept_status.load(Ordering::Acquire);
        if accepted && !NT_SUCCESS(status) {
            // Called, but the connection could not be taken (memory was short here).
            self.table.add(
                "event accept",
                Api::Safe,
                Completion::Completed(status),
                None,
                "the callback could not take the connection",
            );
        } else {
            self.record_event("event accept", accepted, &format!("on {server_address}"));
        }
        let server = seen.accepted.lock().take();
        if let Some(server) = server {
            let handler = Watch(Arc::clone(&seen));
            if let Err(error) = server.set_events(handler) {
                self.table.add(
                    "event receive",
                    Api::Safe,
                    Completion::Completed(error.status()),
                    None,
                    "SO_WSK_EVENT_CALLBACK refused",
                );
            } else {
                let sent = match Buf::from_slice(b"wsk_probe: event") {
                    Ok(buf) => matches!(self.bounded(client.send(buf)).await, Some((Ok(_), _))),
                    Err(_) => false,
                };
                if sent {
                    let received = self
                        .wait_until(|| seen.received.load(Ordering::Acquire) >= 16)
                        .await;
                    let count = seen.received.load(Ordering::Acquire);
                    self.record_event("event receive", received, &format!("{count} bytes"));
                }
                // Closing the client ends the connection: the server is told.
                self.close(None, client.close()).await;
                let disconnected = self
                    .wait_until(|| seen.disconnected.load(Ordering::Acquire))
                    .await;
                self.record_event("event disconnect", disconnected, "the peer closed");
                self.skip_rest(ROWS, "the probe could not send");
                self.close(None, server.close()).await;
                self.close(None, listener.close()).await;
                return;
            }
            self.close(None, server.close()).await;
        }
        self.skip_rest(ROWS, "no accepted connection");
        self.close(None, client.close()).await;
        self.close(None, listener.close()).await;
    }

    /// Datagram sockets: bind, local address, send_to, receive_from, the receive-from event.
    pub async fn datagrams(&mut self) {
        const ROWS: &[&str] = &[
            "WskSocket+WskBind(datagram)",
            "WskGetLocalAddress(datagram)",
            "WskSendTo",
            "WskReceiveFrom",
            "event receive-from",
            "WskCloseSocket(datagram)",
        ];
        let bound = self.local(4);
        let created = self.bounded(self.client.bind_datagram(bound)).await;
        let Some(sender) = self.record("WskSocket+WskBind(datagram)", true, created, |_| {
            fine(format!("{bound}"))
        }) else {
            return self.skip_rest(ROWS, "no datagram socket");
        };
        let sender_address = self
            .learn("WskGetLocalAddress(datagram)", bound, sender.local_addr())
            .await;
        // The receiver: ephemeral port (its address comes from WskGetLocalAddress), or the
        // next fixed one.
        let receiver_bound = self.local(5);
        let receiver = match self
            .bounded(self.client.bind_datagram(receiver_bound))
            .await
        {
            Some(Ok(socket)) => Some(socket),
            None => {
                self.client_stuck = true;
                None
            }
            Some(Err(_)) => None,
        };
        let receiver_address = match &receiver {
            Some(receiver) if receiver_bound.port() == 0 => {
                match self.bounded(receiver.local_addr()).await {
                    Some(Ok(address)) => Some(address),
                    _ => None,
                }
            }
            Some(_) => Some(receiver_bound),
            None => None,
        };
        if let (Some(receiver), Some(to)) = (&receiver, receiver_address) {
            let message: &[u8] = b"wsk_probe: datagram";
            if let Ok(buf) = Buf::from_slice(message) {
                let sent = self
                    .bounded(sender.send_to(buf, to))
                    .await
                    .map(|(result, _)| result);
                let sent = self.record("WskSendTo", false, sent, |&n| {
                    if n == message.len() {
                        fine(format!("{n} bytes to {to}"))
                    } else {
                        wrong(format!("{n} of {} bytes", message.len()))
                    }
                });
                if sent.is_some() {
                    let received = match Buf::with_capacity(64) {
                        Ok(buf) => self
                            .bounded(receiver.receive_from(buf))
                            .await
                            .map(|(result, buf)| result.map(|r| (r, buf))),
                        Err(error) => Some(Err(error)),
                    };
                    self.record("WskReceiveFrom", false, received, |((n, source), buf)| {
                        if &buf[..] != message {
                            wrong(format!("{n} bytes, not the datagram sent"))
                        } else if sender_address.is_some_and(|a| a != *source) {
                            wrong(format!("from {source}, not from the sender"))
                        } else {
                            fine(format!("{n} bytes from {source}"))
                        }
                    });
                }
            }
        }
        if let Some(receiver) = receiver {
            self.close(None, receiver.close()).await;
        }
        self.receive_from_event(&sender).await;
        self.close(Some("WskCloseSocket(datagram)"), sender.close())
            .await;
        self.skip_rest(ROWS, "no second datagram socket, or its address is unknown");
    }

    /// The receive-from event: a datagram socket with a handler, sent to by `sender`.
    async fn receive_from_event(&mut self, sender: &DatagramSocket) {
        let seen = Arc::new(Seen::new());
        let bound = self.local(6);
        let created = self
            .bounded(DatagramSocket::bind_with_events(
                self.client,
                bound,
                Watch(Arc::clone(&seen)),
            ))
            .await;
        let watched = match created {
            Some(Ok(socket)) => socket,
            None => {
                self.client_stuck = true;
                return;
            }
            Some(Err(_)) => return,
        };
        let address = if bound.port() == 0 {
            match self.bounded(watched.local_addr()).await {
                Some(Ok(address)) => Some(address),
                _ => None,
            }
        } else {
            Some(bound)
        };
        if let Some(address) = address {
            let message: &[u8] = b"wsk_probe: event datagram";
            if let Ok(buf) = Buf::from_slice(message) {
                if let Some((Ok(_), _)) = self.bounded(sender.send_to(buf, address)).await {
                    let seen_it = self
                        .wait_until(|| seen.received_from.load(Ordering::Acquire) >= message.len())
                        .await;
                    let count = seen.received_from.load(Ordering::Acquire);
                    self.record_event("event receive-from", seen_it, &format!("{count} bytes"));
                }
            }
        }
        self.close(None, watched.close()).await;
    }

    /// Stream sockets (Windows 10 1703): create, bind, listen, local address, accept.
    pub async fn streams(&mut self) {
        const ROWS: &[&str] = &[
            "WskSocket(stream)",
            "WskBind(stream)",
            "WskListen",
            "WskGetLocalAddress(stream)",
            "WskAccept(stream)",
            "WskCloseSocket(stream)",
        ];
        if !self.client.supports(Feature::StreamSockets) {
            return self.skip_rest(ROWS, "stream sockets need Windows 10 1703");
        }
        let created = self
            .bounded(StreamSocket::create(self.client, AddressFamily::V4))
            .await;
        let Some(stream) = self.record("WskSocket(stream)", true, created, |_| fine(String::new()))
        else {
            return self.skip_rest(ROWS, "no stream socket");
        };
        let bound = self.local(7);
        let bind = self.bounded(stream.bind(bound)).await;
        let listening = self
            .record("WskBind(stream)", false, bind, |()| {
                fine(format!("{bound}"))
            })
            .is_some()
            && {
                let listen = self.bounded(stream.listen()).await;
                self.record("WskListen", false, listen, |()| fine(String::new()))
                    .is_some()
            };
        let address = if listening {
            self.learn("WskGetLocalAddress(stream)", bound, stream.local_addr())
                .await
        } else {
            None
        };
        if let Some(address) = address {
            let client = match self
                .bounded(ConnectionSocket::create(self.client, AddressFamily::V4))
                .await
            {
                Some(Ok(socket)) => Some(socket),
                None => {
                    self.client_stuck = true;
                    None
                }
                Some(Err(_)) => None,
            };
            if let Some(client) = client {
                let from = self.local(8);
                let connected = matches!(self.bounded(client.bind(from)).await, Some(Ok(())))
                    && matches!(self.bounded(client.connect(address)).await, Some(Ok(())));
                if connected {
                    let accept = self.bounded(stream.accept()).await;
                    if let Some((server, _)) =
                        self.record("WskAccept(stream)", false, accept, |(_, peer)| {
                            fine(format!("from {peer}"))
                        })
                    {
                        self.close(None, server.close()).await;
                    }
                }
                self.close(None, client.close()).await;
            }
        }
        self.close(Some("WskCloseSocket(stream)"), stream.close())
            .await;
        self.skip_rest(
            ROWS,
            "the stream socket is not listening, or its port is unknown",
        );
    }

    /// Name resolution (Windows 7): a name and a numeric address.
    pub async fn names(&mut self) {
        const ROWS: &[&str] = &[
            "WskGetAddressInfo(localhost)",
            "WskGetAddressInfo(127.0.0.1)",
        ];
        if !self.client.supports(Feature::NameResolution) {
            return self.skip_rest(ROWS, "name resolution needs Windows 7");
        }
        let resolved = self.bounded(self.client.resolve("localhost", 80)).await;
        self.record(
            "WskGetAddressInfo(localhost)",
            true,
            resolved,
            |addresses| {
                let loopback = addresses
                    .iter()
                    .any(|a| a.ip().is_loopback() && a.port() == 80);
                if loopback {
                    fine(format!(
                        "{} addresses, loopback among them",
                        addresses.len()
                    ))
                } else {
                    wrong(format!("{} addresses, no loopback one", addresses.len()))
                }
            },
        );
        let resolved = self.bounded(self.client.resolve("127.0.0.1", 7)).await;
        self.record(
            "WskGetAddressInfo(127.0.0.1)",
            true,
            resolved,
            |addresses| {
                let expected = SocketAddr::from((Ipv4Addr::LOCALHOST, 7));
                if addresses.first() == Some(&expected) {
                    fine(format!("{expected}"))
                } else {
                    wrong(format!("{addresses:?}: expected [{expected}]"))
                }
            },
        );
    }

    /// A basic socket (no safe wrapper): create, an option read, close; raw.
    pub fn basic(&mut self, raw: Option<&RawClient>) {
        const ROWS: &[&str] = &[
            "raw WskSocket(basic)",
            "raw WskControlSocket(basic, get SO_RCVBUF)",
            "raw WskCloseSocket(basic)",
        ];
        let Some(raw) = raw else {
            return self.skip_rest(ROWS, "no raw client");
        };
        let Some(socket_call) = raw.dispatch().WskSocket else {
            return self.skip_rest(ROWS, "the provider's table has no WskSocket");
        };
        let client = raw.provider().Client;
        let arguments = Arguments {
            creates_socket: true,
            ..Arguments::default()
        };
        // SAFETY: the IRP goes to exactly one call; no context, dispatch or security
        // descriptor.
        let outcome = unsafe {
            raw::issue(self.config.deadline_ms, arguments, |irp, _| {
                socket_call(
                    client,
                    AF_INET,
                    SOCK_STREAM,
                    IPPROTO_TCP,
                    WSK_FLAG_BASIC_SOCKET,
                    core::ptr::null_mut(),
                    core::ptr::null(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            })
        };
        let socket = self
            .record_raw("raw WskSocket(basic)", outcome, "")
            .map(|information| information as PWSK_SOCKET)
            .filter(|s| !s.is_null());
        let Some(socket) = socket else {
            return self.skip_rest(ROWS, "no basic socket");
        };
        // SAFETY: a socket the provider handed over; its dispatch is the basic table.
        let control =
            unsafe { (*(*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>()).WskControlSocket };
        if let Some(control) = control {
            // SAFETY: the IRP goes to exactly one call; the output is the request's own
            // 4-byte value; the size returned is written by the provider only for
            // IRP-less requests, so none is given.
            let outcome = unsafe {
                raw::issue(
                    self.config.deadline_ms,
                    Arguments::default(),
                    |irp, storage| {
                        control(
                            socket,
                            WskGetOption,
                            SO_RCVBUF,
                            SOL_SOCKET,
                            0,
                            core::ptr::null_mut(),
                            4,
                            storage.value.cast(),
                            core::ptr::null_mut(),
                            irp,
                        )
                    },
                )
            };
            self.record_raw("raw WskControlSocket(basic, get SO_RCVBUF)", outcome, "");
        }
        self.raw_close("raw WskCloseSocket(basic)", socket);
        self.skip_rest(ROWS, "the socket's table has no WskControlSocket");
    }

    /// The external peer, if one is configured: connect and send a line.
    pub async fn peer(&mut self) {
        const ROWS: &[&str] = &["peer WskConnect", "peer WskSend"];
        let Some(peer) = self.config.peer else {
            return;
        };
        let family = AddressFamily::of(&peer);
        let socket = match self
            .bounded(ConnectionSocket::create(self.client, family))
            .await
        {
            Some(Ok(socket)) => socket,
            None => {
                self.client_stuck = true;
                return self.skip_rest(ROWS, "no connection socket");
            }
            Some(Err(_)) => return self.skip_rest(ROWS, "no connection socket"),
        };
        let connected = if let Some(Ok(())) = self.bounded(socket.bind(family.unspecified())).await
        {
            let connect = self.bounded(socket.connect(peer)).await;
            self.record("peer WskConnect", false, connect, |()| {
                fine(format!("to {peer}"))
            })
            .is_some()
        } else {
            false
        };
        if connected {
            if let Ok(buf) = Buf::from_slice(PEER_MESSAGE) {
                let sent = self
                    .bounded(socket.send_all(buf))
                    .await
                    .map(|(result, _)| result);
                self.record("peer WskSend", false, sent, |()| {
                    fine(format!("{} bytes", PEER_MESSAGE.len()))
                });
            }
        }
        self.skip_rest(ROWS, "not connected to the peer");
        self.close(None, socket.close()).await;
    }
}
