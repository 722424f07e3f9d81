//! `cargo bench -p wsk`: the cost of the safe layer on the hot path. One 4 KiB send at a
//! time on a loopback connection (wsk-host provider, a std reader draining the peer), timed
//! per send for
//! - raw `wsk-sys`, written as the C of the documentation with its best practice: one IRP
//!   allocated once and reused (`IoReuseIrp`, `IoSetCompletionRoutine`, `WskSend`, wait on a
//!   KEVENT), one MDL built once;
//! - `wsk`: `socket.send(buf).wait()` with the buffer handed back and sent again;
//!
//! and, in steady state, the allocations per send: pool blocks, IRPs and MDLs (the kernel's
//! allocations, counted by wsk-host) and Rust heap allocations on the sending thread.
//! Every request completes inline (`CompletionMode::AlwaysInline`): a fixed mode, so that
//! both sides take the same provider path. It prints the ratio wsk / raw (target: at most
//! 1.05) and the heap allocations, and asserts only what noise cannot break: no kernel
//! allocation (pool, IRP, MDL) per send by `wsk`, counted exactly by wsk-host. Time per send
//! is dominated by the host socket call and the scheduler: the performance gate is the
//! instruction count of `cargo xtask bench`, not this.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::net::TcpListener;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use wsk::{Buf, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Session};
use wsk_sys::*;

/// The session's driver object, as `DriverEntry` would have received it.
fn driver(session: &Session) -> wsk::DriverObject {
    // SAFETY: the session's own driver object, valid until the session ends.
    unsafe { wsk::DriverObject::from_raw(session.driver_object()) }
        .expect("a session has a driver object")
}

/// Counts the heap allocations of the thread that enabled counting.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counters are thread-local cells that do not
// allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                ALLOCATIONS.with(|n| n.set(n.get() + 1));
            }
        });
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

const SIZE: usize = 4096;
const WARM_UP: u32 = 2_000;
const SENDS: u32 = 40_000;
const ROUNDS: usize = 5;

/// A peer that reads and discards everything.
fn drain(listener: TcpListener) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match peer.read(&mut sink) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    })
}

/// Allocations during `f`: (pool blocks + IRPs + MDLs, heap on this thread).
fn allocations(session: &Session, f: impl FnOnce()) -> (u64, u64) {
    let before = session.report();
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    let after = session.report();
    let kernel = (after.pool_allocations - before.pool_allocations)
        + (after.irps_allocated - before.irps_allocated)
        + (after.mdls_allocated - before.mdls_allocated);
    (kernel, ALLOCATIONS.with(Cell::get))
}

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the sender's KEVENT, alive while the IRP is in flight.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The raw sender: the IRP, event, buffer and MDL made once.
struct RawSender {
    socket: PWSK_SOCKET,
    irp: PIRP,
    event: Box<KEVENT>,
    data: *mut u8,
    mdl: PMDL,
}

impl RawSender {
    /// # Safety
    /// `socket` is a connected WSK socket that outlives the sender.
    unsafe fn new(socket: PWSK_SOCKET) -> RawSender {
        // SAFETY: kernel allocations checked by assertions; PASSIVE_LEVEL.
        unsafe {
            let mut event = Box::new(KEVENT::default());
            KeInitializeEvent(&mut *event, SynchronizationEvent, FALSE);
            let data =
                ExAllocatePool2(POOL_FLAG_NON_PAGED, SIZE as SIZE_T, 0x6e654272).cast::<u8>();
            assert!(!data.is_null());
            let mdl = IoAllocateMdl(data.cast(), SIZE as ULONG, FALSE, FALSE, null_mut());
            assert!(!mdl.is_null());
            MmBuildMdlForNonPagedPool(mdl);
            let irp = IoAllocateIrp(1, FALSE);
            assert!(!irp.is_null());
            RawSender {
                socket,
                irp,
                event,
                data,
                mdl,
            }
        }
    }

