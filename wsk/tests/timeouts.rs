//! Deadlines on operations (`Op::timeout`) and sleeps (`WskClient::sleep`) on wsk-host, with
//! real loopback sockets: timed out with the buffer back, completion before the deadline,
//! drops and `mem::forget` with a timer set, the client dropped under a timed operation or a
//! sleep, deadlines set inside tasks and completion routines, sleeps in order, and no
//! allocation added per operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wsk::task::{TaskSet, block_on};
use wsk::{Buf, Deadline, Error, WskClient};
use wsk_host::{FaultPlan, Rule, Session};

mod common;
use common::{connected, driver};

/// Counts the allocations of the calling thread (the provider's threads are not counted).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local `Cell`, which
// allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `f` on another thread and fails the test if it takes longer than 10 s.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} did not return within 10 s"))
}

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(future).poll(&mut cx)
}

#[test]
fn a_receive_from_a_silent_peer_times_out_with_its_buffer_back() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let started = Instant::now();
    let (result, buf) = socket
        .receive(Buf::with_capacity(512).unwrap())
        .timeout(Duration::from_millis(50))
        .wait();
    let waited = started.elapsed();
    assert_eq!(result.unwrap_err(), Error::TIMED_OUT);
    assert_eq!(buf.capacity(), 512, "the buffer comes back");
    assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // The same, awaited; the buffer is used again.
    let (result, buf) = block_on(socket.receive(buf).timeout(Duration::from_millis(20))).unwrap();
    assert_eq!(result.unwrap_err(), Error::TIMED_OUT);
    assert_eq!(buf.capacity(), 512);
    // The connection is still usable after a timed-out receive.
    let (sent, _) = socket.send(Buf::from_slice(b"alive").unwrap()).wait();
    assert_eq!(sent.unwrap(), 5);
    drop(buf);
    drop(socket);
    client.shutdown().unwrap();
    let report = session.finish();
    assert!(report.dpcs_run >= 2, "the deadlines' DPCs ran");
    assert_eq!(report.dpc_flushes, 1, "the teardown flushed the DPCs");
}

#[test]
fn a_completion_before_the_deadline_returns_its_data_and_stops_the_timer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    for round in 0..20u8 {
        peer.write_all(&[round; 8]).unwrap();
        let (result, buf) = socket
            .receive(Buf::with_capacity(8).unwrap())
            .timeout(Duration::from_secs(30))
            .wait();
        let n = result.unwrap();
        assert!(n > 0);
        assert!(buf[..n].iter().all(|&b| b == round));
        if n < 8 {
            let (rest, _) = socket
                .receive_exact(Buf::with_capacity(8 - n).unwrap(), 8 - n)
                .wait();
            rest.unwrap();
        }
    }
    // Completions just before the deadline: the peer writes about when the timer expires;
    // either outcome is allowed, and a timed-out receive loses no byte.
    let mut received = 0usize;
    let mut written = 0usize;
    for round in 0..20u64 {
        let deadline = Duration::from_millis(5 + round % 5);
        let mut writer = peer.try_clone().unwrap();
        let delay = Duration::from_millis(round % 7 + 3);
        let write = std::thread::spawn(move || {
            std::thread::sleep(delay);
            writer.write_all(b"x").unwrap();
        });
        written += 1;
        let (result, _) = socket
            .receive(Buf::with_capacity(64).unwrap())
            .timeout(deadline)
            .wait();
        match result {
            Ok(n) => received += n,
            Err(error) => assert_eq!(error, Error::TIMED_OUT),
        }
        write.join().unwrap();
    }
    while received < written {
        let (result, _) = socket
            .receive(Buf::with_capacity(64).unwrap())
            .timeout(Duration::from_secs(5))
            .wait();
        received += result.expect("every byte written arrives");
    }
    assert_eq!(received, written);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn dropping_a_timed_operation_in_flight_cancels_it_and_its_timer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    // A long deadline, dropped long before it.
    for _ in 0..20 {
        let mut receive = socket
            .receive(Buf::with_capacity(64).unwrap())
            .timeout(Duration::from_secs(60));
        assert!(poll_once(&mut receive).is_pending());
        drop(receive);
    }
    // Deadlines about as short as the drop: the DPC and the cancel race.
    for round in 0..50u64 {
        let mut receive = socket
            .receive(Buf::with_capacity(64).unwrap())
            .timeout(Duration::from_micros(round * 20));
        let _ = poll_once(&mut receive);
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_micros(round * 10));
        }
        drop(receive);
    }
    // The socket still works.
    let (sent, _) = socket.send(Buf::from_slice(b"after").unwrap()).wait();
    assert_eq!(sent.unwrap(), 5);
    drop(socket);
    within("client drop after timed drops", move || drop(client));
    session.finish();
}

