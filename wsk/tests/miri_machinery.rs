//! The unsafe machinery of `wsk` that needs no network — spin locks, the task executor,
//! `block_on`'s waker, buffers and IRPs, a client's completion blocks and spare sockets with
//! every socket creation failing at the provider — driven from several threads, on
//! wsk-host's kernel functions (events, spin locks, pool, MDLs, IRPs, the emulated IRQL) and
//! its provider's registration.
//!
//! The test suite also runs this file under Miri (Stacked Borrows), which checks every
//! pointer these types hand around; the iteration counts are smaller there (`cfg(miri)`) so
//! that the interpreter finishes in a few minutes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;

use wsk::irql::Irql;
use wsk::task::{TaskSet, block_on};
use wsk::{Buf, BufList, Irp, SpinLock};
use wsk_host::Session;
use wsk_sys::*;

mod common;
use common::driver;

/// Threads that contend for a lock or wake tasks.
const THREADS: usize = if cfg!(miri) { 4 } else { 8 };
/// Lock round trips, wake-ups or tasks per thread.
const ROUNDS: usize = if cfg!(miri) { 25 } else { 2_000 };
/// Tasks in a set.
const TASKS: usize = if cfg!(miri) { 6 } else { 64 };

// ---- spin locks ---------------------------------------------------------------------------------

#[test]
fn spin_lock_serialises_threads() {
    let session = Session::start();
    let lock = Arc::new(SpinLock::new((0usize, Vec::new())));
    let workers: Vec<_> = (0..THREADS)
        .map(|id| {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let mut guard = lock.lock();
                    assert_eq!(Irql::current(), Irql::DISPATCH);
                    // A read-modify-write in two steps: lost updates would show.
                    let seen = guard.0;
                    guard.1.push(id);
                    guard.0 = seen + 1;
                }
                assert_eq!(Irql::current(), Irql::PASSIVE);
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut lock = Arc::into_inner(lock).unwrap();
    let (count, ids) = lock.get_mut();
    assert_eq!(*count, THREADS * ROUNDS);
    assert_eq!(ids.len(), THREADS * ROUNDS);
    for id in 0..THREADS {
        assert_eq!(ids.iter().filter(|&&i| i == id).count(), ROUNDS);
    }
    session.finish();
}

#[test]
fn spin_lock_guards_restore_the_irql_in_drop_order() {
    let session = Session::start();
    let outer = SpinLock::new(String::from("outer"));
    let inner = SpinLock::new(vec![1u8]);
    assert_eq!(Irql::current(), Irql::PASSIVE);
    {
        let mut first = outer.lock();
        assert_eq!(Irql::current(), Irql::DISPATCH);
        {
            let mut second = inner.lock();
            assert_eq!(Irql::current(), Irql::DISPATCH);
            second.push(2);
            first.push_str("+inner");
        }
        // Releasing the inner lock goes back to the IRQL it was taken at: still DISPATCH.
        assert_eq!(Irql::current(), Irql::DISPATCH);
        assert_eq!(*first, "outer+inner");
        // Taken again while the outer one is held, from a guard's deref.
        assert_eq!(*inner.lock(), [1, 2]);
        assert_eq!(Irql::current(), Irql::DISPATCH);
    }
    assert_eq!(Irql::current(), Irql::PASSIVE);

    // Locked from another thread right after this one released it.
    let shared = Arc::new(SpinLock::new(0u32));
    let guard = shared.lock();
    let other = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            *shared.lock() += 1;
        })
    };
    thread::yield_now();
    drop(guard);
    other.join().unwrap();
    assert_eq!(*shared.lock(), 1);
    assert_eq!(Irql::current(), Irql::PASSIVE);

    // Dropping the lock drops its data.
    let dropped = Arc::new(AtomicUsize::new(0));
    drop(SpinLock::new(CountDrop(Arc::clone(&dropped))));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    session.finish();
}

// ---- helpers for futures --------------------------------------------------------------------------

/// Counts its drops.
struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Tickets handed out by other threads, and the waker of the future waiting for them.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, Option<Waker>)>,
}