    /// One send of the whole buffer, waited for.
    fn send(&mut self) -> usize {
        // SAFETY: the IRP is not in flight between sends; the buffer, MDL and event live as
        // long as the sender; PASSIVE_LEVEL wait.
        unsafe {
            IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL);
            IoSetCompletionRoutine(
                self.irp,
                Some(signal),
                (&raw mut *self.event).cast(),
                true,
                true,
                true,
            );
            let mut buffer = WSK_BUF {
                Mdl: self.mdl,
                Offset: 0,
                Length: SIZE as SIZE_T,
            };
            let dispatch = (*self.socket)
                .Dispatch
                .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
            ((*dispatch).WskSend.unwrap())(self.socket, &mut buffer, 0, self.irp);
            KeWaitForSingleObject(
                (&raw mut *self.event).cast(),
                Executive,
                KernelMode,
                FALSE,
                null_mut(),
            );
            assert_eq!((*self.irp).IoStatus.u.Status, STATUS_SUCCESS);
            (*self.irp).IoStatus.Information as usize
        }
    }
}

impl Drop for RawSender {
    fn drop(&mut self) {
        // SAFETY: nothing is in flight; each object is freed once.
        unsafe {
            IoFreeIrp(self.irp);
            IoFreeMdl(self.mdl);
            ExFreePoolWithTag(self.data.cast(), 0x6e654272);
        }
    }
}

fn per_send(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(SENDS)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let session = Session::start();
    session.set_faults(FaultPlan::new(0x5345_4e44).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let reader = drain(listener);
    let socket = client.connect(address).wait().unwrap();
    let raw_socket = socket.as_raw();
    // SAFETY: the socket stays open until the sender is dropped.
    let mut raw = unsafe { RawSender::new(raw_socket) };
    let buf = Buf::from_slice(&[0x5a; SIZE]).unwrap();

    let wsk_send = |count: u32, buf: &mut Option<Buf>| {
        for _ in 0..count {
            let (sent, back) = socket.send(buf.take().unwrap()).wait();
            assert_eq!(sent.unwrap(), SIZE);
            *buf = Some(back);
        }
    };
    let mut slot = Some(buf);
    wsk_send(WARM_UP, &mut slot);
    for _ in 0..WARM_UP {
        raw.send();
    }

    let (mut raw_best, mut wsk_best) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..SENDS {
            assert_eq!(raw.send(), SIZE);
        }
        raw_best = raw_best.min(per_send(started.elapsed()));
        let started = Instant::now();
        wsk_send(SENDS, &mut slot);
        wsk_best = wsk_best.min(per_send(started.elapsed()));
    }
    let (raw_kernel, raw_heap) = allocations(&session, || {
        for _ in 0..SENDS {
            raw.send();
        }
    });
    let (wsk_kernel, wsk_heap) = allocations(&session, || wsk_send(SENDS, &mut slot));

    println!("send 4 KiB on loopback through wsk-host, best of {ROUNDS} rounds of {SENDS}:");
    println!("  raw wsk-sys (IRP reused):  {raw_best:8.0} ns/send");
    println!("  wsk send().wait():         {wsk_best:8.0} ns/send");
    println!(
        "  ratio wsk / raw:           {:8.3} (target <= 1.05)",
        wsk_best / raw_best
    );
    println!("allocations per send in steady state (kernel: pool + IRP + MDL; heap: this thread):");
    println!(
        "  raw wsk-sys: kernel {:.3}, heap {:.3}",
        raw_kernel as f64 / f64::from(SENDS),
        raw_heap as f64 / f64::from(SENDS)
    );
    println!(
        "  wsk:         kernel {:.3}, heap {:.3}",
        wsk_kernel as f64 / f64::from(SENDS),
        wsk_heap as f64 / f64::from(SENDS)
    );

    drop(raw);
    drop(slot);
    socket.close().wait().unwrap();
    drop(client);
    let total = reader.join().unwrap();
    assert_eq!(
        total,
        (SIZE as u64) * u64::from(2 * WARM_UP + 2 * SENDS * (ROUNDS as u32 + 1))
    );
    session.finish();
    assert_eq!(wsk_kernel, 0, "wsk allocated kernel objects per send");
}