#[test]
fn a_forgotten_timed_operation_does_not_hang_unload_nor_leave_its_timer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let mut receive = socket
        .receive(Buf::with_capacity(64).unwrap())
        .timeout(Duration::from_millis(30));
    assert!(poll_once(&mut receive).is_pending());
    std::mem::forget(receive);
    let mut long = socket
        .receive(Buf::with_capacity(64).unwrap())
        .timeout(Duration::from_secs(60));
    assert!(poll_once(&mut long).is_pending());
    std::mem::forget(long);
    drop(socket);
    within("client drop with forgotten timed receives", move || {
        drop(client)
    });
    let (_, findings) = session.conclude();
    // Exactly what the forgotten operations owned (their blocks, IRPs and buffers); no timer
    // is set and no DPC pending at the end.
    for finding in &findings {
        assert!(
            matches!(
                finding.rule,
                Rule::IrpLeaked | Rule::PoolLeaked | Rule::MdlLeaked
            ),
            "unexpected finding: {finding:?}"
        );
    }
}

#[test]
fn dropping_the_client_under_a_timed_operation_ends_it() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let mut receive = socket
        .receive(Buf::with_capacity(64).unwrap())
        .timeout(Duration::from_secs(60));
    assert!(poll_once(&mut receive).is_pending());
    within("client drop under a timed receive", move || drop(client));
    let (result, buf) = within("the cancelled receive", move || receive.wait());
    assert!(result.is_err());
    assert_eq!(buf.capacity(), 64);
    drop(buf);
    drop(socket);
    session.finish();
}

/// What the tasks report, in order.
type Log<T> = Arc<Mutex<Vec<T>>>;

/// A log for the tasks, and the test's handle on it.
fn recorder<T: Send + 'static>() -> (Log<T>, Log<T>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    (Arc::clone(&log), log)
}

fn wait_for<T>(log: &Mutex<Vec<T>>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < count {
        assert!(
            Instant::now() < deadline,
            "the tasks did not report in 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn deadlines_work_inside_tasks_and_completion_routines() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (log, seen) = recorder();
    tasks
        .spawn(async move {
            // Set in the task's first poll (the spawning thread).
            let (first, buf) = socket
                .receive(Buf::with_capacity(16).unwrap())
                .timeout(Duration::from_millis(30))
                .await;
            log.lock().unwrap().push(first.map_err(|e| e.status()));
            // Set from the completion routine of a receive that the peer's data completes:
            // the task is woken there, at DISPATCH_LEVEL.
            let (second, buf) = socket.receive(buf).await;
            log.lock().unwrap().push(second.map_err(|e| e.status()));
            let (third, _) = socket.receive(buf).timeout(Duration::from_millis(30)).await;
            log.lock().unwrap().push(third.map_err(|e| e.status()));
        })
        .unwrap();
    wait_for(&seen, 1);
    peer.write_all(b"data").unwrap();
    wait_for(&seen, 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], Err(Error::TIMED_OUT.status()));
    assert_eq!(seen[1], Ok(4));
    assert_eq!(seen[2], Err(Error::TIMED_OUT.status()));
    tasks.wait_idle().unwrap();
    drop(tasks);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn sleeps_end_in_the_order_of_their_delays() {
    let session = Session::start();
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (log, seen) = recorder();
    for delay in [60u64, 20, 100, 40, 80] {
        let log = Arc::clone(&log);
        let sleep = client.sleep(Duration::from_millis(delay));
        tasks
            .spawn(async move {
                let result = sleep.await;
                log.lock().unwrap().push((delay, result));
            })
            .unwrap();
    }
    let started = Instant::now();
    wait_for(&seen, 5);
    assert!(started.elapsed() >= Duration::from_millis(90));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(delay, _)| *delay).collect::<Vec<_>>(),
        [20, 40, 60, 80, 100]
    );
    assert!(seen.iter().all(|(_, result)| result.is_ok()));
    // The blocking form, at PASSIVE_LEVEL.
    let started = Instant::now();
    client.sleep(Duration::from_millis(30)).wait().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    tasks.wait_idle().unwrap();
    drop(tasks);
    Arc::into_inner(client).unwrap().shutdown().unwrap();
    session.finish();
}

