//! The end-to-end figure of issue 13: one TCP echo server written with `wsk` against the same
//! server written raw in `wsk-sys`, under the same load — `C` std clients over loopback, each
//! sending `B` bytes of its own pseudo-random stream and checking every byte of the echo
//! (the clients of `wsk-host/tests/common/clients.rs`, shared with wsk-host's echo test and
//! benchmark).
//!
//! - raw: the design of `wsk-host/tests/common/echo.rs` — per accepted connection one IRP
//!   and one 16 KiB non-paged buffer with its MDL, allocated once; a chain of completion
//!   routines (receive, send back what came, receive again; on end of stream a graceful
//!   disconnect, then the close) with a request that completes inline continued by the loop
//!   that issued it. Accepts are made by the measuring thread.
//! - wsk: the design of `wsk-examples/echo-server` — a [`TaskSet`]: an accept task that
//!   spawns a task per connection, which receives into one 16 KiB [`Buf`] and `send_all`s
//!   it back, then disconnects and closes. Tasks run in the completion routines of their
//!   requests.
//!
//! Both get a fresh `wsk-host` session per round with the same fixed completion mode.
//!
//! - `wsk-bench echo time [--mode M] [--connections C] [--bytes B] [--rounds R]`: the
//!   throughput of each, rounds alternating (a warm-up round of each first), the median per
//!   side; prints one line per round on stderr and `echo-throughput RAW WSK` (MiB/s) on
//!   stdout for `cargo xtask bench --echo`.
//! - `wsk-bench echo count raw|wsk [--mode M] [--connections C] [--bytes B]`: one round, for
//!   callgrind (`cargo xtask bench --echo` runs it with `B` and `2B` and differences).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::ptr::null_mut;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsk::task::TaskSet;
use wsk::{Buf, ConnectionSocket, Error, ListenSocket, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Session};
use wsk_sys::*;

use crate::raw::{self, RawBuf, RawClient, RawIo};
use crate::{mode_name, parse_mode};

#[path = "../../wsk-host/tests/common/clients.rs"]
mod clients;

use clients::Clients;

/// The clients of a round: threads of this process, or a child process
/// (`wsk-bench echo clients ADDRESS C B`).
enum Running {
    Threads(Clients),
    Process(Child),
}

