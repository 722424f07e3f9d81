//! Second adversarial review: the frame protocol of waited operations, per-processor spin-lock
//! counting, and the executor's wake-up rules. Public API only.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use wsk::irql::Irql;
use wsk::task::TaskSet;
use wsk::{Buf, ConnectionSocket, Error, IoBuf, SpinLock, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Session};

mod common;
use common::{
    DEADLINE, DropCount, bound_datagram,
    canary_buf::{Canary, Quarantine},
    connected, driver, eventually, no_violations, poll_once, within, yield_now,
};

// =================================================================================================
// 3. The executor
// =================================================================================================

/// A task that yields (`wake_by_ref` then `Pending`: what every executor's `yield_now` does)
/// is woken during its own poll: it is polled again, but a re-poll spends the run's budget,
/// so the run — here the first one, inside `spawn`, at DISPATCH_LEVEL on the caller's
/// thread — ends after at most [`wsk::task::RUN_BUDGET`] re-polls, and the work item
/// continues the task. Counted: the polls on the spawning thread.
#[test]
fn a_task_waking_itself_ends_its_run_after_the_budget() {
    let session = Session::start();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    const YIELDS: usize = 200_000;
    let on_spawner = Arc::new(AtomicUsize::new(0));
    let spawner: Arc<Mutex<Option<std::thread::ThreadId>>> = Arc::new(Mutex::new(None));
    let finished = Arc::new(AtomicBool::new(false));
    let spawned = {
        let on_spawner = Arc::clone(&on_spawner);
        let spawner = Arc::clone(&spawner);
        let finished = Arc::clone(&finished);
        within("spawn", move || {
            *spawner.lock().unwrap() = Some(std::thread::current().id());
            let spawner_in = Arc::clone(&spawner);
            tasks
                .spawn(async move {
                    for _ in 0..YIELDS {
                        if *spawner_in.lock().unwrap() == Some(std::thread::current().id()) {
                            on_spawner.fetch_add(1, Ordering::SeqCst);
                        }
                        yield_now().await;
                    }
                    finished.store(true, Ordering::SeqCst);
                })
                .unwrap();
            tasks
        })
    };
    eventually("the yielding task finished", || {
        finished.load(Ordering::SeqCst)
    });
    eventually("the set is empty", || spawned.is_empty());
    drop(spawned);
    let first_run = on_spawner.load(Ordering::SeqCst);
    eprintln!("polls in the first run, inside spawn: {first_run} of {YIELDS}");
    assert!(
        first_run <= wsk::task::RUN_BUDGET as usize + 1,
        "one run (inside spawn, at DISPATCH_LEVEL) polled the self-woken task {first_run} times"
    );
    session.finish();
}

/// The same from a completion routine: a task whose receive completes on the provider's
/// thread then yields in a loop waiting for a flag another thread sets 300 ms later. The
/// completion routine (at DISPATCH_LEVEL) does not return until then.
#[test]
fn a_yield_loop_never_holds_a_completion_routine_at_dispatch_level() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(5).completion(CompletionMode::AlwaysPending));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let (report, seen) = channel();
    {
        let flag = Arc::clone(&flag);
        tasks
            .spawn(async move {
                let (r, _buf) = socket.receive(Buf::with_capacity(16).unwrap()).await;
                let _ = r;
                let thread = std::thread::current().id();
                let start = Instant::now();
                let mut yields = 0usize;
                let mut same_thread = true;
                while !flag.load(Ordering::SeqCst) && start.elapsed() < DEADLINE {
                    yield_now().await;
                    yields += 1;
                    same_thread &= std::thread::current().id() == thread;
                }
                let _ = report.send((yields, same_thread, start.elapsed()));
            })
            .unwrap();
    }
    peer.write_all(b"go").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    flag.store(true, Ordering::SeqCst);
    let (yields, same_thread, spent) = seen.recv_timeout(DEADLINE).unwrap();
    eprintln!("{yields} polls in one run on one thread: {same_thread}, {spent:?}");
    drop(tasks);
    within("client drop", move || drop(client));
    session.finish();
    assert!(
        !same_thread || yields <= wsk::task::RUN_BUDGET as usize,
        "one run in the completion routine polled the self-woken task {yields} times over \
         {spent:?} on the provider's thread (DPC watchdog territory)"
    );
}