#[test]
fn a_blocking_sleep_refuses_inside_a_task() {
    let session = Session::start();
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (log, seen) = recorder();
    let inner = Arc::clone(&client);
    tasks
        .spawn(async move {
            let result = inner.sleep(Duration::from_millis(10)).wait();
            log.lock().unwrap().push(result);
        })
        .unwrap();
    wait_for(&seen, 1);
    assert_eq!(seen.lock().unwrap()[0], Err(Error::IRQL_TOO_HIGH));
    tasks.wait_idle().unwrap();
    drop(tasks);
    Arc::into_inner(client).unwrap().shutdown().unwrap();
    session.finish();
}

/// Races two futures: the output of the first to finish; the other is dropped.
async fn race<A: Future + Unpin, B: Future + Unpin>(
    mut a: A,
    mut b: B,
) -> Result<A::Output, B::Output> {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = Pin::new(&mut a).poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut b).poll(cx).map(Err)
    })
    .await
}

#[test]
fn a_receive_raced_against_a_sleep() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    // The sleep wins against a silent peer: the receive is dropped (cancelled).
    let outcome = block_on(race(
        socket.receive(Buf::with_capacity(16).unwrap()),
        client.sleep(Duration::from_millis(30)),
    ))
    .unwrap();
    assert!(matches!(outcome, Err(Ok(()))));
    // The receive wins when data is there; the sleep is dropped (its timer cancelled).
    peer.write_all(b"hi").unwrap();
    let outcome = block_on(race(
        socket.receive(Buf::with_capacity(16).unwrap()),
        client.sleep(Duration::from_secs(60)),
    ))
    .unwrap();
    let Ok((received, buf)) = outcome else {
        panic!("the receive completes first");
    };
    assert_eq!(received.unwrap(), 2);
    drop(buf);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn the_teardown_cancels_a_long_sleep_and_does_not_wait_for_it() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let mut sleep = client.sleep(Duration::from_secs(600));
    assert!(poll_once(&mut sleep).is_pending());
    let mut forgotten = client.sleep(Duration::from_secs(600));
    assert!(poll_once(&mut forgotten).is_pending());
    std::mem::forget(forgotten);
    let started = Instant::now();
    within("client drop under sleeps", move || drop(client));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        within("the cancelled sleep", move || sleep.wait()),
        Err(Error::CANCELLED)
    );
    let (_, findings) = session.conclude();
    for finding in &findings {
        assert!(
            matches!(finding.rule, Rule::IrpLeaked | Rule::PoolLeaked),
            "unexpected finding: {finding:?}"
        );
    }
}

/// Wine's kernel answers TRUE to a `KeCancelTimer` of a timer that already expired, after
/// waiting for its DPC: a cancel that took the sleep just before its DPC started must not
/// complete it a second time, nor release the timer's reference twice.
#[test]
fn a_sleep_cancelled_as_its_dpc_starts_under_wine_timers() {
    let session = Session::start();
    session.set_faults(FaultPlan::default().wine_timers(true));
    let client = WskClient::register(driver(&session)).unwrap();
    for _ in 0..20 {
        let mut sleep = client.sleep(Duration::from_nanos(100));
        assert!(poll_once(&mut sleep).is_pending());
        // Expired; its DPC starts a millisecond later: the drop's cancel comes first.
        std::thread::sleep(Duration::from_micros(300));
        drop(sleep);
    }
    // The same for deadlines: a request completed while its expired timer's DPC has not
    // started stops nothing either.
    let (socket, mut peer) = connected(&client);
    for _ in 0..20 {
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let (received, _) = socket
            .receive(Buf::with_capacity(1).unwrap())
            .timeout(Duration::from_nanos(100))
            .wait();
        // The data at hand or the deadline, whichever the provider saw first.
        assert!(
            received.is_ok() || received == Err(Error::TIMED_OUT),
            "{received:?}"
        );
    }
    drop(socket);
    within(
        "client drop after sleeps cancelled as they fired",
        move || drop(client),
    );
    session.finish();
}