impl Running {
    fn start(address: SocketAddr, load: Load) -> Running {
        if !load.clients_apart {
            return Running::Threads(Clients::start(
                address,
                load.connections,
                load.bytes,
                DEADLINE,
            ));
        }
        let child = Command::new(std::env::current_exe().expect("the benchmark's path"))
            .args(["echo", "clients"])
            .arg(address.to_string())
            .arg(load.connections.to_string())
            .arg(load.bytes.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("the clients' process");
        Running::Process(child)
    }

    /// Waits for the clients (the child: within the deadline); the bytes verified.
    fn join(self, load: Load) -> u64 {
        match self {
            Running::Threads(clients) => clients.join(),
            Running::Process(mut child) => {
                let deadline = Instant::now() + DEADLINE + Duration::from_secs(10);
                loop {
                    if let Some(status) = child.try_wait().expect("the clients' process") {
                        assert!(status.success(), "the clients failed: {status}");
                        // The child checked every byte of every connection.
                        return load.total();
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("the clients did not finish in time");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// The receive buffer of a connection, on both sides (as in the example driver).
const BUFFER_SIZE: usize = 16 * 1024;
/// Every wait of a round (clients' reads, accepts, the end of the connections).
const DEADLINE: Duration = Duration::from_secs(120);
/// The fault plan's seed (no draw is made with a fixed completion mode).
const SEED: u64 = 0x4543_484f_4245_4e43;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Raw,
    Wsk,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Raw => "raw",
            Side::Wsk => "wsk",
        }
    }
}

/// The load of one round and the provider's completion mode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    connections: usize,
    bytes: usize,
    mode: CompletionMode,
    /// Whether the clients run in a child process (under callgrind: their instructions,
    /// which check every byte, are then not counted with the server's).
    clients_apart: bool,
}

impl Load {
    fn total(&self) -> u64 {
        (self.connections * self.bytes) as u64
    }
}

/// One round: a fresh session, the server, the clients; every byte checked (by the clients,
/// and by the server's count per connection); the session must end with nothing leaked.
/// Returns the time from the clients' start to the last byte verified, and the session's
/// report.
fn round(side: Side, load: Load) -> (Duration, wsk_host::Report) {
    let session = Session::start();
    session.set_faults(FaultPlan::new(SEED).completion(load.mode));
    let elapsed = match side {
        Side::Raw => raw_round(load),
        Side::Wsk => wsk_round(&session, load),
    };
    let report = session.finish();
    assert_eq!(report.bytes_received, load.total(), "{report:?}");
    assert_eq!(report.bytes_sent, load.total(), "{report:?}");
    (elapsed, report)
}

// ---------------------------------------------------------------------------------------
// wsk: the example's design.
// ---------------------------------------------------------------------------------------

/// What an echo task reports at its end: its result and the bytes it sent back.
type Outcome = (Result<(), Error>, u64);

/// Echoes one connection until the peer closes its side (or an error), then disconnects
/// and closes; reports to `done`.
async fn echo(socket: ConnectionSocket, done: mpsc::Sender<Outcome>) {
    let mut buf = match Buf::with_capacity(BUFFER_SIZE) {
        Ok(buf) => buf,
        Err(error) => {
            let _ = done.send((Err(error), 0));
            return;
        }
    };
    let mut echoed = 0u64;
    let outcome = loop {
        buf.clear();
        let (received, back) = socket.receive(buf).await;
        buf = back;
        let n = match received {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(error) => break Err(error),
        };
        let (sent, back) = socket.send_all(buf).await;
        buf = back;
        if let Err(error) = sent {
            break Err(error);
        }
        echoed += n as u64;
    };
    let outcome = match outcome {
        Ok(()) => match socket.disconnect().await.0 {
            Ok(()) => socket.close().await,
            Err(error) => {
                let _ = socket.close().await;
                Err(error)
            }
        },
        Err(error) => {
            let _ = socket.close().await;
            Err(error)
        }
    };
    let _ = done.send((outcome, echoed));
}

/// Accepts `count` connections and starts an echo task for each; then closes the listener.
async fn serve(
    listener: ListenSocket,
    count: usize,
    tasks: Arc<TaskSet>,
    done: mpsc::Sender<Outcome>,
) {
    for _ in 0..count {
        match listener.accept().await {
            Ok((socket, _peer)) => {
                if let Err(error) = tasks.spawn(echo(socket, done.clone())) {
                    let _ = done.send((Err(error), 0));
                }
            }
            Err(error) => {
                let _ = done.send((Err(error), 0));
            }
        }
    }
    let _ = listener.close().await;
}

fn wsk_round(session: &Session, load: Load) -> Duration {
    // SAFETY: the session's own driver object, valid until the session ends.
    let driver = unsafe { wsk::DriverObject::from_raw(session.driver_object()) }
        .expect("a session has a driver object");
    let client = WskClient::register(driver).unwrap();
    let tasks = Arc::new(TaskSet::new(driver).unwrap());
    let listener = client
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .wait()
        .unwrap();
    let address = listener.local_addr().wait().unwrap();
    let (done, outcomes) = mpsc::channel();
    let deadline = Instant::now() + DEADLINE;

    let started = Instant::now();
    let clients = Running::start(address, load);
    tasks
        .spawn(serve(listener, load.connections, Arc::clone(&tasks), done))
        .unwrap();
    let verified = clients.join(load);
    let elapsed = started.elapsed();

    assert_eq!(verified, load.total());
    for index in 0..load.connections {
        let left = deadline.saturating_duration_since(Instant::now());
        let (result, echoed) = outcomes
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("wsk echo: connection {index} did not finish: {e}"));
        result.unwrap_or_else(|e| panic!("wsk echo: a connection failed: {e}"));
        assert_eq!(echoed, load.bytes as u64);
    }
    // Every task has reported; each retires once its last poll returns.
    while !tasks.is_empty() {
        assert!(Instant::now() < deadline, "wsk echo: tasks did not retire");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(tasks);
    client.shutdown().unwrap();
    elapsed
}

// ---------------------------------------------------------------------------------------
// raw: the design of wsk-host/tests/common/echo.rs.
// ---------------------------------------------------------------------------------------

/// The request a connection has in flight.
#[derive(Clone, Copy, Debug)]
enum Step {
    Receive,
    /// Sending `buffer[offset..end]` back.
    Send {
        offset: usize,
        end: usize,
    },
    Disconnect,
    Close,
}

/// Who continues after a request: its issuer (completed inline) or its completion routine
/// (it went pending). Values of `Connection::issue`.
const ISSUING: u8 = 0;
const WAITING: u8 = 1;
const COMPLETED_INLINE: u8 = 2;

/// One accepted connection, driven by the issuing loop, then by the completion routine of the
/// request in flight: only the one that owns the IRP touches the non-atomic fields.
struct Connection {
    socket: PWSK_SOCKET,
    irp: PIRP,
    buffer: RawBuf,
    /// The `WSK_BUF` of the request in flight (it must live until the completion).
    wsk_buf: WSK_BUF,
    in_flight: Step,
    issue: AtomicU8,
    echoed: u64,
    /// The first failure, or `STATUS_SUCCESS`.
    failure: NTSTATUS,
    /// Signalled when the close has completed; the connection is the waiter's afterwards.
    done: KEVENT,
}

fn raw_round(load: Load) -> Duration {
    let client = RawClient::register();
    let mut io = RawIo::new();
    let listener = client.bound_socket(
        &mut io,
        WSK_FLAG_LISTEN_SOCKET,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    // SAFETY: a bound listening socket; the IRP is not in flight.
    let address = unsafe { raw::local_address(listener, &mut io, false) };
    let deadline = Instant::now() + DEADLINE;

    let started = Instant::now();
    let clients = Running::start(address, load);
    let mut connections = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        // SAFETY: the listening socket is open; the IRP is not in flight.
        let socket = unsafe { raw_accept(listener, &mut io, deadline) };
        // SAFETY: a plain allocation at PASSIVE_LEVEL.
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        assert!(!irp.is_null(), "an IRP for the connection");
        let buffer = RawBuf::new(BUFFER_SIZE);
        let connection = Box::into_raw(Box::new(Connection {
            socket,
            irp,
            wsk_buf: buffer.wsk_buf_range(0, 0),
            buffer,
            in_flight: Step::Receive,
            issue: AtomicU8::new(ISSUING),
            echoed: 0,
            failure: STATUS_SUCCESS,
            done: KEVENT::default(),
        }));
        // SAFETY: the connection was just made and is not shared yet; the event is
        // initialized before any request can signal it.
        unsafe {
            KeInitializeEvent(&raw mut (*connection).done, NotificationEvent, FALSE);
            connections.push(connection);
            run(connection, Step::Receive);
        }
    }
    let verified = clients.join(load);
    let elapsed = started.elapsed();

    assert_eq!(verified, load.total());
    for (index, &connection) in connections.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        // Relative timeouts are negative, in 100 ns units.
        let mut relative = LARGE_INTEGER {
            QuadPart: -i64::try_from(left.as_nanos() / 100).unwrap_or(i64::MAX),
        };
        // SAFETY: the connection is alive (freed below, after its chain ended); waiting on
        // its event at PASSIVE_LEVEL.
        let status = unsafe {
            KeWaitForSingleObject(
                (&raw mut (*connection).done).cast(),
                Executive,
                KernelMode,
                FALSE,
                &mut relative,
            )
        };
        // On a timeout the process ends here, the connection left alone (its IRP may still
        // be in flight).
        assert_eq!(
            status, STATUS_SUCCESS,
            "raw echo: connection {index} did not finish"
        );
        // SAFETY: after `done`, the chain has ended: the connection is ours, its socket
        // closed and its IRP completed; freed once.
        unsafe {
            assert_eq!((*connection).failure, STATUS_SUCCESS, "connection {index}");
            assert_eq!(
                (*connection).echoed,
                load.bytes as u64,
                "connection {index}"
            );
            IoFreeIrp((*connection).irp);
            drop(Box::from_raw(connection));
        }
    }
    // SAFETY: the listening socket is open with nothing in flight; not used afterwards.
    unsafe { raw::close(listener, &mut io) };
    drop(io);
    drop(client);
    elapsed
}

/// `WskAccept`, waited for with a deadline: the accepted socket.
///
/// # Safety
/// `listener` is an open listening socket; the IRP of `io` is not in flight.
unsafe fn raw_accept(listener: PWSK_SOCKET, io: &mut RawIo, deadline: Instant) -> PWSK_SOCKET {
    // SAFETY: as the caller guarantees; no addresses asked for.
    unsafe {
        let irp = io.arm();
        let dispatch = (*listener).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>();
        ((*dispatch).WskAccept.unwrap())(
            listener,
            0,
            null_mut(),
            std::ptr::null(),
            null_mut(),
            null_mut(),
            irp,
        );
    }
    let (status, information) = io.wait_within(deadline.saturating_duration_since(Instant::now()));
    assert!(NT_SUCCESS(status), "WskAccept: {status:#010x}");
    information as PWSK_SOCKET
}

/// Issues `next` and every request after it whose predecessor completed inline; returns once
/// a request is pending (its completion routine continues) or the chain has ended.
///
/// # Safety
/// `connection` is live and the caller owns its IRP (nothing in flight). IRQL <=
/// DISPATCH_LEVEL.
unsafe fn run(connection: *mut Connection, mut next: Step) {
    loop {
        // SAFETY: the caller owns the IRP, so nothing else touches the connection until the
        // request is issued; the `WSK_BUF` stays in the connection until the completion.
        unsafe {
            let irp = (*connection).irp;
            let socket = (*connection).socket;
            (*connection).in_flight = next;
            IoReuseIrp(irp, STATUS_UNSUCCESSFUL);
            IoSetCompletionRoutine(irp, Some(completed), connection.cast(), true, true, true);
            (*connection).issue.store(ISSUING, Ordering::Release);
            let dispatch = &*(*socket)
                .Dispatch
                .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
            let wsk_buf = &raw mut (*connection).wsk_buf;
            match next {
                Step::Receive => {
                    *wsk_buf = (*connection)
                        .buffer
                        .wsk_buf_range(0, (*connection).buffer.len());
                    (dispatch.WskReceive.unwrap())(socket, wsk_buf, 0, irp);
                }
                Step::Send { offset, end } => {
                    *wsk_buf = (*connection).buffer.wsk_buf_range(offset, end - offset);
                    (dispatch.WskSend.unwrap())(socket, wsk_buf, 0, irp);
                }
                Step::Disconnect => {
                    (dispatch.WskDisconnect.unwrap())(socket, null_mut(), 0, irp);
                }
                Step::Close => {
                    (dispatch.Basic.WskCloseSocket.unwrap())(socket, irp);
                }
            }
        }
        // SAFETY: `issue` is atomic and the connection alive: it is freed only after its
        // chain ends, which needs this loop or the completion routine to get past here.
        let issue = unsafe { &(*connection).issue };
        if issue
            .compare_exchange(ISSUING, WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Pending: the completion routine continues the chain.
            return;
        }
        // SAFETY: completed inline: the completion routine left the IRP to this loop.
        match unsafe { after(connection) } {
            Some(step) => next = step,
            None => return,
        }
    }
}

/// The completion routine of every request of a connection.
unsafe extern "system" fn completed(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    let connection = context.cast::<Connection>();
    // SAFETY: the context is the live connection whose IRP this is.
    let issue = unsafe { &(*connection).issue };
    if issue
        .compare_exchange(
            ISSUING,
            COMPLETED_INLINE,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // The issuer has returned: this routine owns the IRP and continues the chain.
        // SAFETY: the request is complete and its IRP this routine's.
        unsafe {
            if let Some(step) = after(connection) {
                run(connection, step);
            }
        }
    }
    // The IRP is the driver's: the I/O manager must not touch it again.
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Reads the result of the request in flight; the next step, or `None` once the close has
/// completed (then `done` is signalled and the connection must not be touched).
///
/// # Safety
/// The request in flight has completed and the caller owns the IRP.
unsafe fn after(connection: *mut Connection) -> Option<Step> {
    // SAFETY: the caller owns the completed IRP and so the connection's fields.
    unsafe {
        let irp = (*connection).irp;
        let status = (*irp).IoStatus.u.Status;
        let information = (*irp).IoStatus.Information as usize;
        let failed = |connection: *mut Connection| {
            if (*connection).failure == STATUS_SUCCESS {
                (*connection).failure = status;
            }
            Some(Step::Close)
        };
        match (*connection).in_flight {
            Step::Receive if !NT_SUCCESS(status) => failed(connection),
            // The peer's end of stream: everything it sent has been echoed.
            Step::Receive if information == 0 => Some(Step::Disconnect),
            Step::Receive => Some(Step::Send {
                offset: 0,
                end: information,
            }),
            Step::Send { .. } if !NT_SUCCESS(status) => failed(connection),
            // A successful send moves at least a byte; anything else would loop forever.
            Step::Send { .. } if information == 0 => {
                (*connection).failure = STATUS_UNSUCCESSFUL;
                Some(Step::Close)
            }
            Step::Send { offset, end } => {
                (*connection).echoed += information as u64;
                let offset = offset + information;
                if offset < end {
                    Some(Step::Send { offset, end })
                } else {
                    Some(Step::Receive)
                }
            }
            Step::Disconnect if !NT_SUCCESS(status) => failed(connection),
            Step::Disconnect => Some(Step::Close),
            Step::Close => {
                KeSetEvent(&raw mut (*connection).done, 0, FALSE);
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The command.
// ---------------------------------------------------------------------------------------

fn mib_per_second(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / time.as_secs_f64()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `wsk-bench echo time|count ...` (see the module documentation).
pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let usage = "echo time [--mode M] [--connections C] [--bytes B] [--rounds R] | \
                 echo count raw|wsk [--mode M] [--connections C] [--bytes B]";
    let (what, mut rest) = match args.first().map(String::as_str) {
        Some("time") => ("time", &args[1..]),
        Some("count") => ("count", &args[1..]),
        Some("clients") => {
            let [address, connections, bytes] = &args[1..] else {
                return Err("echo clients ADDRESS CONNECTIONS BYTES".into());
            };
            let address = address.parse().map_err(|_| "echo clients: an address")?;
            let connections = connections.parse().map_err(|_| "echo clients: a number")?;
            let bytes = bytes.parse().map_err(|_| "echo clients: a number")?;
            let verified = Clients::start(address, connections, bytes, DEADLINE).join();
            assert_eq!(verified, (connections * bytes) as u64);
            return Ok(());
        }
        _ => return Err(usage.into()),
    };
    let mut side = None;
    if what == "count" {
        side = Some(match rest.first().map(String::as_str) {
            Some("raw") => Side::Raw,
            Some("wsk") => Side::Wsk,
            _ => return Err(usage.into()),
        });
        rest = &rest[1..];
    }
    let mut load = Load {
        connections: 64,
        bytes: 1 << 20,
        mode: CompletionMode::AlwaysInline,
        clients_apart: what == "count",
    };
    let mut rounds = 5usize;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} takes a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{arg}: a number"))
        };
        match arg.as_str() {
            "--mode" => {
                load.mode = parse_mode(value).ok_or("--mode: inline or pending")?;
            }
            "--connections" => load.connections = number()?.max(1),
            "--bytes" => load.bytes = number()?.max(1),
            "--rounds" => rounds = number()?.max(1),
            _ => return Err(usage.into()),
        }
    }
    if let Some(side) = side {
        let (_, report) = round(side, load);
        // The requests the provider completed (the server's and the set-up's): how many
        // bytes each moved depends on timing, so the count goes with the instructions.
        println!(
            "echo-requests {}",
            report.completed_inline + report.completed_pending
        );
        return Ok(());
    }
    eprintln!(
        "echo: {} connections x {} KiB, {} completion, {rounds} rounds of each (after one warm-up round of each)",
        load.connections,
        load.bytes / 1024,
        mode_name(load.mode)
    );
    round(Side::Raw, load);
    round(Side::Wsk, load);
    let mut times = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        // Alternating, the side that starts alternating too.
        let order = if r % 2 == 0 {
            [Side::Raw, Side::Wsk]
        } else {
            [Side::Wsk, Side::Raw]
        };
        for side in order {
            let (time, _) = round(side, load);
            eprintln!(
                "echo: round {r} {}: {time:?} ({:.1} MiB/s)",
                side.name(),
                mib_per_second(load.total(), time)
            );
            times[side as usize].push(time);
        }
    }
    let [raw, wsk] = times.map(median);
    println!(
        "echo-throughput {:.3} {:.3}",
        mib_per_second(load.total(), raw),
        mib_per_second(load.total(), wsk)
    );
    Ok(())
}
