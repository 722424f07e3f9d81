//! Third adversarial review: the executor's state machine (`wsk::task`). Public API only.

use std::future::Future;
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wsk::irql::Irql;
use wsk::task::TaskSet;
use wsk::{Buf, SpinLock, WskClient};
use wsk_host::Session;

mod common;
use common::{
    DEADLINE, DropCount, connected, driver, eventually, no_violations, within, yield_now,
};

/// A one-shot gate: `open` wakes whoever waits (with `wake`, from wherever it is called).
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    async fn wait(self: Arc<Self>) {
        std::future::poll_fn(|cx| {
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}

/// Fails the test if two threads poll the inner future at once, or if it is polled after it
/// finished or dropped while polled.
struct Exclusive<F> {
    inner: F,
    in_poll: Arc<AtomicBool>,
    finished: bool,
    violations: Arc<AtomicUsize>,
}

impl<F: Future<Output = ()> + Unpin> Future for Exclusive<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.in_poll.swap(true, Ordering::SeqCst) || self.finished {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        // Widen the window a little.
        std::hint::spin_loop();
        let r = Pin::new(&mut self.inner).poll(cx);
        if r.is_ready() {
            self.finished = true;
        }
        self.in_poll.store(false, Ordering::SeqCst);
        r
    }
}

impl<F> Drop for Exclusive<F> {
    fn drop(&mut self) {
        if self.in_poll.load(Ordering::SeqCst) {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// ---- 1. a task woken during a yielding task's run in the work item ---------------------------

/// Task B waits for a gate. Task A yields in a loop (its first run ends in `spawn` on the
/// budget, so it continues in the work item); on its 40th poll — in the work item — it opens
/// B's gate: B's wake-up hands it to the work item. A's run then ends on its budget and A goes
/// back to the work item's list too. Every later run of the work item must get to B: A waits
/// for B (and gives up after two deadlines so that the test ends either way).
#[test]
fn a_task_woken_during_a_yielders_run_in_the_work_item_is_not_starved() {
    let session = Session::start();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let gate = Arc::new(Gate::default());
    let b_ran = Arc::new(AtomicBool::new(false));
    let a_done = Arc::new(AtomicBool::new(false));
    let a_polls = Arc::new(AtomicUsize::new(0));
    let opened_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let b_latency: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    {
        let gate = Arc::clone(&gate);
        let b_ran = Arc::clone(&b_ran);
        let opened_at = Arc::clone(&opened_at);
        let b_latency = Arc::clone(&b_latency);
        tasks
            .spawn(async move {
                gate.wait().await;
                let at = opened_at.lock().unwrap().unwrap();
                *b_latency.lock().unwrap() = Some(at.elapsed());
                b_ran.store(true, Ordering::SeqCst);
            })
            .unwrap();
    }
    {
        let gate = Arc::clone(&gate);
        let b_ran = Arc::clone(&b_ran);
        let a_done = Arc::clone(&a_done);
        let a_polls = Arc::clone(&a_polls);
        let opened_at = Arc::clone(&opened_at);
        tasks
            .spawn(async move {
                let start = Instant::now();
                let mut polls = 0usize;
                while !b_ran.load(Ordering::SeqCst) && start.elapsed() < DEADLINE * 2 {
                    polls += 1;
                    if polls == 40 {
                        *opened_at.lock().unwrap() = Some(Instant::now());
                        gate.open();
                    }
                    yield_now().await;
                }
                a_polls.store(polls, Ordering::SeqCst);
                a_done.store(true, Ordering::SeqCst);
            })
            .unwrap();
    }
    let end = Instant::now() + DEADLINE * 3;
    while !(a_done.load(Ordering::SeqCst) && tasks.is_empty()) {
        assert!(Instant::now() < end, "the tasks never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let latency = *b_latency.lock().unwrap();
    let polls = a_polls.load(Ordering::SeqCst);
    eprintln!("B ran {latency:?} after its wake-up; A polled {polls} times meanwhile");
    within("set drop", move || drop(tasks));
    no_violations(session);
    assert!(
        latency.is_some_and(|l| l < DEADLINE),
        "task B, woken (handed to the work item) while A ran in the work item, was not polled \
         until A gave up: {latency:?} later, after {polls} polls of A — the work item's list \
         starves it"
    );
}

// ---- 2. wakers kept after the set (dropped inside its own task) and the client are gone -------

#[test]
fn wakers_kept_after_the_set_dropped_in_its_task_and_the_client_gone() {
    for round in 0..4 {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let slot: Arc<Mutex<Option<TaskSet>>> =
            Arc::new(Mutex::new(Some(TaskSet::new(driver(&session)).unwrap())));
        let kept: Arc<Mutex<Vec<Waker>>> = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::default());
        {
            let guard = slot.lock().unwrap();
            let set = guard.as_ref().unwrap();
            // A task pending on a gate whose waker is kept too.
            for _ in 0..3 {
                let gate = Arc::clone(&gate);
                let d = DropCount(Arc::clone(&dropped));
                let kept = Arc::clone(&kept);
                set.spawn(async move {
                    let _d = d;
                    std::future::poll_fn(|cx| {
                        kept.lock().unwrap().push(cx.waker().clone());
                        Poll::Ready(())
                    })
                    .await;
                    gate.wait().await;
                    std::future::pending::<()>().await;
                })
                .unwrap();
            }
            let slot2 = Arc::clone(&slot);
            let kept2 = Arc::clone(&kept);
            let d = DropCount(Arc::clone(&dropped));
            set.spawn(async move {
                let _d = d;
                std::future::poll_fn(|cx| {
                    kept2.lock().unwrap().push(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
                let (r, _buf) = socket.receive(Buf::with_capacity(8).unwrap()).await;
                let _ = r;
                std::future::poll_fn(|cx| {
                    kept2.lock().unwrap().push(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
                // The set goes from inside its own task (in the completion routine).
                let set = slot2.lock().unwrap().take();
                drop(set);
                // And the socket with the task.
            })
            .unwrap();
        }
        peer.write_all(b"x").unwrap();
        eventually("every future dropped", || {
            dropped.load(Ordering::SeqCst) == 4
        });
        assert!(slot.lock().unwrap().is_none());
        within("client drop", move || drop(client));
        drop(peer);
        // The gate's own waker slot (the test's) goes now, with the other kept wakers below.
        let gate_waker = gate.waker.lock().unwrap().take();
        kept.lock().unwrap().extend(gate_waker);
        // Wake them all now, from several threads and at DISPATCH_LEVEL.
        let wakers: Vec<Waker> = std::mem::take(&mut *kept.lock().unwrap());
        let wakers = Arc::new(wakers);
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let wakers = Arc::clone(&wakers);
                std::thread::spawn(move || {
                    let lock = SpinLock::new(());
                    for w in wakers.iter() {
                        let c = w.clone();
                        if i == 1 {
                            let _g = lock.lock();
                            c.wake_by_ref();
                            c.wake();
                        } else {
                            c.wake();
                            w.wake_by_ref();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Irql::current(), Irql::PASSIVE);
        if round % 2 == 0 {
            drop(wakers);
        } else {
            let wakers = Arc::try_unwrap(wakers).unwrap();
            for w in wakers {
                within("a waker dropped on its own thread", move || drop(w));
            }
        }
        assert!(session.wait_for_work_items(DEADLINE));
        no_violations(session);
    }
}

// ---- 3. double polls: wakes from user threads racing completions of the task's own requests ---

#[test]
fn tasks_woken_by_threads_and_their_completions_at_once_are_polled_by_one_thread() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let violations = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let wakers: Arc<Mutex<Vec<Waker>>> = Arc::new(Mutex::new(Vec::new()));
    const TASKS: usize = 6;
    const ROUNDS: usize = 150;
    let mut peers = Vec::new();
    for _ in 0..TASKS {
        let (socket, peer) = connected(&client);
        peers.push(peer);
        let wakers = Arc::clone(&wakers);
        let finished = Arc::clone(&finished);
        let body = Box::pin(async move {
            let mut got = 0usize;
            while got < ROUNDS {
                // Publish the waker (other threads wake it at random), yield, send, receive.
                std::future::poll_fn(|cx| {
                    wakers.lock().unwrap().push(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
                if got % 3 == 0 {
                    yield_now().await;
                }
                let (sent, _) = socket.send(Buf::from_slice(b"p").unwrap()).await;
                if sent.is_err() {
                    return;
                }
                let (r, _) = socket.receive(Buf::with_capacity(64).unwrap()).await;
                match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
            finished.fetch_add(1, Ordering::SeqCst);
        });
        tasks
            .spawn(Exclusive {
                inner: body,
                in_poll: Arc::new(AtomicBool::new(false)),
                finished: false,
                violations: Arc::clone(&violations),
            })
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let wakers_threads: Vec<_> = (0..2)
        .map(|_| {
            let wakers = Arc::clone(&wakers);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let batch: Vec<Waker> = std::mem::take(&mut *wakers.lock().unwrap());
                    for w in &batch {
                        w.wake_by_ref();
                    }
                    for w in batch {
                        w.wake();
                    }
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    // Echo peers: each byte received is sent back.
    let peer_threads: Vec<_> = peers
        .into_iter()
        .map(|mut peer| {
            std::thread::spawn(move || {
                let mut b = [0u8; 64];
                while let Ok(n) = peer.read(&mut b) {
                    if n == 0 || peer.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    let end = Instant::now() + DEADLINE * 2;
    while finished.load(Ordering::SeqCst) < TASKS && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    for t in wakers_threads {
        t.join().unwrap();
    }
    let done = finished.load(Ordering::SeqCst);
    let tasks = Arc::try_unwrap(tasks).ok().unwrap();
    within("set drop", move || drop(tasks));
    wakers.lock().unwrap().clear();
    within("client drop", move || drop(client));
    for t in peer_threads {
        let _ = within("peer", move || t.join());
    }
    no_violations(session);
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a task polled twice at once"
    );
    assert_eq!(done, TASKS, "tasks stuck (a lost wake-up)");
}

// ---- 4. cancel_all's cost with tasks handed to the work item ---------------------------------

/// `cancel_all` (here in the set's drop under a held `SpinLock`, so at DISPATCH_LEVEL) rescans
/// the task list from its head for each task it cancels, and a cancelled task handed to the
/// work item stays in that list until the work item drops it: time spent at DISPATCH_LEVEL.
#[test]
fn cancel_all_at_dispatch_level_over_many_tasks() {
    let session = Session::start();
    let dropped = Arc::new(AtomicUsize::new(0));
    let n_env: usize = std::env::var("ATTACK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let tasks = TaskSet::new(driver(&session)).unwrap();
    #[allow(non_snake_case)]
    let N = n_env;
    for _ in 0..N {
        let d = DropCount(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _d = d;
                std::future::pending::<()>().await;
            })
            .unwrap();
    }
    // The system worker thread busy elsewhere meanwhile (a single processor, say): a task of
    // another set occupies it until the drop returns (ATTACK_STALL=0 turns this off).
    let stall = !std::env::var("ATTACK_STALL").is_ok_and(|v| v == "0");
    let done = Arc::new(AtomicBool::new(false));
    let stall_set = TaskSet::new(driver(&session)).unwrap();
    if stall {
        let done = Arc::clone(&done);
        let gate = Arc::new(Gate::default());
        let g2 = Arc::clone(&gate);
        stall_set
            .spawn(async move {
                g2.wait().await;
                let start = Instant::now();
                while !done.load(Ordering::SeqCst) && start.elapsed() < DEADLINE {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        gate.open();
        std::thread::sleep(Duration::from_millis(50));
    }
    let lock = SpinLock::new(());
    let started = Instant::now();
    {
        let _g = lock.lock();
        drop(tasks);
    }
    let spent = started.elapsed();
    done.store(true, Ordering::SeqCst);
    drop(stall_set);
    eprintln!("the set's drop of {N} tasks under a spin lock: {spent:?} at DISPATCH_LEVEL");
    assert_eq!(Irql::current(), Irql::PASSIVE);
    eventually("every future dropped", || {
        dropped.load(Ordering::SeqCst) == N
    });
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
    assert!(
        spent < Duration::from_millis(100),
        "one cancel_all held the processor at DISPATCH_LEVEL for {spent:?} over {N} tasks"
    );
}

// ---- 5. spawn storms from inside tasks, the set dropped from another thread meanwhile ---------

fn storm(
    tasks: Arc<Mutex<Option<Arc<TaskSet>>>>,
    depth: u32,
    spawned: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) -> impl Future<Output = ()> + Send + 'static {
    let d = DropCount(dropped.clone());
    async move {
        let _d = d;
        yield_now().await;
        if depth > 0 {
            let set = tasks.lock().unwrap().clone();
            if let Some(set) = set {
                for _ in 0..3 {
                    if set
                        .spawn(storm(
                            Arc::clone(&tasks),
                            depth - 1,
                            Arc::clone(&spawned),
                            Arc::clone(&dropped),
                        ))
                        .is_ok()
                    {
                        spawned.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
        for _ in 0..3 {
            yield_now().await;
        }
    }
}

#[test]
fn spawn_storms_inside_tasks_while_the_set_goes_from_another_thread() {
    for round in 0..8u64 {
        let session = Session::start();
        let spawned = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let holder: Arc<Mutex<Option<Arc<TaskSet>>>> = Arc::new(Mutex::new(Some(Arc::new(
            TaskSet::new(driver(&session)).unwrap(),
        ))));
        {
            let set = holder.lock().unwrap().clone().unwrap();
            for _ in 0..4 {
                set.spawn(storm(
                    Arc::clone(&holder),
                    6,
                    Arc::clone(&spawned),
                    Arc::clone(&dropped),
                ))
                .unwrap();
                spawned.fetch_add(1, Ordering::SeqCst);
            }
        }
        std::thread::sleep(Duration::from_micros(300 * round));
        // The holder lets go; the last Arc — possibly a task's — drops the set.
        let set = holder.lock().unwrap().take();
        within("set drop from another thread", move || drop(set));
        eventually("every future dropped", || {
            dropped.load(Ordering::SeqCst) == spawned.load(Ordering::SeqCst)
        });
        assert!(session.wait_for_work_items(DEADLINE));
        eprintln!("round {round}: {} tasks", spawned.load(Ordering::SeqCst));
        no_violations(session);
    }
}

// ---- 6. a user wake racing the set's drop while the work item is busy ------------------------

/// A task that keeps the work item running (it yields until cancelled), and a task waiting
/// for a gate that another thread opens just as the set is dropped at PASSIVE_LEVEL: the
/// wake-up may hand the task to the work item while a run of the item is in progress.
#[test]
fn a_user_wake_racing_the_sets_drop_while_the_work_item_runs() {
    let session = Session::start();
    let dropped = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    const ROUNDS: usize = 400;
    for round in 0..ROUNDS {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let d = DropCount(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _d = d;
                loop {
                    yield_now().await;
                }
            })
            .unwrap();
        let gate = Arc::new(Gate::default());
        let d = DropCount(Arc::clone(&dropped));
        let g2 = Arc::clone(&gate);
        tasks
            .spawn(async move {
                let _d = d;
                g2.wait().await;
            })
            .unwrap();
        let opener = std::thread::spawn(move || {
            for _ in 0..(round % 50) {
                std::hint::spin_loop();
            }
            gate.open();
        });
        within("set drop", move || drop(tasks));
        opener.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for s in spinners {
        s.join().unwrap();
    }
    eventually("every future dropped", || {
        dropped.load(Ordering::SeqCst) == 2 * ROUNDS
    });
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
}

/// The same from where `cancel_all` is documented to be callable and the host measures the
/// time at DISPATCH_LEVEL: a task continued in the completion routine of its receive (the
/// provider's thread) cancels a set of many tasks that wait for nothing in particular.
#[test]
fn cancel_all_in_a_completion_routine_over_many_tasks() {
    let session = Session::start();
    session.set_faults(
        wsk_host::FaultPlan::new(3).completion(wsk_host::CompletionMode::AlwaysPending),
    );
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    const N: usize = 20_000;
    let dropped = Arc::new(AtomicUsize::new(0));
    let big = Arc::new(TaskSet::new(driver(&session)).unwrap());
    for _ in 0..N {
        let d = DropCount(Arc::clone(&dropped));
        big.spawn(async move {
            let _d = d;
            std::future::pending::<()>().await;
        })
        .unwrap();
    }
    let runner = TaskSet::new(driver(&session)).unwrap();
    let (report, seen) = std::sync::mpsc::channel();
    // Models a processor the system worker thread shares with the completion routine (a
    // single processor, or a worker thread not scheduled meanwhile): a task of another set
    // occupies the worker thread until the cancel_all returns (ATTACK_STALL=0 turns this off).
    let stall = !std::env::var("ATTACK_STALL").is_ok_and(|v| v == "0");
    let cancelled = Arc::new(AtomicBool::new(false));
    let stall_set = TaskSet::new(driver(&session)).unwrap();
    if stall {
        let cancelled = Arc::clone(&cancelled);
        let gate = Arc::new(Gate::default());
        let g2 = Arc::clone(&gate);
        stall_set
            .spawn(async move {
                g2.wait().await;
                let start = Instant::now();
                while !cancelled.load(Ordering::SeqCst) && start.elapsed() < DEADLINE {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        gate.open(); // to the work item, which then spins
        std::thread::sleep(Duration::from_millis(50));
    }
    {
        let big = Arc::clone(&big);
        let cancelled = Arc::clone(&cancelled);
        runner
            .spawn(async move {
                let (r, _buf) = socket.receive(Buf::with_capacity(8).unwrap()).await;
                let _ = r;
                let started = Instant::now();
                big.cancel_all();
                cancelled.store(true, Ordering::SeqCst);
                let _ = report.send(started.elapsed());
            })
            .unwrap();
    }
    peer.write_all(b"x").unwrap();
    let spent = seen.recv_timeout(DEADLINE * 3).unwrap();
    drop(stall_set);
    eprintln!("cancel_all of {N} tasks in a completion routine: {spent:?}");
    eventually("every future dropped", || {
        dropped.load(Ordering::SeqCst) == N
    });
    within("sets drop", move || {
        drop(runner);
        drop(big);
    });
    within("client drop", move || drop(client));
    assert!(session.wait_for_work_items(DEADLINE));
    let (_, violations) = session.conclude();
    for v in &violations {
        eprintln!("finding: {v:?}");
    }
    assert!(violations.is_empty(), "violations: {violations:#?}");
    assert!(
        spent < Duration::from_millis(100),
        "cancel_all in a completion routine spent {spent:?} at DISPATCH_LEVEL over {N} tasks"
    );
}

// ---- 7. budget: a task that both yields and issues requests that complete inline -------------

/// Alternating sends that complete inline (each spends the budget as an operation) and
/// yields (each re-poll spends it too): the first run, inside `spawn` on the caller's thread,
/// still ends after at most RUN_BUDGET + 1 polls, and the task finishes in the work item.
#[test]
fn a_task_mixing_inline_sends_and_yields_ends_its_run_on_the_budget() {
    let session = Session::start();
    session
        .set_faults(wsk_host::FaultPlan::new(9).completion(wsk_host::CompletionMode::AlwaysInline));
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
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let on_spawner = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let me = std::thread::current().id();
    {
        let on_spawner = Arc::clone(&on_spawner);
        let finished = Arc::clone(&finished);
        tasks
            .spawn(async move {
                for i in 0..2_000usize {
                    if std::thread::current().id() == me {
                        on_spawner.fetch_add(1, Ordering::SeqCst);
                    }
                    if i % 2 == 0 {
                        let (r, _) = socket.send(Buf::from_slice(b"m").unwrap()).await;
                        r.unwrap();
                    } else {
                        yield_now().await;
                        yield_now().await;
                    }
                }
                finished.store(true, Ordering::SeqCst);
            })
            .unwrap();
    }
    let first_run = on_spawner.load(Ordering::SeqCst);
    eventually("the task finished", || finished.load(Ordering::SeqCst));
    within("set drop", move || drop(tasks));
    within("client drop", move || drop(client));
    let _ = within("drain", move || drain.join());
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
    eprintln!("body iterations in the first run: {first_run}");
    assert!(
        first_run <= wsk::task::RUN_BUDGET as usize + 1,
        "the first run polled {first_run} body iterations"
    );
}

/// The starvation of the first test with no yield at all: task A sends in a loop, every send
/// completing inline, so each of its runs ends on the budget and A goes back to the work
/// item's list — above B, woken by A during A's run in the work item.
#[test]
fn a_task_woken_during_a_bulk_senders_run_in_the_work_item_is_not_starved() {
    let session = Session::start();
    session.set_faults(
        wsk_host::FaultPlan::new(11).completion(wsk_host::CompletionMode::AlwaysInline),
    );
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, peer) = connected(&client);
    let drain = std::thread::spawn(move || {
        let mut peer = peer;
        let mut sink = [0u8; 65536];
        while let Ok(n) = peer.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let gate = Arc::new(Gate::default());
    let b_ran = Arc::new(AtomicBool::new(false));
    let sends = Arc::new(AtomicUsize::new(0));
    let opened_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let b_latency: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    {
        let gate = Arc::clone(&gate);
        let b_ran = Arc::clone(&b_ran);
        let opened_at = Arc::clone(&opened_at);
        let b_latency = Arc::clone(&b_latency);
        tasks
            .spawn(async move {
                gate.wait().await;
                let at = opened_at.lock().unwrap().unwrap();
                *b_latency.lock().unwrap() = Some(at.elapsed());
                b_ran.store(true, Ordering::SeqCst);
            })
            .unwrap();
    }
    {
        let gate = Arc::clone(&gate);
        let b_ran = Arc::clone(&b_ran);
        let sends = Arc::clone(&sends);
        let opened_at = Arc::clone(&opened_at);
        tasks
            .spawn(async move {
                let start = Instant::now();
                let mut n = 0usize;
                while !b_ran.load(Ordering::SeqCst) && start.elapsed() < DEADLINE {
                    n += 1;
                    if n == 40 {
                        *opened_at.lock().unwrap() = Some(Instant::now());
                        gate.open();
                    }
                    let (r, _) = socket.send(Buf::from_slice(b"s").unwrap()).await;
                    if r.is_err() {
                        break;
                    }
                }
                sends.store(n, Ordering::SeqCst);
            })
            .unwrap();
    }
    let end = Instant::now() + DEADLINE * 3;
    while !tasks.is_empty() {
        assert!(Instant::now() < end, "the tasks never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let latency = *b_latency.lock().unwrap();
    let n = sends.load(Ordering::SeqCst);
    eprintln!("B ran {latency:?} after its wake-up; A sent {n} times meanwhile");
    within("set drop", move || drop(tasks));
    within("client drop", move || drop(client));
    let _ = within("drain", move || drain.join());
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
    assert!(
        latency.is_some_and(|l| l < Duration::from_secs(1)),
        "task B, woken while A ran in the work item, waited {latency:?} ({n} sends of A)"
    );
}

// ---- 8. a stream of user wake-ups racing the set's drop (a wider window for preemption) -------

/// `wake` from a user thread at PASSIVE_LEVEL hands a task to the work item in two steps: it
/// links the task in the set's list for the work item, then queues the item unless it is
/// queued. A thread preempted between the two while a run of the item in progress takes the
/// task from the list, finishes it (cancelled by the drop) and signals the item idle lets the
/// set's drop free the work item before the waker queues it. A thread wakes a thousand tasks
/// of the set one after the other while the set is dropped, with a task keeping the item busy
/// and spinners contending for the processors.
#[test]
fn a_stream_of_user_wakes_racing_the_sets_drop() {
    let session = Session::start();
    let dropped = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let rounds: usize = std::env::var("ATTACK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    const K: usize = 1000;
    let mut total = 0;
    for round in 0..rounds {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let d = DropCount(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _d = d;
                loop {
                    yield_now().await;
                }
            })
            .unwrap();
        let gates: Vec<Arc<Gate>> = (0..K).map(|_| Arc::new(Gate::default())).collect();
        for gate in &gates {
            let d = DropCount(Arc::clone(&dropped));
            let g2 = Arc::clone(gate);
            tasks
                .spawn(async move {
                    let _d = d;
                    g2.wait().await;
                    yield_now().await;
                })
                .unwrap();
        }
        total += K + 1;
        let (go, ready) = std::sync::mpsc::channel::<()>();
        let opener = std::thread::spawn(move || {
            // The waker thread runs under SCHED_IDLE (where `chrt` is available; ATTACK_IDLE=0
            // turns this off): preempted by every other thread, at any instruction, for long
            // — as a thread at PASSIVE_LEVEL, where `wake` runs, can be.
            if !std::env::var("ATTACK_IDLE").is_ok_and(|v| v == "0") {
                if let Ok(me) = std::fs::read_link("/proc/thread-self") {
                    let tid = me.file_name().unwrap().to_string_lossy().into_owned();
                    let _ = std::process::Command::new("chrt")
                        .args(["--idle", "-p", "0", &tid])
                        .status();
                }
            }
            ready.recv().unwrap();
            for gate in gates {
                gate.open();
            }
        });
        go.send(()).unwrap();
        for _ in 0..(round % 7) * 1000 {
            std::hint::spin_loop();
        }
        within("set drop", move || drop(tasks));
        opener.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for s in spinners {
        s.join().unwrap();
    }
    eventually("every future dropped", || {
        dropped.load(Ordering::SeqCst) == total
    });
    assert!(session.wait_for_work_items(DEADLINE));
    no_violations(session);
}