impl Gate {
    /// Adds a ticket and wakes the waiting future, through `wake` or `wake_by_ref`.
    fn release(&self, by_ref: bool) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            state.0 += 1;
            state.1.clone()
        };
        if let Some(waker) = waker {
            if by_ref {
                waker.wake_by_ref();
            } else {
                waker.wake();
            }
        }
    }

    /// A future that completes once `needed` tickets were released.
    fn wait(self: &Arc<Self>, needed: usize) -> Tickets {
        Tickets {
            gate: Arc::clone(self),
            needed,
        }
    }
}

struct Tickets {
    gate: Arc<Gate>,
    needed: usize,
}

impl Future for Tickets {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.gate.state.lock().unwrap();
        if state.0 >= self.needed {
            return Poll::Ready(());
        }
        match &mut state.1 {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.1 = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A future that stays pending, keeping the latest waker it was polled with in `slot`.
struct Parked {
    slot: Arc<Mutex<Option<Waker>>>,
    _guard: CountDrop,
}

impl Future for Parked {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

// ---- TaskSet ----------------------------------------------------------------------------------------

#[test]
fn tasks_that_complete_at_once() {
    let session = Session::start();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    assert!(tasks.is_empty());
    let done = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    for i in 0..TASKS {
        let done = Arc::clone(&done);
        let guard = CountDrop(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _guard = guard;
                done.fetch_add(i + 1, Ordering::SeqCst);
            })
            .unwrap();
        // Polled at once, on this thread, and retired.
        assert!(tasks.is_empty());
    }
    assert_eq!(done.load(Ordering::SeqCst), TASKS * (TASKS + 1) / 2);
    assert_eq!(dropped.load(Ordering::SeqCst), TASKS);
    tasks.wait_idle().unwrap();
    drop(tasks);
    session.finish();
}

#[test]
fn tasks_woken_from_other_threads() {
    let session = Session::start();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let gates: Vec<Arc<Gate>> = (0..TASKS).map(|_| Arc::default()).collect();
    let finished = Arc::new(AtomicUsize::new(0));
    for gate in &gates {
        let wait = gate.wait(THREADS * ROUNDS);
        let finished = Arc::clone(&finished);
        tasks
            .spawn(async move {
                wait.await;
                finished.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    assert_eq!(tasks.len(), TASKS);
    // Every thread wakes every task, interleaved with the others: each wake-up hands the
    // task to the set's work item, while the work item may be polling it.
    let wakers: Vec<_> = (0..THREADS)
        .map(|id| {
            let gates = gates.clone();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    for gate in &gates {
                        gate.release((round + id) % 2 == 0);
                    }
                }
            })
        })
        .collect();
    for waker in wakers {
        waker.join().unwrap();
    }
    tasks.wait_idle().unwrap();
    assert!(tasks.is_empty());
    assert_eq!(finished.load(Ordering::SeqCst), TASKS);
    drop(tasks);
    // The gates still hold the tasks' last wakers: waking a finished task does nothing.
    for gate in &gates {
        gate.release(true);
        gate.release(false);
    }
    drop(gates);
    session.finish();
}

#[test]
fn cancel_all_drops_pending_futures() {
    let session = Session::start();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let slots: Vec<Arc<Mutex<Option<Waker>>>> = (0..TASKS).map(|_| Arc::default()).collect();
    for slot in &slots {
        tasks
            .spawn(Parked {
                slot: Arc::clone(slot),
                _guard: CountDrop(Arc::clone(&dropped)),
            })
            .unwrap();
    }
    assert_eq!(tasks.len(), TASKS);
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    tasks.cancel_all();
    assert!(tasks.is_empty());
    assert_eq!(dropped.load(Ordering::SeqCst), TASKS);
    tasks.wait_idle().unwrap();

    // Woken after the cancel, on this thread and from another one: nothing runs.
    let wakers: Vec<Waker> = slots
        .iter()
        .map(|slot| slot.lock().unwrap().take().unwrap())
        .collect();
    for waker in &wakers {
        waker.wake_by_ref();
    }
    let (here, there): (Vec<_>, Vec<_>) = wakers
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    for (_, waker) in here {
        waker.wake();
    }
    // The set is dropped while the other wakers are alive; they keep their tasks.
    drop(tasks);
    thread::spawn(move || {
        for (_, waker) in there {
            waker.wake_by_ref();
            drop(waker.clone());
            waker.wake();
        }
    })
    .join()
    .unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), TASKS);
    session.finish();
}