#[test]
fn a_sleep_dropped_before_or_as_it_fires() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    for round in 0..100u64 {
        let mut sleep = client.sleep(Duration::from_micros(round * 10));
        let _ = poll_once(&mut sleep);
        if round % 3 == 0 {
            std::thread::sleep(Duration::from_micros(round * 5));
        }
        drop(sleep);
    }
    within("client drop after dropped sleeps", move || drop(client));
    session.finish();
}

#[test]
fn a_deadline_adds_no_allocation_per_operation() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let mut buf = Some(Buf::with_capacity(64).unwrap());
    let timed = |buf: &mut Option<Buf>, rounds: u64| {
        let before = allocations();
        for _ in 0..rounds {
            let (result, back) = socket
                .receive(buf.take().unwrap())
                .timeout(Duration::from_millis(1))
                .wait();
            assert_eq!(result.unwrap_err(), Error::TIMED_OUT);
            *buf = Some(back);
        }
        allocations() - before
    };
    // Warm-up: the socket's block pool and the host's timer table reach their size.
    timed(&mut buf, 20);
    let with_deadline = timed(&mut buf, 50);
    // The same requests ended by a drop instead of a deadline.
    let before = allocations();
    for _ in 0..50 {
        let mut receive = socket.receive(Buf::with_capacity(64).unwrap());
        let _ = poll_once(&mut receive);
        drop(receive);
    }
    let buffers = 50; // one `Buf` each
    let by_drop = allocations() - before;
    // The host's own tables (its timer heap and map) may still grow by a few; a per-request
    // allocation of the crate would add 50.
    assert!(
        with_deadline <= by_drop.saturating_sub(buffers) + 10,
        "{with_deadline} allocations for 50 timed-out receives, {by_drop} for 50 dropped ones \
         (50 of them buffers)"
    );
    drop(buf);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_sleep_is_allocation_free_once_the_client_has_a_block() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    client.sleep(Duration::from_millis(1)).wait().unwrap();
    client.sleep(Duration::from_millis(1)).wait().unwrap();
    let sleeps = |rounds: u64| {
        let before = allocations();
        for _ in 0..rounds {
            client.sleep(Duration::from_millis(1)).wait().unwrap();
        }
        allocations() - before
    };
    let few = sleeps(10);
    let many = sleeps(100);
    // What the host's own tables may still grow by, not one per sleep.
    assert!(
        many <= few + 8,
        "{few} allocations for 10 sleeps, {many} for 100"
    );
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn unloading_with_a_timer_set_is_reported() {
    // The host's own check, which the teardown's cancel-and-flush satisfies: a raw timer left
    // set at the end of a session is a finding.
    let session = Session::start();
    let mut timer = Box::new(wsk_sys::KTIMER::default());
    let mut dpc = Box::new(wsk_sys::KDPC::default());
    unsafe extern "system" fn nothing(
        _: wsk_sys::PKDPC,
        _: wsk_sys::PVOID,
        _: wsk_sys::PVOID,
        _: wsk_sys::PVOID,
    ) {
    }
    // SAFETY: the timer and DPC live in boxes kept until after the session's end.
    unsafe {
        wsk_sys::KeInitializeTimerEx(&raw mut *timer, wsk_sys::NotificationTimer);
        wsk_sys::KeInitializeDpc(&raw mut *dpc, Some(nothing), std::ptr::null_mut());
        wsk_sys::KeSetTimer(
            &raw mut *timer,
            wsk_sys::LARGE_INTEGER {
                QuadPart: -600_000_000,
            },
            &raw mut *dpc,
        );
    }
    let (_, findings) = session.conclude();
    assert!(
        findings
            .iter()
            .any(|f| f.rule == Rule::TimerPendingAtUnload),
        "{findings:?}"
    );
    // The session's end stopped the host's timer thread and the next session forgets the
    // timer; cancelling it here could race that next session. Its memory stays.
    std::mem::forget(timer);
    std::mem::forget(dpc);
}