/// A shared counter and the wakers of the tasks waiting for it to reach a target.
#[derive(Default)]
struct Counter {
    value: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl Counter {
    fn bump(&self) {
        self.value.fetch_add(1, Ordering::SeqCst);
        let wakers: Vec<Waker> = std::mem::take(&mut *self.wakers.lock().unwrap());
        for waker in wakers {
            waker.wake();
        }
    }

    async fn reach(self: Arc<Self>, target: usize) {
        std::future::poll_fn(|cx| {
            if self.value.load(Ordering::SeqCst) >= target {
                return Poll::Ready(());
            }
            self.wakers.lock().unwrap().push(cx.waker().clone());
            if self.value.load(Ordering::SeqCst) >= target {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}

/// Tasks woken from eight threads at once, each wake racing the tasks' own polls (and their
/// stepwise targets): every task must finish. A lost wake-up leaves a task pending for good.
#[test]
fn wakes_from_many_threads_racing_polls_are_never_lost() {
    let session = Session::start();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    const TASKS: usize = 64;
    const THREADS: usize = 8;
    const BUMPS: usize = 400;
    let counter = Arc::new(Counter::default());
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..TASKS).map(|_| AtomicUsize::new(0)).collect());
    for t in 0..TASKS {
        let counter = Arc::clone(&counter);
        let progress = Arc::clone(&progress);
        tasks
            .spawn(async move {
                // Many small waits: each step is a fresh race between a wake and a poll.
                let mut target = 1 + t % 7;
                while target <= THREADS * BUMPS {
                    Arc::clone(&counter).reach(target).await;
                    progress[t].store(target, Ordering::SeqCst);
                    target += 1 + (t % 13);
                }
            })
            .unwrap();
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                for _ in 0..BUMPS {
                    counter.bump();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let end = Instant::now() + DEADLINE;
    while !tasks.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stuck: Vec<(usize, usize)> = progress
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.load(Ordering::SeqCst)))
        .filter(|_| !tasks.is_empty())
        .collect();
    assert!(
        tasks.is_empty(),
        "{} tasks never ran again after their wake-up (value {}): {:?}",
        tasks.len(),
        counter.value.load(Ordering::SeqCst),
        &stuck[..stuck.len().min(8)]
    );
    let tasks = Arc::try_unwrap(tasks).ok().unwrap();
    within("set drop", move || drop(tasks));
    no_violations(session);
}

/// A set dropped inside its own task, polled in the completion routine of its receive, while
/// twenty other tasks of the set wait in the work item's queue (woken by a user waker just
/// before). Every future must be dropped, nothing may leak, and unload must end.
#[test]
fn a_set_dropped_in_a_completion_routine_while_its_tasks_are_deferred() {
    for round in 0..6u64 {
        let session = Session::start();
        session.set_faults(
            FaultPlan::new(60 + round)
                .completion(CompletionMode::AlwaysPending)
                .delay_completions(Duration::from_millis(round)),
        );
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let slot: Arc<Mutex<Option<TaskSet>>> =
            Arc::new(Mutex::new(Some(TaskSet::new(driver(&session)).unwrap())));
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(Counter::default());
        const OTHERS: usize = 20;
        {
            let guard = slot.lock().unwrap();
            let set = guard.as_ref().unwrap();
            for _ in 0..OTHERS {
                let counter = Arc::clone(&counter);
                let d = DropCount(Arc::clone(&dropped));
                set.spawn(async move {
                    let _d = d;
                    counter.reach(1).await;
                    // Then wait for good (until cancelled).
                    std::future::pending::<()>().await;
                })
                .unwrap();
            }
            let slot2 = Arc::clone(&slot);
            let d = DropCount(Arc::clone(&dropped));
            let counter2 = Arc::clone(&counter);
            set.spawn(async move {
                let _d = d;
                let (r, _buf) = socket.receive(Buf::with_capacity(8).unwrap()).await;
                let _ = r;
                // Woken: the others go to the work item now...
                counter2.bump();
                // ...and the set goes, from inside the completion routine.
                let set = slot2.lock().unwrap().take();
                drop(set);
            })
            .unwrap();
        }
        peer.write_all(b"x").unwrap();
        eventually("every future dropped", || {
            dropped.load(Ordering::SeqCst) == OTHERS + 1
        });
        assert!(slot.lock().unwrap().is_none());
        within("client drop", move || drop(client));
        assert!(session.wait_for_work_items(DEADLINE));
        no_violations(session);
    }
}

/// Tasks whose every send completes inline (so each run ends on its budget and continues in
/// the work item), while other threads call `cancel_all` again and again; then the client is
/// dropped while tasks are deferred, then the set.
#[test]
fn cancel_all_racing_deferred_runs_then_the_client_dropped_while_deferred() {
    for round in 0..4u64 {
        let session = Session::start();
        session.set_faults(FaultPlan::new(80 + round).completion(CompletionMode::AlwaysInline));
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected(&client);
        // Drain the peer so sends keep completing.
        let drain = std::thread::spawn(move || {
            let mut peer = peer;
            let mut sink = [0u8; 4096];
            while let Ok(n) = peer.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        });
        let socket = Arc::new(socket);
        let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
        let dropped = Arc::new(AtomicUsize::new(0));
        let spawned = Arc::new(AtomicUsize::new(0));
        let spawn_one = {
            let tasks = Arc::clone(&tasks);
            let socket = Arc::clone(&socket);
            let dropped = Arc::clone(&dropped);
            let spawned = Arc::clone(&spawned);
            move || {
                let socket = Arc::clone(&socket);
                let d = DropCount(Arc::clone(&dropped));
                if tasks
                    .spawn(async move {
                        let _d = d;
                        loop {
                            let (sent, _) = socket.send(Buf::from_slice(b"abc").unwrap()).await;
                            if sent.is_err() {
                                return;
                            }
                        }
                    })
                    .is_ok()
                {
                    spawned.fetch_add(1, Ordering::SeqCst);
                }
            }
        };
        for _ in 0..4 {
            spawn_one();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cancellers: Vec<_> = (0..2)
            .map(|_| {
                let tasks = Arc::clone(&tasks);
                let stop = Arc::clone(&stop);
                let spawn_one = spawn_one.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        tasks.cancel_all();
                        if i % 3 == 0 {
                            spawn_one();
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_micros(300));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        // A few more, then the client goes while runs are deferred.
        for _ in 0..4 {
            spawn_one();
        }
        drop(spawn_one);
        let socket_for_drop = socket;
        within("client drop while tasks are deferred", move || {
            drop(socket_for_drop);
            drop(client)
        });
        stop.store(true, Ordering::SeqCst);
        for c in cancellers {
            c.join().unwrap();
        }
        let tasks = Arc::try_unwrap(tasks).ok().unwrap();
        within("set drop", move || drop(tasks));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            spawned.load(Ordering::SeqCst)
        );
        let _ = within("drain", move || drain.join());
        assert!(session.wait_for_work_items(DEADLINE));
        no_violations(session);
    }
}

/// `spawn` under a held `SpinLock` of the crate, of a task that takes that very lock; and
/// inside a task, spawning under a lock a task that takes it. Run inline, either would spin
/// for good. IRQL checks after every release.
#[test]
fn spawning_under_a_spin_lock_a_task_that_takes_it() {
    let session = Session::start();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let lock = Arc::new(SpinLock::new(0u32));
    let (report, seen) = channel::<(&'static str, Irql)>();
    {
        let guard = lock.lock();
        let lock2 = Arc::clone(&lock);
        let report2 = report.clone();
        let spawned = tasks.spawn(async move {
            let mut g = lock2.lock();
            *g += 1;
            drop(g);
            let _ = report2.send(("first", Irql::current()));
        });
        assert!(spawned.is_ok());
        assert_eq!(Irql::current(), Irql::DISPATCH);
        drop(guard);
        assert_eq!(Irql::current(), Irql::PASSIVE);
    }
    // Spawned under the lock, its first poll went to the work item (PASSIVE_LEVEL), where it
    // took the lock once the spawner let it go.
    let (what, irql) = seen
        .recv_timeout(DEADLINE)
        .expect("the task spawned under the lock ran");
    assert_eq!((what, irql), ("first", Irql::PASSIVE));
    {
        let tasks2 = Arc::clone(&tasks);
        let lock2 = Arc::clone(&lock);
        let report2 = report.clone();
        tasks
            .spawn(async move {
                let outer = lock2.lock();
                let lock3 = Arc::clone(&lock2);
                let report3 = report2.clone();
                let ok = tasks2
                    .spawn(async move {
                        *lock3.lock() += 1;
                        let _ = report3.send(("inner", Irql::current()));
                    })
                    .is_ok();
                drop(outer);
                let _ = report2.send(("outer", Irql::current()));
                assert!(ok);
                // The set's last Arc may go here, inside a task.
                drop(tasks2);
            })
            .unwrap();
    }
    let mut got = vec![
        seen.recv_timeout(DEADLINE).unwrap(),
        seen.recv_timeout(DEADLINE).unwrap(),
    ];
    got.sort();
    // The outer task's first poll ran in the spawning thread, at its PASSIVE_LEVEL; the inner
    // one, spawned under the lock, in the work item: both back at PASSIVE_LEVEL once their
    // locks are released.
    assert_eq!(
        got,
        vec![("inner", Irql::PASSIVE), ("outer", Irql::PASSIVE)]
    );
    eventually("tasks done", || tasks.is_empty());
    assert_eq!(*lock.lock(), 2);
    assert_eq!(Irql::current(), Irql::PASSIVE);
    let tasks = Arc::try_unwrap(tasks).ok().unwrap();
    drop(tasks);
    no_violations(session);
}

/// Spin locks released out of order: in the test thread around requests that complete inline
/// (their completion routine runs under the locks), in tasks polled in completion routines,
/// and in a task run from the work item. The IRQL must drop only with the thread's last lock,
/// to where it was before its first, and never below DISPATCH_LEVEL inside a task.
#[test]
fn spin_locks_released_out_of_order_around_inline_completions_and_in_tasks() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(9).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, peer) = connected(&client);
    let drain = std::thread::spawn(move || {
        let mut peer = peer;
        let mut sink = [0u8; 4096];
        while let Ok(n) = peer.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    let socket = Arc::new(socket);
    let locks: Arc<Vec<SpinLock<u32>>> = Arc::new((0..3).map(SpinLock::new).collect());
    // The test thread: locks held across an inline-completing send (polled once under them).
    for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let mut guards: Vec<Option<_>> = locks.iter().map(|l| Some(l.lock())).collect();
        let mut op = socket.send(Buf::from_slice(b"under locks").unwrap());
        let out = poll_once(&mut op);
        assert_eq!(Irql::current(), Irql::DISPATCH);
        for (i, &index) in order.iter().enumerate() {
            drop(guards[index].take());
            let expected = if i < 2 { Irql::DISPATCH } else { Irql::PASSIVE };
            assert_eq!(
                Irql::current(),
                expected,
                "after releasing {index} of {order:?}"
            );
        }
        match out {
            Some((r, _)) => {
                r.unwrap();
            }
            None => {
                let (r, _) = op.wait_timeout(10_000);
                r.unwrap();
            }
        }
    }
    // Tasks: over a run's budget of inline sends, locks out of order in every poll.
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let finished = Arc::new(AtomicUsize::new(0));
    for t in 0..4usize {
        let socket = Arc::clone(&socket);
        let locks = Arc::clone(&locks);
        let bad = Arc::clone(&bad);
        let finished = Arc::clone(&finished);
        tasks
            .spawn(async move {
                for i in 0..(wsk::task::RUN_BUDGET as usize * 2 + 3) {
                    {
                        // The poll's IRQL (DISPATCH_LEVEL in a completion routine, PASSIVE_LEVEL
                        // in the work item): where the last release must go back to.
                        let base = Irql::current();
                        let mut guards: Vec<Option<_>> =
                            locks.iter().map(|l| Some(l.lock())).collect();
                        for (j, index) in [(t + i) % 3, (t + i + 1) % 3, (t + i + 2) % 3]
                            .into_iter()
                            .enumerate()
                        {
                            **guards[index].as_mut().unwrap() += 1;
                            drop(guards[index].take());
                            let expected = if j < 2 { Irql::DISPATCH } else { base };
                            if Irql::current() != expected {
                                bad.lock().unwrap().push(format!(
                                    "task {t} step {i} release {j}: {:?}",
                                    Irql::current()
                                ));
                            }
                        }
                    }
                    let (sent, _) = socket.send(Buf::from_slice(b"t").unwrap()).await;
                    if sent.is_err() {
                        break;
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert_eq!(Irql::current(), Irql::PASSIVE);
    }
    eventually("the tasks finished", || {
        finished.load(Ordering::SeqCst) == 4
    });
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
    assert_eq!(Irql::current(), Irql::PASSIVE);
    drop(tasks);
    drop(socket);
    within("client drop", move || drop(client));
    let _ = within("drain", move || drain.join());
    no_violations(session);
}

/// Inside a task polled in a completion routine (and in the work item): `block_on`, `wait`,
/// `wait_timeout` and `TaskSet::wait_idle` fail with IRQL_TOO_HIGH and hand back the buffer
/// itself; `cancel_all` and a nested `TaskSet` drop there do not wait.
#[test]
fn waits_inside_tasks_fail_and_give_the_buffer_back() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(11).completion(CompletionMode::AlwaysPending));
    let client = WskClient::register(driver(&session)).unwrap();
    let quarantine = Arc::new(Quarantine::default());
    let (socket, mut peer) = connected(&client);
    let socket = Arc::new(socket);
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let inner = TaskSet::new(driver(&session)).unwrap();
    let (report, seen) = channel();
    {
        let socket = Arc::clone(&socket);
        let quarantine = Arc::clone(&quarantine);
        tasks
            .spawn(async move {
                let (r, _) = socket.receive(Buf::with_capacity(4).unwrap()).await;
                r.unwrap();
                let mut errors = Vec::new();
                errors.push(wsk::task::block_on(async {}).err());
                let (r, buf) = socket.receive(Canary::new(&quarantine, b"k", 32)).wait();
                errors.push(r.err());
                let kept = buf.data() == b"k" && buf.bytes_total() == 32 && buf.spare_untouched();
                let (r, buf) = socket
                    .send_to_nowhere_helper(Canary::new(&quarantine, b"s", 32))
                    .wait_timeout(1);
                errors.push(r.err());
                let kept2 = buf.data() == b"s" && buf.bytes_total() == 32;
                errors.push(inner.wait_idle().err());
                inner.cancel_all();
                drop(inner);
                let _ = report.send((errors, kept, kept2, Irql::current()));
            })
            .unwrap();
    }
    peer.write_all(b"go").unwrap();
    let (errors, kept, kept2, irql) = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!(irql, Irql::DISPATCH);
    assert!(
        errors.iter().all(|e| *e == Some(Error::IRQL_TOO_HIGH)),
        "{errors:?}"
    );
    assert!(kept && kept2);
    eventually("done", || tasks.is_empty());
    drop(tasks);
    drop(socket);
    within("client drop", move || drop(client));
    quarantine.check_and_free();
    no_violations(session);
}

trait SendHelper {
    fn send_to_nowhere_helper<B: IoBuf>(&self, buf: B) -> wsk::ops::Send<B>;
}

impl SendHelper for ConnectionSocket {
    fn send_to_nowhere_helper<B: IoBuf>(&self, buf: B) -> wsk::ops::Send<B> {
        self.send(buf)
    }
}

// =================================================================================================
// 1. The frame protocol of waited operations
// =================================================================================================

const MODES: [CompletionMode; 3] = [
    CompletionMode::AlwaysInline,
    CompletionMode::AlwaysPending,
    CompletionMode::Mixed,
];

/// One datagram socket: threads waiting for `receive_from` with 0/1 ms timeouts (canaries),
/// a thread running `block_on` of polled receives with a deadline, a task awaiting receives,
/// and threads waiting for `send_to`s to the peer — all at once. Every datagram sent by the
/// peer is received exactly once, nothing is written after a buffer was handed back.
#[test]
fn datagrams_waited_with_tiny_timeouts_polled_and_awaited_on_one_socket() {
    for (round, mode) in MODES.into_iter().enumerate() {
        let session = Session::start();
        session.set_faults(
            FaultPlan::new(100 + round as u64)
                .completion(mode)
                .delay_completions(Duration::from_micros(200)),
        );
        let client = WskClient::register(driver(&session)).unwrap();
        let quarantine = Arc::new(Quarantine::default());
        let (socket, local, peer) = bound_datagram(&client, "127.0.0.1:0");
        let peer_addr = peer.local_addr().unwrap();
        // The peer drains as it goes (its host socket's buffer would overflow otherwise).
        let peer_count = std::thread::spawn(move || {
            let mut got = 0usize;
            let mut b = [0u8; 16];
            peer.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while peer.recv_from(&mut b).is_ok() {
                got += 1;
            }
            got
        });
        let socket = Arc::new(socket);
        let seen = Arc::new(Mutex::new(Vec::<u32>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut threads = Vec::new();
        let record = |seen: &Mutex<Vec<u32>>, data: &[u8], bad: &Mutex<Vec<String>>| {
            if data.len() != 4 {
                bad.lock()
                    .unwrap()
                    .push(format!("datagram of {} bytes", data.len()));
                return;
            }
            seen.lock()
                .unwrap()
                .push(u32::from_le_bytes(data.try_into().unwrap()));
        };
        for t in 0..3u32 {
            let (socket, seen, stop, bad, quarantine) = (
                Arc::clone(&socket),
                Arc::clone(&seen),
                Arc::clone(&stop),
                Arc::clone(&bad),
                Arc::clone(&quarantine),
            );
            threads.push(std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let (r, buf) = socket
                        .receive_from(Canary::new(&quarantine, b"", 16))
                        .wait_timeout((i + t) % 2);
                    match r {
                        Ok((n, _from)) => {
                            if buf.bytes_init() != n || !buf.spare_untouched() {
                                bad.lock()
                                    .unwrap()
                                    .push(format!("{n} vs {}", buf.bytes_init()));
                            }
                            record(&seen, buf.data(), &bad);
                        }
                        Err(e) => {
                            if e != Error::TIMED_OUT
                                || buf.bytes_init() != 0
                                || !buf.spare_untouched()
                                || buf.bytes_total() != 16
                            {
                                bad.lock()
                                    .unwrap()
                                    .push(format!("{e:?}, {} bytes", buf.bytes_init()));
                            }
                        }
                    }
                }
            }));
        }
        {
            let (socket, seen, stop, bad) = (
                Arc::clone(&socket),
                Arc::clone(&seen),
                Arc::clone(&stop),
                Arc::clone(&bad),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let op = socket
                        .receive_from(Buf::with_capacity(16).unwrap())
                        .timeout(Duration::from_millis(3));
                    let (r, buf) = wsk::task::block_on(op).unwrap();
                    match r {
                        Ok(_) => record(&seen, &buf, &bad),
                        Err(Error::TIMED_OUT) => {}
                        Err(e) => bad.lock().unwrap().push(format!("block_on: {e:?}")),
                    }
                }
            }));
        }
        let tasks = TaskSet::new(driver(&session)).unwrap();
        {
            let (socket, seen, stop, bad) = (
                Arc::clone(&socket),
                Arc::clone(&seen),
                Arc::clone(&stop),
                Arc::clone(&bad),
            );
            tasks
                .spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let (r, buf) = socket
                            .receive_from(Buf::with_capacity(16).unwrap())
                            .timeout(Duration::from_millis(2))
                            .await;
                        match r {
                            Ok(_) => record(&seen, &buf, &bad),
                            Err(Error::TIMED_OUT) => {}
                            Err(e) => bad.lock().unwrap().push(format!("task: {e:?}")),
                        }
                    }
                })
                .unwrap();
        }
        // Senders on the same socket, waited for in their frames.
        let sent_back = Arc::new(AtomicUsize::new(0));
        for t in 0..2u32 {
            let (socket, stop, bad, quarantine, sent_back) = (
                Arc::clone(&socket),
                Arc::clone(&stop),
                Arc::clone(&bad),
                Arc::clone(&quarantine),
                Arc::clone(&sent_back),
            );
            threads.push(std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) && i < 300 {
                    i += 1;
                    let payload = (t << 24 | i).to_le_bytes();
                    let (r, buf) = socket
                        .send_to(Canary::new(&quarantine, &payload, 8), peer_addr)
                        .wait();
                    match r {
                        Ok(4) => {
                            sent_back.fetch_add(1, Ordering::SeqCst);
                        }
                        other => bad.lock().unwrap().push(format!("send_to: {other:?}")),
                    }
                    if buf.data() != payload || !buf.spare_untouched() {
                        bad.lock().unwrap().push("send buffer changed".into());
                    }
                }
            }));
        }
        // Paced well below what the receivers take, so that the host socket's own buffer
        // never overflows (a loss there is not the crate's).
        const COUNT: u32 = 1000;
        let drops_before = udp_receive_buffer_drops();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..COUNT {
            sender.send_to(&i.to_le_bytes(), local).unwrap();
            std::thread::sleep(Duration::from_micros(400));
        }
        let end = Instant::now() + Duration::from_secs(20);
        while seen.lock().unwrap().len() < COUNT as usize && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            within("a thread", move || t.join().unwrap());
        }
        eventually("the task", || tasks.is_empty());
        drop(tasks);
        // The peer got every datagram the senders reported sent.
        let got = within("the peer", move || peer_count.join().unwrap());
        assert!(
            bad.lock().unwrap().is_empty(),
            "{mode:?}: {:?}",
            bad.lock().unwrap()
        );
        let mut all = seen.lock().unwrap().clone();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "{mode:?}: a datagram was received twice");
        let drops_after = udp_receive_buffer_drops();
        if drops_after == drops_before {
            assert_eq!(all.len(), COUNT as usize, "{mode:?}: datagrams lost");
        } else {
            // The host's own socket buffer overflowed (receivers starved by other tests):
            // a loss there says nothing of the crate.
            eprintln!(
                "{mode:?}: {} of {COUNT} received; the host dropped {} datagrams",
                all.len(),
                drops_after - drops_before
            );
        }
        assert_eq!(got, sent_back.load(Ordering::SeqCst), "{mode:?}");
        drop(socket);
        within("client drop", move || drop(client));
        quarantine.check_and_free();
        no_violations(session);
    }
}