#[test]
fn dropping_the_set_cancels_pending_tasks() {
    let session = Session::start();
    let dropped = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(Mutex::new(None));
    let gate = Arc::new(Gate::default());
    {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        for _ in 0..TASKS {
            tasks
                .spawn(Parked {
                    slot: Arc::clone(&slot),
                    _guard: CountDrop(Arc::clone(&dropped)),
                })
                .unwrap();
        }
        // One task half-way: woken once from another thread, then left waiting.
        let wait = gate.wait(2);
        let guard = CountDrop(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _guard = guard;
                wait.await;
            })
            .unwrap();
        let releaser = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.release(false))
        };
        releaser.join().unwrap();
        assert_eq!(tasks.len(), TASKS + 1);
    }
    assert_eq!(dropped.load(Ordering::SeqCst), TASKS + 1);
    // A waker that outlived its set: waking it from another thread does nothing.
    let waker = slot.lock().unwrap().take().unwrap();
    thread::spawn(move || waker.wake()).join().unwrap();
    gate.release(true);
    session.finish();
}

#[test]
fn a_task_woken_while_it_is_cancelled() {
    let session = Session::start();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Gate::default());
    for _ in 0..TASKS {
        let wait = gate.wait(usize::MAX);
        let guard = CountDrop(Arc::clone(&dropped));
        tasks
            .spawn(async move {
                let _guard = guard;
                wait.await;
            })
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let waker = {
        let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
        thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                gate.release(round % 2 == 0);
                round += 1;
                thread::yield_now();
            }
        })
    };
    thread::yield_now();
    tasks.cancel_all();
    // A task the waker queued for the set's work item is dropped there, once it runs: wait
    // for it.
    tasks.wait_idle().unwrap();
    assert!(tasks.is_empty());
    stop.store(true, Ordering::SeqCst);
    waker.join().unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), TASKS);
    drop(tasks);
    session.finish();
}

// ---- block_on --------------------------------------------------------------------------------------

#[test]
fn block_on_sleeps_until_another_thread_wakes_it() {
    let session = Session::start();
    for round in 0..ROUNDS.min(20) {
        let gate = Arc::new(Gate::default());
        let needed = 1 + round % 3;
        let releaser = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                for i in 0..needed {
                    thread::yield_now();
                    gate.release(i % 2 == 0);
                }
            })
        };
        let value = block_on(async {
            gate.wait(needed).await;
            round
        })
        .unwrap();
        assert_eq!(value, round);
        releaser.join().unwrap();
    }
    // A future ready at once never waits.
    assert_eq!(block_on(async { 7 }).unwrap(), 7);
    session.finish();
}

#[test]
fn block_on_refuses_dispatch_level() {
    let session = Session::start();
    let lock = SpinLock::new(());
    let guard = lock.lock();
    let error = block_on(async {}).unwrap_err();
    assert_eq!(error, wsk::Error::IRQL_TOO_HIGH);
    drop(guard);
    session.finish();
}

// ---- events ---------------------------------------------------------------------------------------