#[test]
fn one_deadline_bounds_a_whole_exchange() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let deadline = Deadline::after(Duration::from_millis(80));
    peer.write_all(b"first").unwrap();
    let (first, buf) = socket
        .receive(Buf::with_capacity(16).unwrap())
        .deadline(deadline)
        .wait();
    assert!(
        first.unwrap() > 0,
        "data at hand completes before the deadline"
    );
    assert!(!deadline.has_passed());
    let started = Instant::now();
    let (second, buf) = socket.receive(buf).deadline(deadline).wait();
    assert_eq!(second.unwrap_err(), Error::TIMED_OUT);
    assert!(deadline.has_passed());
    assert_eq!(deadline.remaining(), Duration::ZERO);
    assert!(started.elapsed() < Duration::from_secs(5));
    // A deadline already passed: the request is cancelled as soon as it is issued.
    let (third, buf) = socket.receive(buf).deadline(deadline).wait();
    assert_eq!(third.unwrap_err(), Error::TIMED_OUT);
    // A sleep until it ends at once too; one in the future waits.
    client.sleep_until(deadline).wait().unwrap();
    let later = Deadline::after(Duration::from_millis(30));
    let started = Instant::now();
    client.sleep_until(later).wait().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(29));
    assert!(later.has_passed());
    drop(buf);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_deadline_set_after_the_operation_started_has_no_effect() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let mut receive = socket.receive(Buf::with_capacity(16).unwrap());
    assert!(poll_once(&mut receive).is_pending());
    let receive = receive.timeout(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(30));
    peer.write_all(b"late").unwrap();
    let (result, buf) = receive.wait();
    assert_eq!(
        result.unwrap(),
        4,
        "no deadline was set on the request in flight"
    );
    drop(buf);
    drop(socket);
    client.shutdown().unwrap();
    let report = session.finish();
    assert_eq!(report.dpcs_run, 0);
}

#[test]
fn closing_the_socket_ends_a_timed_operation_at_once() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let mut receive = socket
        .receive(Buf::with_capacity(64).unwrap())
        .timeout(Duration::from_secs(60));
    assert!(poll_once(&mut receive).is_pending());
    let started = Instant::now();
    socket.close().wait().unwrap();
    let (result, buf) = within("the receive on a closed socket", move || receive.wait());
    let error = result.unwrap_err();
    assert_ne!(
        error,
        Error::TIMED_OUT,
        "the close, not the deadline, ended it"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(buf.capacity(), 64);
    drop(buf);
    client.shutdown().unwrap();
    let report = session.finish();
    assert_eq!(report.dpcs_run, 0, "the completion stopped the timer");
}

#[test]
fn sleeps_started_while_the_client_is_torn_down_do_not_hold_it() {
    let session = Session::start();
    for _ in 0..10 {
        let client = WskClient::register(driver(&session)).unwrap();
        let timers = client.timers();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let starter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut refused = 0;
                let mut started = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut sleep = timers.sleep(Duration::from_secs(600));
                    match poll_once(&mut sleep) {
                        Poll::Pending => started.push(sleep),
                        Poll::Ready(result) => {
                            assert!(result.is_err());
                            refused += 1;
                        }
                    }
                    if started.len() > 64 {
                        drop(started.remove(0));
                    }
                }
                // Every sleep still held ends without its delay: cancelled by the teardown.
                for sleep in started {
                    assert!(sleep.wait().is_err());
                }
                refused
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        within("client drop while sleeps start", move || drop(client));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        within("the sleeps after the teardown", move || {
            starter.join().unwrap()
        });
    }
    session.finish();
}