/// The send token passes between threads the instant each wait returns, with the socket's
/// pool reserved to one block: the next send reuses the block the last one just gave back
/// (possibly before its completion routine returned). Receives run the same way, and a
/// polled request stays in flight on the socket throughout. Bytes arrive in order, once.
#[test]
fn the_block_passed_between_threads_the_instant_each_wait_returns() {
    for (round, mode) in MODES.into_iter().enumerate() {
        let session = Session::start();
        session.set_faults(FaultPlan::new(120 + round as u64).completion(mode));
        let client = WskClient::register(driver(&session)).unwrap();
        let quarantine = Arc::new(Quarantine::default());
        let (socket, mut peer) = connected(&client);
        socket.reserve_requests(1).unwrap();
        let socket = Arc::new(socket);
        // A polled receive in flight on the same socket the whole time (held, not waited).
        const THREADS: usize = 3;
        const SENDS: u32 = 300;
        let turn = Arc::new(AtomicUsize::new(0));
        let bad = Arc::new(Mutex::new(Vec::<String>::new()));
        let threads: Vec<_> = (0..THREADS)
            .map(|me| {
                let (socket, turn, bad, quarantine) = (
                    Arc::clone(&socket),
                    Arc::clone(&turn),
                    Arc::clone(&bad),
                    Arc::clone(&quarantine),
                );
                std::thread::spawn(move || {
                    let end = Instant::now() + DEADLINE * 2;
                    loop {
                        let now = turn.load(Ordering::SeqCst);
                        if now >= SENDS as usize {
                            return;
                        }
                        if now % THREADS != me {
                            if Instant::now() > end {
                                bad.lock().unwrap().push("turn never came".into());
                                return;
                            }
                            std::hint::spin_loop();
                            continue;
                        }
                        let payload = (now as u32).to_le_bytes();
                        let (r, buf) = socket.send(Canary::new(&quarantine, &payload, 4)).wait();
                        if r != Ok(4) || buf.data() != payload {
                            bad.lock().unwrap().push(format!("send {now}: {r:?}"));
                        }
                        // The next thread goes now, while this one drops its buffer.
                        turn.store(now + 1, Ordering::SeqCst);
                        drop(buf);
                    }
                })
            })
            .collect();
        let mut got = vec![0u8; SENDS as usize * 4];
        peer.read_exact(&mut got).unwrap();
        for t in threads {
            within("a sender", move || t.join().unwrap());
        }
        assert!(
            bad.lock().unwrap().is_empty(),
            "{mode:?}: {:?}",
            bad.lock().unwrap()
        );
        for (i, chunk) in got.chunks(4).enumerate() {
            assert_eq!(
                u32::from_le_bytes(chunk.try_into().unwrap()),
                i as u32,
                "{mode:?}"
            );
        }
        // Receives the same way: 3 threads, one byte each, handing over at once.
        let data: Vec<u8> = (0..=255u8).collect();
        peer.write_all(&data).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let turn = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|me| {
                let (socket, turn, received, quarantine, bad) = (
                    Arc::clone(&socket),
                    Arc::clone(&turn),
                    Arc::clone(&received),
                    Arc::clone(&quarantine),
                    Arc::clone(&bad),
                );
                std::thread::spawn(move || {
                    let end = Instant::now() + DEADLINE * 2;
                    loop {
                        let now = turn.load(Ordering::SeqCst);
                        if now >= 256 {
                            return;
                        }
                        if now % THREADS != me {
                            if Instant::now() > end {
                                bad.lock().unwrap().push("receive turn never came".into());
                                return;
                            }
                            std::hint::spin_loop();
                            continue;
                        }
                        let (r, buf) = socket.receive(Canary::new(&quarantine, b"", 1)).wait();
                        if r != Ok(1) {
                            bad.lock().unwrap().push(format!("receive {now}: {r:?}"));
                        }
                        received.lock().unwrap().extend_from_slice(buf.data());
                        turn.store(now + 1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            within("a receiver", move || t.join().unwrap());
        }
        assert!(
            bad.lock().unwrap().is_empty(),
            "{mode:?}: {:?}",
            bad.lock().unwrap()
        );
        assert_eq!(*received.lock().unwrap(), data, "{mode:?}");
        drop(socket);
        within("client drop", move || drop(client));
        quarantine.check_and_free();
        no_violations(session);
    }
}

/// Many threads waiting (wait / wait_timeout(1..3) with retries) for sends and receives on one
/// connection, in every completion mode with delayed completions, while another thread drops
/// the socket handle, closes it, or drops the client. Every buffer comes back itself and
/// untouched after its hand-back; nothing leaks; every waiter returns.
#[test]
fn many_waiters_while_the_socket_or_client_goes_from_another_thread() {
    for what in 0..3u64 {
        for (round, mode) in MODES.into_iter().enumerate() {
            let session = Session::start();
            session.set_faults(
                FaultPlan::new(200 + what * 10 + round as u64)
                    .completion(mode)
                    .delay_completions(Duration::from_millis(2)),
            );
            let client = WskClient::register(driver(&session)).unwrap();
            let quarantine = Arc::new(Quarantine::default());
            let (socket, peer) = connected(&client);
            let socket = Arc::new(Mutex::new(Some(socket)));
            let stop = Arc::new(AtomicBool::new(false));
            let bad = Arc::new(Mutex::new(Vec::<String>::new()));
            // The peer sends slowly and drains everything.
            let peer_thread = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut peer = peer;
                    peer.set_read_timeout(Some(Duration::from_millis(1)))
                        .unwrap();
                    let mut sink = [0u8; 4096];
                    while !stop.load(Ordering::SeqCst) {
                        let _ = peer.write(b"abcdefgh");
                        let _ = peer.read(&mut sink);
                    }
                })
            };
            let threads: Vec<_> = (0..8u32)
                .map(|t| {
                    let (socket, quarantine, bad) = (
                        Arc::clone(&socket),
                        Arc::clone(&quarantine),
                        Arc::clone(&bad),
                    );
                    std::thread::spawn(move || {
                        for i in 0..10_000u32 {
                            let guard = socket.lock().unwrap();
                            let Some(sock) = guard.as_ref() else { return i };
                            let ok = if t % 2 == 0 {
                                let op = sock.receive(Canary::new(&quarantine, b"p", 64));
                                drop(guard);
                                let (r, buf) = if i % 2 == 0 {
                                    op.wait()
                                } else {
                                    op.wait_timeout(1 + i % 3)
                                };
                                if buf.bytes_total() != 64
                                    || &buf.data()[..1] != b"p"
                                    || !buf.spare_untouched()
                                {
                                    bad.lock().unwrap().push(format!("receive buffer {r:?}"));
                                }
                                match r {
                                    Ok(n) => n > 0,
                                    Err(Error::TIMED_OUT) => true,
                                    Err(_) => false,
                                }
                            } else {
                                let op = sock.send(Canary::new(&quarantine, b"0123456789", 16));
                                drop(guard);
                                let (r, buf) = if i % 2 == 0 {
                                    op.wait()
                                } else {
                                    op.wait_timeout(1 + i % 3)
                                };
                                if buf.bytes_total() != 16
                                    || buf.data() != b"0123456789"
                                    || !buf.spare_untouched()
                                {
                                    bad.lock().unwrap().push(format!("send buffer {r:?}"));
                                }
                                matches!(r, Ok(_) | Err(Error::TIMED_OUT))
                            };
                            if !ok {
                                return i;
                            }
                        }
                        10_000
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(50));
            let client = match what {
                0 => {
                    let taken = socket.lock().unwrap().take().unwrap();
                    within("close", move || taken.close().wait()).ok();
                    Some(client)
                }
                1 => {
                    // Dropped from another thread while the waiters block on its requests.
                    let taken = socket.lock().unwrap().take().unwrap();
                    within("socket drop", move || drop(taken));
                    Some(client)
                }
                _ => {
                    within("client drop", move || drop(client));
                    None
                }
            };
            stop.store(true, Ordering::SeqCst);
            let mut counts = Vec::new();
            for t in threads {
                counts.push(within("a waiter", move || t.join().unwrap()));
            }
            within("peer", move || peer_thread.join().unwrap());
            eprintln!("{what} {mode:?}: waiters ended after {counts:?}");
            assert!(
                bad.lock().unwrap().is_empty(),
                "{what} {mode:?}: {:?}",
                bad.lock().unwrap()
            );
            drop(socket);
            if let Some(client) = client {
                within("client drop", move || drop(client));
            }
            quarantine.check_and_free();
            no_violations(session);
        }
    }
}

/// Which receiver kind loses datagrams: `kind` 0 = frame waits with 0/1 ms timeouts, 1 =
/// frame waits without timeout (the socket closed at the end), 2 = block_on with
/// `.timeout()`, 3 = wait_timeout of a polled op (counted protocol).
fn datagram_receivers_of_one_kind(kind: u32, mode: CompletionMode) -> (usize, usize) {
    let session = Session::start();
    session.set_faults(FaultPlan::new(300 + u64::from(kind)).completion(mode));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, local, _peer) = bound_datagram(&client, "127.0.0.1:0");
    let socket = Arc::new(socket);
    let seen = Arc::new(Mutex::new(Vec::<u32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let (socket, seen, stop, timeouts) = (
                Arc::clone(&socket),
                Arc::clone(&seen),
                Arc::clone(&stop),
                Arc::clone(&timeouts),
            );
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let op = socket.receive_from(Buf::with_capacity(16).unwrap());
                    let (r, buf) = match kind {
                        0 => op.wait_timeout((i + t) % 2),
                        1 => op.wait_timeout(50),
                        2 => wsk::task::block_on(
                            op.timeout(Duration::from_millis(u64::from((i + t) % 2))),
                        )
                        .unwrap(),
                        _ => {
                            let mut op = op;
                            match poll_once(&mut op) {
                                Some(out) => out,
                                None => op.wait_timeout((i + t) % 2),
                            }
                        }
                    };
                    match r {
                        Ok(_) => seen
                            .lock()
                            .unwrap()
                            .push(u32::from_le_bytes(buf[..4].try_into().unwrap())),
                        Err(Error::TIMED_OUT) => {
                            timeouts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    const COUNT: u32 = 600;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..COUNT {
        sender.send_to(&i.to_le_bytes(), local).unwrap();
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    let end = Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().len() < COUNT as usize && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        within("a receiver", move || t.join().unwrap());
    }
    let mut all = seen.lock().unwrap().clone();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, all.len(), "duplicates");
    drop(socket);
    within("client drop", move || drop(client));
    no_violations(session);
    (all.len(), timeouts.load(Ordering::SeqCst))
}

#[test]
fn datagram_receivers_of_every_kind_neither_duplicate_nor_break_the_rules() {
    let mut lines = Vec::new();
    for mode in MODES {
        for kind in 0..4 {
            let (got, timeouts) = datagram_receivers_of_one_kind(kind, mode);
            lines.push(format!(
                "{mode:?} kind {kind}: {got} of 600 received, {timeouts} timeouts"
            ));
        }
    }
    for l in &lines {
        eprintln!("{l}");
    }
}

/// A yielding task run by the set's work item, and another task of the set, queued for it
/// too, that the first waits for: a re-poll spends the run's budget, so the first's run ends
/// and the work item gets to the second. (Were a task that wakes itself re-polled without
/// bound, the second would never run; the first gives up after twice the deadline, so that
/// the test ends either way.)
#[test]
fn a_yielding_task_in_the_work_item_and_the_task_it_waits_for() {
    let session = Session::start();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let flag = Arc::new(AtomicBool::new(false));
    let gave_up = Arc::new(AtomicBool::new(false));
    let (report, seen) = channel();
    {
        let tasks2 = Arc::clone(&tasks);
        let flag = Arc::clone(&flag);
        let gave_up = Arc::clone(&gave_up);
        tasks
            .spawn(async move {
                // Both spawned from inside a task: both go to the work item.
                let (f1, g1) = (Arc::clone(&flag), Arc::clone(&gave_up));
                tasks2
                    .spawn(async move {
                        let start = Instant::now();
                        while !f1.load(Ordering::SeqCst) {
                            if start.elapsed() > DEADLINE * 2 {
                                g1.store(true, Ordering::SeqCst);
                                return;
                            }
                            yield_now().await;
                        }
                    })
                    .unwrap();
                let f2 = Arc::clone(&flag);
                tasks2
                    .spawn(async move {
                        f2.store(true, Ordering::SeqCst);
                        let _ = report.send(Instant::now());
                    })
                    .unwrap();
                drop(tasks2);
            })
            .unwrap();
    }
    let started = Instant::now();
    let ran = seen.recv_timeout(DEADLINE);
    eprintln!(
        "the awaited task ran: {:?} after {:?}",
        ran.is_ok(),
        started.elapsed()
    );
    eventually_long(|| tasks.is_empty());
    let tasks = Arc::try_unwrap(tasks).ok().unwrap();
    drop(tasks);
    let findings = session.conclude().1;
    for f in &findings {
        eprintln!("finding: {f}");
    }
    assert!(
        ran.is_ok(),
        "a task woken (deferred to the work item) never ran in {DEADLINE:?}"
    );
    assert!(!gave_up.load(Ordering::SeqCst));
}

fn eventually_long(mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE * 3;
    while !condition() {
        assert!(Instant::now() < end, "not by three deadlines");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Spin locks taken and released out of order inside event callbacks (provider threads at
/// DISPATCH_LEVEL), while the test thread and a task hold the same locks: the IRQL inside the
/// callback never drops below DISPATCH_LEVEL, and each thread ends at PASSIVE_LEVEL.
struct LockingEvents {
    locks: Arc<Vec<SpinLock<u32>>>,
    bad: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
}

impl wsk::ConnectionEvents for LockingEvents {
    fn on_receive<'a>(&self, data: wsk::ReceivedData<'a>) -> wsk::ReceiveDecision<'a> {
        let entry = Irql::current();
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut guards: Vec<Option<_>> = self.locks.iter().map(|l| Some(l.lock())).collect();
        for index in [(call + 2) % 3, call % 3, (call + 1) % 3] {
            **guards[index].as_mut().unwrap() += 1;
            drop(guards[index].take());
            if Irql::current() < Irql::DISPATCH.min(entry.max(Irql::DISPATCH))
                && Irql::current() != entry
            {
                self.bad.lock().unwrap().push(format!(
                    "in callback: {:?} (entry {entry:?})",
                    Irql::current()
                ));
            }
        }
        if Irql::current() != entry {
            self.bad.lock().unwrap().push(format!(
                "callback left at {:?}, entered at {entry:?}",
                Irql::current()
            ));
        }
        data.consume()
    }
}

#[test]
fn spin_locks_out_of_order_in_event_callbacks_racing_the_same_locks_elsewhere() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let locks: Arc<Vec<SpinLock<u32>>> = Arc::new((0..3).map(SpinLock::new).collect());
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = ConnectionSocket::connect_with_events(
        &client,
        listener.local_addr().unwrap(),
        LockingEvents {
            locks: Arc::clone(&locks),
            bad: Arc::clone(&bad),
            calls: Arc::clone(&calls),
        },
    )
    .wait()
    .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let contenders: Vec<_> = (0..2usize)
        .map(|t| {
            let (locks, stop, bad) = (Arc::clone(&locks), Arc::clone(&stop), Arc::clone(&bad));
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let mut guards: Vec<Option<_>> = locks.iter().map(|l| Some(l.lock())).collect();
                    for (k, index) in [(i + t) % 3, (i + t + 2) % 3, (i + t + 1) % 3]
                        .into_iter()
                        .enumerate()
                    {
                        drop(guards[index].take());
                        let expected = if k < 2 { Irql::DISPATCH } else { Irql::PASSIVE };
                        if Irql::current() != expected {
                            bad.lock()
                                .unwrap()
                                .push(format!("thread {t}: {:?} after {k}", Irql::current()));
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for i in 0..300u32 {
        peer.write_all(&i.to_le_bytes()).unwrap();
        if i % 16 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    eventually("callbacks ran", || calls.load(Ordering::SeqCst) > 0);
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::SeqCst);
    for c in contenders {
        within("contender", move || c.join().unwrap());
    }
    assert!(
        bad.lock().unwrap().is_empty(),
        "{:?}",
        &bad.lock().unwrap()[..bad.lock().unwrap().len().min(5)]
    );
    assert_eq!(Irql::current(), Irql::PASSIVE);
    drop(socket);
    within("client drop", move || drop(client));
    no_violations(session);
}

/// A `TaskSet` dropped at PASSIVE_LEVEL by a thread that holds a `SpinLock` (so at
/// DISPATCH_LEVEL: the drop cannot wait), while its tasks are deferred to its work item and
/// one is being polled on another thread: every future is dropped, nothing leaks, the IRQL
/// comes back.
#[test]
fn a_task_set_dropped_under_a_spin_lock_while_tasks_are_deferred_and_polled() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(17).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, peer) = connected(&client);
    let drain = std::thread::spawn(move || {
        let mut peer = peer;
        let mut sink = [0u8; 4096];
        while let Ok(n) = peer.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    let socket = Arc::new(socket);
    let dropped = Arc::new(AtomicUsize::new(0));
    let lock = SpinLock::new(());
    for round in 0..10 {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let counter = Arc::new(Counter::default());
        for i in 0..6 {
            let socket = Arc::clone(&socket);
            let d = DropCount(Arc::clone(&dropped));
            let counter = Arc::clone(&counter);
            tasks
                .spawn(async move {
                    let _d = d;
                    if i % 2 == 0 {
                        counter.reach(1).await;
                    }
                    loop {
                        let (sent, _) = socket.send(Buf::from_slice(b"q").unwrap()).await;
                        if sent.is_err() {
                            return;
                        }
                    }
                })
                .unwrap();
        }
        // Woken from another thread: those go to the work item too.
        let c2 = Arc::clone(&counter);
        let waker = std::thread::spawn(move || c2.bump());
        std::thread::sleep(Duration::from_micros(200 * round));
        {
            let guard = lock.lock();
            drop(tasks);
            drop(guard);
        }
        assert_eq!(Irql::current(), Irql::PASSIVE);
        waker.join().unwrap();
    }
    eventually("every future dropped", || {
        dropped.load(Ordering::SeqCst) == 60
    });
    drop(socket);
    within("client drop", move || drop(client));
    let _ = within("drain", move || drain.join());
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
}

/// Everything that waits, called under a held `SpinLock` (DISPATCH_LEVEL): errors, never a
/// panic, a hang or a leak; the client dropped under the lock tears down from a work item.
#[test]
fn waits_and_teardowns_under_a_held_spin_lock() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let (dsocket, _local, _dpeer) = bound_datagram(&client, "127.0.0.1:0");
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let lock = SpinLock::new(0u32);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = listener.local_addr().unwrap();
    let guard = lock.lock();
    assert!(matches!(
        WskClient::register(driver(&session)),
        Err(Error::IRQL_TOO_HIGH)
    ));
    assert_eq!(
        client.connect(remote).wait().err(),
        Some(Error::IRQL_TOO_HIGH)
    );
    let (r, buf) = socket.receive(Buf::with_capacity(8).unwrap()).wait();
    assert_eq!(r.err(), Some(Error::IRQL_TOO_HIGH));
    assert_eq!(buf.capacity(), 8);
    drop(buf);
    let (r, _) = dsocket
        .send_to(Buf::from_slice(b"x").unwrap(), remote)
        .wait_timeout(0);
    assert_eq!(r.err(), Some(Error::IRQL_TOO_HIGH));
    assert_eq!(
        wsk::task::block_on(async {}).err(),
        Some(Error::IRQL_TOO_HIGH)
    );
    assert_eq!(tasks.wait_idle().err(), Some(Error::IRQL_TOO_HIGH));
    let closed = socket.close().wait();
    assert_eq!(closed.err(), Some(Error::IRQL_TOO_HIGH));
    drop(tasks);
    drop(dsocket);
    drop(client);
    drop(guard);
    assert_eq!(Irql::current(), Irql::PASSIVE);
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
}

/// A user wake-up racing the set's drop at PASSIVE_LEVEL. `schedule` reads the task IDLE and
/// then defers it (no compare-exchange): if, in between, the drop's `cancel_all` runs the task
/// to DONE, the drop waits for nothing (no task live, no run of the item counted yet) and frees
/// the work item — then the waker queues it (`IoQueueWorkItemEx` on a freed / null item) and
/// leaves a reference to the task, and so the set's core, in the deferred list for good.
/// Stress: wakers on threads contended by spinners, one wake per round racing the drop.
#[test]
fn a_user_wake_racing_the_sets_drop() {
    let session = Session::start();
    const ROUNDS: usize = 4000;
    let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    let round_no = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    // Spinners: more runnable threads than cores, so wakers get preempted anywhere.
    for _ in 0..3 {
        let stop = Arc::clone(&stop);
        helpers.push(std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        }));
    }
    for _ in 0..3 {
        let (slot, round_no, stop) = (Arc::clone(&slot), Arc::clone(&round_no), Arc::clone(&stop));
        helpers.push(std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = round_no.load(Ordering::SeqCst);
                if now == last {
                    std::hint::spin_loop();
                    continue;
                }
                last = now;
                let waker = slot.lock().unwrap().clone();
                if let Some(waker) = waker {
                    waker.wake_by_ref();
                    waker.wake();
                }
            }
        }));
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    for round in 1..=ROUNDS {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let slot2 = Arc::clone(&slot);
        let d = DropCount(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _d = d;
                let mut first = true;
                std::future::poll_fn(move |cx| {
                    if first {
                        first = false;
                        *slot2.lock().unwrap() = Some(cx.waker().clone());
                    }
                    Poll::<()>::Pending
                })
                .await
            })
            .unwrap();
        round_no.store(round, Ordering::SeqCst);
        if round % 3 == 0 {
            std::thread::yield_now();
        }
        drop(tasks);
        if round % 200 == 0 {
            let violations = session.take_violations();
            assert!(violations.is_empty(), "round {round}: {violations:#?}");
        }
    }
    stop.store(true, Ordering::SeqCst);
    for h in helpers {
        h.join().unwrap();
    }
    *slot.lock().unwrap() = None;
    assert_eq!(dropped.load(Ordering::SeqCst), ROUNDS);
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
}

/// The same race with no user waker at all: a task continued in its receive's completion
/// routine uses up its budget on sends that complete inline; the end of that run stores IDLE
/// and then defers the task, while the set is dropped at PASSIVE_LEVEL on the test thread.
#[test]
fn a_run_ending_on_its_budget_racing_the_sets_drop() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(23).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let drain = {
        let mut peer = peer.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while let Ok(n) = peer.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        })
    };
    let socket = Arc::new(socket);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut stopped_at = None;
    for round in 1..=1500usize {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let socket2 = Arc::clone(&socket);
        tasks
            .spawn(async move {
                let (r, _) = socket2.receive(Buf::with_capacity(1).unwrap()).await;
                if r.is_err() {
                    return;
                }
                for _ in 0..=wsk::task::RUN_BUDGET {
                    let (sent, _) = socket2.send(Buf::from_slice(b"b").unwrap()).await;
                    if sent.is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        peer.write_all(b"r").unwrap();
        // Let the completion routine's run get going, then drop the set.
        let until = Instant::now() + Duration::from_micros((round % 60) as u64 * 5);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        drop(tasks);
        let violations = session.take_violations();
        if !violations.is_empty() {
            eprintln!("round {round}: {violations:#?}");
            stopped_at = Some(round);
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for s in spinners {
        s.join().unwrap();
    }
    drop(socket);
    within("client drop", move || drop(client));
    drop(peer);
    let _ = within("drain", move || drain.join());
    assert!(
        stopped_at.is_none(),
        "a run's end raced the set's drop (round {stopped_at:?})"
    );
    no_violations(session);
}

/// The host's count of datagrams dropped for a full receive buffer (`RcvbufErrors` of
/// /proc/net/snmp; 0 where unavailable).
fn udp_receive_buffer_drops() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