/// A `KEVENT` may be freed as soon as a wait on it returns, while the thread that set it may
/// still be inside `KeSetEvent` (an event on a waiter's stack, signalled from a completion
/// routine: the pattern of the raw code, and of a `wsk` block's blocking wait). Under Miri, a
/// touch of the freed event by the setter is reported.
#[test]
fn an_event_freed_as_soon_as_its_wait_returns() {
    let session = Session::start();
    for _ in 0..ROUNDS {
        let event = Box::into_raw(Box::new(KEVENT::default()));
        // SAFETY: a fresh event, in memory that lives until the wait below returns.
        unsafe { KeInitializeEvent(event, SynchronizationEvent, FALSE) };
        let address = event as usize;
        let setter = thread::spawn(move || {
            // SAFETY: the event is alive until the wait returns, which needs this signal.
            unsafe { KeSetEvent(address as PRKEVENT, IO_NO_INCREMENT.into(), FALSE) };
        });
        // SAFETY: a live event; PASSIVE_LEVEL.
        let status = unsafe {
            KeWaitForSingleObject(
                event.cast(),
                Executive,
                KernelMode,
                FALSE,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        // SAFETY: allocated above; nothing uses it once the wait returned.
        drop(unsafe { Box::from_raw(event) });
        setter.join().unwrap();
    }
    session.finish();
}

// ---- buffers ------------------------------------------------------------------------------------------

#[test]
fn buffers_write_clear_and_copy() {
    let session = Session::start();
    let mut buf = Buf::with_capacity(16).unwrap();
    assert!(buf.is_empty());
    assert_eq!((buf.capacity(), buf.spare_capacity()), (16, 16));
    assert!(!buf.mdl().is_null());
    buf.extend_from_slice(b"hello").unwrap();
    buf.extend_from_slice(b", world").unwrap();
    assert_eq!(&buf[..], b"hello, world");
    buf[0] = b'H';
    assert_eq!(&buf[..5], b"Hello");
    assert_eq!(
        buf.extend_from_slice(&[0; 5]).unwrap_err(),
        wsk::Error::INVALID_BUFFER_SIZE
    );
    // Fill the spare capacity in place.
    let spare = buf.spare_capacity_mut();
    assert_eq!(spare.len(), 4);
    for (i, byte) in spare.iter_mut().enumerate() {
        byte.write(b'0' + i as u8);
    }
    // SAFETY: the four spare bytes were just written.
    unsafe { buf.set_len(16) };
    assert_eq!(&buf[..], b"Hello, world0123");
    buf.truncate(5);
    assert_eq!(&buf[..], b"Hello");
    buf.clear();
    assert!(buf.is_empty());
    buf.extend_from_slice(&[0xab; 16]).unwrap();
    assert!(buf.iter().all(|&b| b == 0xab));

    let copy = Buf::from_slice(b"copied").unwrap();
    assert_eq!(&copy[..], b"copied");
    assert_eq!(copy.capacity(), 6);
    assert!(copy.into_vec().is_err());
    assert_eq!(
        Buf::from_slice(b"").unwrap_err(),
        wsk::Error::INVALID_BUFFER_SIZE
    );

    // A vector's own memory, locked, then given back.
    let mut vec = Vec::with_capacity(8);
    vec.extend_from_slice(b"vec");
    let mut locked = Buf::from_vec(vec).unwrap();
    locked.extend_from_slice(b"tor").unwrap();
    let vec = locked.into_vec().unwrap();
    assert_eq!(vec, b"vector");

    let mut list = BufList::new();
    list.push(buf).unwrap();
    list.push(Buf::from_slice(b"second").unwrap()).unwrap();
    assert_eq!(list.total_len(), 22);
    list.bufs_mut()[1].clear();
    let bufs = list.into_bufs();
    assert_eq!(bufs.len(), 2);
    drop(bufs);

    // Buffers made on one thread and dropped on others.
    let made: Vec<Buf> = (1..=THREADS)
        .map(|n| Buf::from_slice(&vec![n as u8; n]).unwrap())
        .collect();
    let handles: Vec<_> = made
        .into_iter()
        .map(|buf| thread::spawn(move || buf.iter().map(|&b| usize::from(b)).sum::<usize>()))
        .collect();
    let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, (1..=THREADS).map(|n| n * n).sum());

    let report = session.finish();
    assert_eq!(report.mdls_allocated, report.mdls_freed);
}

// ---- IRPs -------------------------------------------------------------------------------------------

/// Completion routine: signals the event its context points to and keeps the IRP.
unsafe extern "system" fn signal_completion(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's event, alive until its wait returns.
    unsafe { KeSetEvent(context.cast(), IO_NO_INCREMENT.into(), FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Cancel routine: releases the cancel lock and completes the IRP as cancelled.
unsafe extern "system" fn cancel_by_completing(_device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel lock held, for an IRP this test owns
    // through its request.
    unsafe {
        IoReleaseCancelSpinLock((*irp).CancelIrql);
        (*irp).IoStatus.u.Status = STATUS_CANCELLED;
        IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
}

/// An IRP handed to another thread (kernel memory is usable from any thread).
struct SendIrp(PIRP);

// SAFETY: the IRP is plain memory; the test keeps it allocated while the other thread runs.
unsafe impl Send for SendIrp {}

impl SendIrp {
    fn get(self) -> PIRP {
        self.0
    }
}

/// An IRP completed by cancellation from another thread, while this one waits on an event
/// its completion routine sets; then reused and completed normally.
#[test]
fn irp_cancelled_from_another_thread() {
    let session = Session::start();
    let mut irp = Irp::new().unwrap();
    let mut event = Box::new(KEVENT::default());
    let event_ptr: PRKEVENT = &mut *event;
    // SAFETY: the event is boxed and outlives every use below.
    unsafe { KeInitializeEvent(event_ptr, SynchronizationEvent, FALSE) };
    for round in 0..2 {
        let raw = irp.as_ptr();
        // SAFETY: a fresh (or reused) IRP with one stack location, owned here; the routine
        // and its context outlive the request.
        unsafe {
            IoSetCompletionRoutine(
                raw,
                Some(signal_completion),
                event_ptr.cast(),
                true,
                true,
                true,
            );
            // The "lower driver" takes the request: its stack location becomes current.
            IoSetNextIrpStackLocation(raw);
            (*raw).IoStatus.u.Status = STATUS_PENDING;
        }
        if round == 0 {
            // SAFETY: the IRP is valid and owned by the pending request.
            unsafe { IoSetCancelRoutine(raw, Some(cancel_by_completing)) };
            let pending = SendIrp(raw);
            let canceller = thread::spawn(move || {
                // SAFETY: the IRP stays allocated until this thread is joined.
                unsafe { IoCancelIrp(pending.get()) != 0 }
            });
            // SAFETY: waiting at PASSIVE_LEVEL on the live event.
            let status = unsafe {
                KeWaitForSingleObject(
                    event_ptr.cast(),
                    Executive,
                    KernelMode,
                    FALSE,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            assert!(canceller.join().unwrap());
            assert_eq!(irp.status(), STATUS_CANCELLED);
            irp.reuse();
            assert_eq!(irp.status(), STATUS_UNSUCCESSFUL);
        } else {
            // SAFETY: completed by its owner; the routine keeps the IRP.
            unsafe {
                (*raw).IoStatus.u.Status = STATUS_SUCCESS;
                (*raw).IoStatus.Information = 42;
                IofCompleteRequest(raw, IO_NO_INCREMENT);
            }
            // SAFETY: the event is live; already signalled, so the wait returns at once.
            let status = unsafe {
                KeWaitForSingleObject(
                    event_ptr.cast(),
                    Executive,
                    KernelMode,
                    FALSE,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            assert_eq!((irp.status(), irp.information()), (STATUS_SUCCESS, 42));
        }
    }
    drop(irp);
    drop(event);
    let report = session.finish();
    assert_eq!((report.irps_allocated, report.irps_freed), (1, 1));
}

// ---- a client, its completion blocks and its spare sockets ---------------------------------------

/// A client whose socket creations all fail at the provider: each creation takes a block of
/// the client's pool and a socket core (a spare one when the client keeps some, which the
/// failed socket's last reference gives back), from several threads at once — the pool's
/// lock-free list walked while blocks are taken, the spare slots filled and emptied — then
/// the client's teardown frees the spares, and the provider deregisters it. No socket is
/// ever created, so none of this needs the network.
#[test]
fn failed_creations_from_several_threads_share_the_pool_and_the_spare_sockets() {
    let session = Session::start();
    session.set_faults(
        wsk_host::FaultPlan::new(17).fail_requests("WskSocket", STATUS_INSUFFICIENT_RESOURCES),
    );
    let client = Arc::new(wsk::WskClient::register(driver(&session)).unwrap());
    let rounds = if cfg!(miri) { 3 } else { 50 };
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                for _ in 0..rounds {
                    let created = client.bind_datagram("127.0.0.1:0".parse().unwrap()).wait();
                    assert_eq!(created.unwrap_err(), wsk::Error::INSUFFICIENT_RESOURCES);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    Arc::into_inner(client).unwrap().shutdown().unwrap();
    session.finish();
}
