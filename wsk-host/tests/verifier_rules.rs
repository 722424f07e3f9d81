//! Every verifier rule, on code that breaks it (the rule is reported, and nothing else) and on
//! the same code written correctly (nothing is reported). The code is raw `wsk-sys`, as a
//! driver's; the findings are read with `Session::conclude`, which returns them where
//! `Session::finish` panics with them (that panic is checked too).
//!
//! `EVENT_AFTER_CLOSE` is the provider's check of its own guarantee (no event callback once a
//! close has completed): no driver code can break it, so it has no firing case here; every
//! event test of the `wsk` crate would fail if it ever fired.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::ptr::null_mut;
use std::time::Duration;

use common::{PoolBuffer, Registration, SyncRequest, close, connect, connection_dispatch, listen};
use wsk_host::{CompletionMode, ProviderConfig, RegValue, Rule, Session, Violation, irql};
use wsk_sys::*;

/// Runs `code` in a session; returns every finding of the session.
fn findings(config: ProviderConfig, code: impl FnOnce(&Session)) -> Vec<Violation> {
    let session = Session::with_config(config);
    code(&session);
    session.conclude().1
}

/// Asserts that `code` breaks `rule` — and, besides it, only the rules of `also` (the
/// inevitable consequences, a leaked registration after a leaked socket, say).
fn fires_with(rule: Rule, also: &[Rule], code: impl FnOnce(&Session)) {
    let found = findings(ProviderConfig::default(), code);
    let rules: BTreeSet<&str> = found.iter().map(|v| v.rule.name()).collect();
    let mut expected: BTreeSet<&str> = also.iter().map(|r| r.name()).collect();
    expected.insert(rule.name());
    assert_eq!(rules, expected, "{found:#?}");
    let message = found.iter().find(|v| v.rule == rule).unwrap().to_string();
    assert!(message.contains(rule.name()), "{message}");
}

/// Asserts that `code` breaks `rule`, and nothing else.
fn fires(rule: Rule, code: impl FnOnce(&Session)) {
    fires_with(rule, &[], code);
}

/// Asserts that `code` breaks no rule.
fn silent(code: impl FnOnce(&Session)) {
    let found = findings(ProviderConfig::default(), code);
    assert!(found.is_empty(), "{found:#?}");
}

/// A pool allocation tagged `tag`.
fn pool(size: usize, tag: &[u8; 4]) -> PVOID {
    // SAFETY: a plain allocation at PASSIVE_LEVEL.
    let block = unsafe {
        ExAllocatePool2(
            POOL_FLAG_NON_PAGED,
            size as SIZE_T,
            u32::from_le_bytes(*tag),
        )
    };
    assert!(!block.is_null());
    block
}

/// A registration, a synchronous request and a listening socket on 127.0.0.1 (dropped in
/// this order's reverse: the socket must be closed by then).
fn listening() -> (Registration, SyncRequest, PWSK_SOCKET) {
    let registration = Registration::new();
    let mut request = SyncRequest::new().unwrap();
    let (listener, _) = listen(&registration, &mut request, "127.0.0.1:0".parse().unwrap());
    (registration, request, listener)
}

/// `WskRegister` of a client with no event callbacks into `registration`; returns the status.
fn register(registration: &mut WSK_REGISTRATION) -> NTSTATUS {
    let mut npi = WSK_CLIENT_NPI {
        ClientContext: null_mut(),
        Dispatch: &CLIENT_DISPATCH,
    };
    // SAFETY: the NPI's dispatch table is static; the registration is the caller's.
    unsafe { WskRegister(&mut npi, registration) }
}

/// A connection socket to a std listener on loopback (with the listener, which keeps the
/// connection's peer side in its backlog).
fn connected(registration: &Registration, request: &mut SyncRequest) -> (PWSK_SOCKET, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = connect(registration, request, listener.local_addr().unwrap()).unwrap();
    (socket, listener)
}

// ---- leaks, found when the session ends ----

#[test]
fn irp_leaked() {
    fires(Rule::IrpLeaked, |_| {
        // SAFETY: a plain allocation, never freed (the bug under test).
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        assert!(!irp.is_null());
    });
    silent(|_| {
        // SAFETY: allocated, then freed once.
        unsafe { IoFreeIrp(IoAllocateIrp(1, FALSE)) };
    });
}

#[test]
fn mdl_leaked() {
    fires(Rule::MdlLeaked, |_| {
        let block = pool(64, b"Leak");
        // SAFETY: an MDL over a live pool block; the block is freed, the MDL not (the bug).
        unsafe {
            let mdl = IoAllocateMdl(block, 64, FALSE, FALSE, null_mut());
            assert!(!mdl.is_null());
            ExFreePoolWithTag(block, u32::from_le_bytes(*b"Leak"));
        }
    });
    silent(|_| drop(PoolBuffer::new(64).unwrap()));
}

#[test]
fn pool_leaked() {
    fires(Rule::PoolLeaked, |_| {
        pool(100, b"Leak");
    });
    silent(|_| {
        let block = pool(100, b"Leak");
        // SAFETY: the live block, freed once with its tag.
        unsafe { ExFreePoolWithTag(block, u32::from_le_bytes(*b"Leak")) };
    });
}

#[test]
fn socket_leaked() {
    // A socket never closed also keeps its client from deregistering.
    fires_with(Rule::SocketLeaked, &[Rule::RegistrationLeaked], |_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let (_socket, _listener) = connected(&registration, &mut request);
        // Deregistering would wait for the socket forever: the registration is leaked too.
        std::mem::forget(registration);
    });
    silent(|_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let (socket, _listener) = connected(&registration, &mut request);
        // SAFETY: the open socket, closed once.
        assert_eq!(unsafe { close(socket, &mut request) }, STATUS_SUCCESS);
    });
}

#[test]
fn registration_leaked() {
    fires(Rule::RegistrationLeaked, |_| {
        // Registered and captured, never released nor deregistered.
        std::mem::forget(Registration::new());
    });
    silent(|_| drop(Registration::new()));
}

/// `WskGetAddressInfo` of `localhost`; returns the result list.
fn resolve_localhost(registration: &Registration, request: &mut SyncRequest) -> PADDRINFOEXW {
    let name: Vec<u16> = "localhost\0".encode_utf16().collect();
    let mut node = UNICODE_STRING::default();
    let mut result: PADDRINFOEXW = null_mut();
    let irp = request.irp();
    // SAFETY: the name and the result pointer live until the wait below.
    unsafe {
        RtlInitUnicodeString(&mut node, name.as_ptr());
        (registration.dispatch().WskGetAddressInfo.unwrap())(
            registration.client(),
            &mut node,
            null_mut(),
            NS_ALL,
            null_mut(),
            null_mut(),
            &mut result,
            null_mut(),
            null_mut(),
            irp,
        );
    }
    assert_eq!(request.wait().0, STATUS_SUCCESS);
    assert!(!result.is_null());
    result
}

#[test]
fn address_info_leaked() {
    // The list is the provider's pool: it shows as leaked pool too.
    fires_with(Rule::AddressInfoLeaked, &[Rule::PoolLeaked], |_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        resolve_localhost(&registration, &mut request);
    });
    silent(|_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let list = resolve_localhost(&registration, &mut request);
        // SAFETY: the list the provider returned, freed once.
        unsafe {
            (registration.dispatch().WskFreeAddressInfo.unwrap())(registration.client(), list)
        };
    });
}

/// `ZwOpenKey` of a key the registry holds.
fn open_key() -> HANDLE {
    let path = r"\Registry\Machine\System\CurrentControlSet\Services\verifier_rules\Parameters";
    wsk_host::registry::set_value(path, "Value", RegValue::Dword(1));
    let name: Vec<u16> = path.encode_utf16().chain([0]).collect();
    let mut unicode = UNICODE_STRING::default();
    let mut attributes = OBJECT_ATTRIBUTES::default();
    let mut handle: HANDLE = null_mut();
    // SAFETY: the name outlives the attributes' use; the handle is writable.
    unsafe {
        RtlInitUnicodeString(&mut unicode, name.as_ptr());
        InitializeObjectAttributes(
            &mut attributes,
            &mut unicode,
            OBJ_KERNEL_HANDLE,
            null_mut(),
            null_mut(),
        );
        assert_eq!(
            ZwOpenKey(&mut handle, KEY_READ, &mut attributes),
            STATUS_SUCCESS
        );
    }
    handle
}

#[test]
fn handle_leaked() {
    fires(Rule::HandleLeaked, |_| {
        open_key();
    });
    silent(|_| {
        let key = open_key();
        // SAFETY: the open handle, closed once.
        assert_eq!(unsafe { ZwClose(key) }, STATUS_SUCCESS);
    });
}

// ---- IRPs ----

#[test]
fn irp_double_free() {
    fires(Rule::IrpDoubleFree, |_| {
        // SAFETY: the second free is the bug under test; wsk-host keeps freed IRPs in
        // quarantine, so it reads no freed memory.
        unsafe {
            let irp = IoAllocateIrp(1, FALSE);
            IoFreeIrp(irp);
            IoFreeIrp(irp);
        }
    });
    fires(Rule::IrpDoubleFree, |_| {
        let mut not_an_irp = [0u64; 32];
        // SAFETY: the bug under test; wsk-host does not touch memory it did not allocate.
        unsafe { IoFreeIrp(not_an_irp.as_mut_ptr().cast()) };
    });
    silent(|_| {
        // SAFETY: two IRPs, each freed once.
        unsafe {
            IoFreeIrp(IoAllocateIrp(1, FALSE));
            IoFreeIrp(IoAllocateIrp(2, FALSE));
        }
    });
}

#[test]
fn irp_use_after_free() {
    fires(Rule::IrpUseAfterFree, |_| {
        let (_registration, mut request, listener) = listening();
        let mut address = SOCKADDR_INET::default();
        // SAFETY: the freed IRP's uses are the bug under test (it stays in quarantine, so no
        // freed memory is read); the listening socket is open, then closed once.
        unsafe {
            let irp = IoAllocateIrp(1, FALSE);
            IoFreeIrp(irp);
            IoReuseIrp(irp, STATUS_SUCCESS);
            let get_address = common::listen_dispatch(listener)
                .WskGetLocalAddress
                .unwrap();
            assert_ne!(
                get_address(listener, (&raw mut address).cast(), irp),
                STATUS_SUCCESS
            );
            assert_eq!(close(listener, &mut request), STATUS_SUCCESS);
        }
    });
    silent(|_| {
        let (_registration, mut request, listener) = listening();
        // SAFETY: the open socket, closed once.
        assert_eq!(unsafe { close(listener, &mut request) }, STATUS_SUCCESS);
    });
}

#[test]
fn irp_in_use() {
    fires(Rule::IrpInUse, |_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let mut receiving = SyncRequest::new().unwrap();
        let (socket, _listener) = connected(&registration, &mut request);
        let buffer = PoolBuffer::new(16).unwrap();
        let mut wsk_buf = buffer.wsk_buf(0, 16);
        let irp = receiving.irp();
        // SAFETY: a receive nothing will answer owns the IRP; freeing and reusing it are the
        // bugs under test (refused, the IRP untouched). The close then cancels the receive,
        // which gives the IRP back.
        unsafe {
            let status =
                (connection_dispatch(socket).WskReceive.unwrap())(socket, &mut wsk_buf, 0, irp);
            assert_eq!(status, STATUS_PENDING);
            IoFreeIrp(irp);
            IoReuseIrp(irp, STATUS_SUCCESS);
            assert_eq!(close(socket, &mut request), STATUS_SUCCESS);
        }
        assert_eq!(receiving.wait().0, STATUS_CANCELLED);
    });
    silent(|_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let mut receiving = SyncRequest::new().unwrap();
        let (socket, _listener) = connected(&registration, &mut request);
        let buffer = PoolBuffer::new(16).unwrap();
        let mut wsk_buf = buffer.wsk_buf(0, 16);
        let irp = receiving.irp();
        // SAFETY: as above, without the bugs: the IRP is freed (by `receiving`'s drop) only
        // after its receive completed.
        unsafe {
            (connection_dispatch(socket).WskReceive.unwrap())(socket, &mut wsk_buf, 0, irp);
            assert_eq!(IoCancelIrp(irp), TRUE);
        }
        assert_eq!(receiving.wait().0, STATUS_CANCELLED);
        // SAFETY: the open socket, closed once.
        assert_eq!(unsafe { close(socket, &mut request) }, STATUS_SUCCESS);
    });
}

unsafe extern "system" fn signal_and_return_success(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's live event.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    // The bug under test: the I/O manager would go on completing (and free) the IRP.
    STATUS_SUCCESS
}

#[test]
fn completion_routine_result() {
    // A completion routine that does not take the driver's IRP back.
    fires(Rule::CompletionRoutineResult, |_| {
        let (_registration, _request, listener) = listening();
        let mut done = KEVENT::default();
        // SAFETY: the event outlives the close, which is waited for; the IRP is freed after
        // its completion.
        unsafe {
            KeInitializeEvent(&mut done, NotificationEvent, FALSE);
            let irp = IoAllocateIrp(1, FALSE);
            IoSetCompletionRoutine(
                irp,
                Some(signal_and_return_success),
                (&raw mut done).cast(),
                true,
                true,
                true,
            );
            (common::listen_dispatch(listener)
                .Basic
                .WskCloseSocket
                .unwrap())(listener, irp);
            KeWaitForSingleObject(
                (&raw mut done).cast(),
                Executive,
                KernelMode,
                FALSE,
                null_mut(),
            );
            IoFreeIrp(irp);
        }
    });
    // No completion routine at all.
    fires(Rule::CompletionRoutineResult, |session| {
        let (_registration, _request, listener) = listening();
        // SAFETY: with no completion routine the test learns of the completion by polling the
        // status block, then waits for the finding (reported once the completion is over)
        // before it frees the IRP.
        unsafe {
            let irp = IoAllocateIrp(1, FALSE);
            (*irp).IoStatus.u.Status = STATUS_PENDING;
            (common::listen_dispatch(listener)
                .Basic
                .WskCloseSocket
                .unwrap())(listener, irp);
            let status = &raw const (*irp).IoStatus.u.Status;
            assert!(
                (0..2000).any(|_| {
                    let done = status.read_volatile() != STATUS_PENDING
                        && !session.violations().is_empty();
                    if !done {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    done
                }),
                "the close completes"
            );
            assert_eq!(status.read_volatile(), STATUS_SUCCESS);
            IoFreeIrp(irp);
        }
    });
    // STATUS_MORE_PROCESSING_REQUIRED, as `SyncRequest` does.
    silent(|_| {
        let (_registration, mut request, listener) = listening();
        // SAFETY: the open socket, closed once.
        assert_eq!(unsafe { close(listener, &mut request) }, STATUS_SUCCESS);
    });
}

// ---- MDLs and pool ----

#[test]
fn mdl_double_free() {
    fires(Rule::MdlDoubleFree, |_| {
        let block = pool(32, b"Mdl2");
        // SAFETY: the second IoFreeMdl is the bug under test (wsk-host reads nothing of an MDL
        // it does not know).
        unsafe {
            let mdl = IoAllocateMdl(block, 32, FALSE, FALSE, null_mut());
            IoFreeMdl(mdl);
            IoFreeMdl(mdl);
            ExFreePoolWithTag(block, u32::from_le_bytes(*b"Mdl2"));
        }
    });
    silent(|_| drop(PoolBuffer::new(32).unwrap()));
}

#[test]
fn pool_double_free() {
    fires(Rule::PoolDoubleFree, |_| {
        let block = pool(32, b"Dbl2");
        // SAFETY: the second free is the bug under test; wsk-host checks its records first.
        unsafe {
            ExFreePoolWithTag(block, u32::from_le_bytes(*b"Dbl2"));
            ExFreePoolWithTag(block, u32::from_le_bytes(*b"Dbl2"));
        }
    });
    silent(|_| {
        // SAFETY: freed once, with its tag.
        unsafe { ExFreePoolWithTag(pool(32, b"Dbl2"), u32::from_le_bytes(*b"Dbl2")) };
    });
}

#[test]
fn pool_tag_mismatch() {
    fires(Rule::PoolTagMismatch, |_| {
        // SAFETY: a live block freed with another tag: the bug under test.
        unsafe { ExFreePoolWithTag(pool(32, b"Mine"), u32::from_le_bytes(*b"Your")) };
    });
    silent(|_| {
        // SAFETY: freed once, with its own tag.
        unsafe { ExFreePoolWithTag(pool(32, b"Mine"), u32::from_le_bytes(*b"Mine")) };
    });
}

#[test]
fn mdl_not_nonpaged() {
    fires(Rule::MdlNotNonPaged, |_| {
        let mut heap = vec![0u8; 256];
        // SAFETY: an MDL over ordinary memory built as non-paged pool: the bug under test.
        unsafe {
            let mdl = IoAllocateMdl(heap.as_mut_ptr().cast(), 256, FALSE, FALSE, null_mut());
            MmBuildMdlForNonPagedPool(mdl);
            IoFreeMdl(mdl);
        }
    });
    silent(|_| drop(PoolBuffer::new(256).unwrap()));
}

#[test]
fn mdl_lock_mismatch() {
    let mut memory = vec![0u8; 4096];
    let base: PVOID = memory.as_mut_ptr().cast();
    fires(Rule::MdlLockMismatch, |_| {
        // SAFETY: unlocking pages that were never locked: the bug under test.
        unsafe {
            let mdl = IoAllocateMdl(base, 4096, FALSE, FALSE, null_mut());
            MmUnlockPages(mdl);
            IoFreeMdl(mdl);
        }
    });
    fires(Rule::MdlLockMismatch, |_| {
        // SAFETY: freeing an MDL whose pages are still locked: the bug under test.
        unsafe {
            let mdl = IoAllocateMdl(base, 4096, FALSE, FALSE, null_mut());
            MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess);
            IoFreeMdl(mdl);
        }
    });
    silent(|_| {
        // SAFETY: locked, unlocked, freed, in that order.
        unsafe {
            let mdl = IoAllocateMdl(base, 4096, FALSE, FALSE, null_mut());
            MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess);
            MmUnlockPages(mdl);
            IoFreeMdl(mdl);
        }
    });
}

// ---- IRQL and waits ----

#[test]
fn wait_at_dispatch_level() {
    fires(Rule::WaitAtDispatchLevel, |_| {
        let mut event = KEVENT::default();
        // SAFETY: an initialized event; waiting without a timeout at DISPATCH_LEVEL is the
        // bug under test (refused).
        unsafe {
            KeInitializeEvent(&mut event, NotificationEvent, TRUE);
            let _dispatch = irql::raise(DISPATCH_LEVEL);
            KeWaitForSingleObject(
                (&raw mut event).cast(),
                Executive,
                KernelMode,
                FALSE,
                null_mut(),
            );
        }
    });
    silent(|_| {
        let mut event = KEVENT::default();
        let mut zero = LARGE_INTEGER { QuadPart: 0 };
        // SAFETY: a poll (zero timeout) is allowed at DISPATCH_LEVEL; the event is signalled.
        unsafe {
            KeInitializeEvent(&mut event, NotificationEvent, TRUE);
            let _dispatch = irql::raise(DISPATCH_LEVEL);
            let status = KeWaitForSingleObject(
                (&raw mut event).cast(),
                Executive,
                KernelMode,
                FALSE,
                &mut zero,
            );
            assert_eq!(status, STATUS_SUCCESS);
        }
    });
}

#[test]
fn irql_too_high() {
    fires(Rule::IrqlTooHigh, |_| {
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        // SAFETY: paged pool above APC_LEVEL is the bug under test (refused: NULL).
        let block = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, 16, u32::from_le_bytes(*b"Page")) };
        assert!(block.is_null());
    });
    fires(Rule::IrqlTooHigh, |_| {
        let mut registration = WSK_REGISTRATION::default();
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        // WskRegister above PASSIVE_LEVEL: the bug under test (refused).
        assert_ne!(register(&mut registration), STATUS_SUCCESS);
    });
    silent(|_| {
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        let block = pool(16, b"NonP");
        // SAFETY: non-paged pool may be allocated and freed at DISPATCH_LEVEL.
        unsafe { ExFreePoolWithTag(block, u32::from_le_bytes(*b"NonP")) };
    });
}

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

#[test]
fn irql_not_greater_or_equal() {
    fires(Rule::IrqlNotGreaterOrEqual, |_| {
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        // Raising to a lower level: the bug under test.
        let _lower = irql::raise(PASSIVE_LEVEL);
    });
    silent(|_| {
        let _apc = irql::raise(APC_LEVEL);
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        let _again = irql::raise(DISPATCH_LEVEL);
        assert_eq!(irql::current(), DISPATCH_LEVEL);
    });
    assert_eq!(irql::current(), PASSIVE_LEVEL);
}

// ---- registration and sockets ----

#[test]
fn deregister_with_open_sockets() {
    let config = ProviderConfig {
        deregister_wait_report: Duration::from_millis(100),
        ..ProviderConfig::default()
    };
    let found = findings(config, |session| {
        let (registration, mut request, listener) = listening();
        // Deregistering with the socket open (the bug): it waits, and the wait is reported.
        let deregistering = std::thread::spawn(move || drop(registration));
        assert!(
            (0..1000).any(|_| {
                std::thread::sleep(Duration::from_millis(5));
                !session.violations().is_empty()
            }),
            "the hang is reported"
        );
        assert!(!deregistering.is_finished(), "WskDeregister keeps waiting");
        // Closing the socket lets the deregistration end.
        // SAFETY: the open socket, closed once.
        assert_eq!(unsafe { close(listener, &mut request) }, STATUS_SUCCESS);
        deregistering.join().unwrap();
    });
    let rules: Vec<Rule> = found.iter().map(|v| v.rule).collect();
    assert_eq!(rules, [Rule::DeregisterWithOpenSockets], "{found:#?}");
    silent(|_| {
        let (registration, mut request, listener) = listening();
        // SAFETY: the open socket, closed once, before the deregistration.
        assert_eq!(unsafe { close(listener, &mut request) }, STATUS_SUCCESS);
        drop(registration);
    });
}

#[test]
fn capture_release_mismatch() {
    fires(Rule::CaptureReleaseMismatch, |_| {
        let mut registration = WSK_REGISTRATION::default();
        // SAFETY: a release without a capture, then a second deregistration: the bugs under
        // test (both refused).
        unsafe {
            assert_eq!(register(&mut registration), STATUS_SUCCESS);
            WskReleaseProviderNPI(&mut registration);
            WskDeregister(&mut registration);
            WskDeregister(&mut registration);
        }
    });
    silent(|_| {
        let mut registration = WSK_REGISTRATION::default();
        let mut provider = WSK_PROVIDER_NPI::default();
        // SAFETY: register, capture twice, release twice, deregister once.
        unsafe {
            assert_eq!(register(&mut registration), STATUS_SUCCESS);
            for _ in 0..2 {
                assert_eq!(
                    WskCaptureProviderNPI(&mut registration, WSK_NO_WAIT, &mut provider),
                    STATUS_SUCCESS
                );
            }
            WskReleaseProviderNPI(&mut registration);
            WskReleaseProviderNPI(&mut registration);
            WskDeregister(&mut registration);
        }
    });
}

#[test]
fn socket_use_after_close() {
    fires(Rule::SocketUseAfterClose, |_| {
        let (_registration, mut request, listener) = listening();
        let mut address = SOCKADDR_INET::default();
        // SAFETY: the calls after the close are the bugs under test: wsk-host keeps a closed
        // socket's memory in quarantine, refuses them and completes their IRPs.
        unsafe {
            let dispatch = common::listen_dispatch(listener);
            assert_eq!(close(listener, &mut request), STATUS_SUCCESS);
            (dispatch.WskGetLocalAddress.unwrap())(
                listener,
                (&raw mut address).cast(),
                request.irp(),
            );
            assert_eq!(request.wait().0, STATUS_FILE_FORCED_CLOSED);
            (dispatch.Basic.WskCloseSocket.unwrap())(listener, request.irp());
            assert_eq!(request.wait().0, STATUS_FILE_FORCED_CLOSED);
        }
    });
    silent(|_| {
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let (listener, bound) = listen(&registration, &mut request, "127.0.0.1:0".parse().unwrap());
        assert_ne!(bound.port(), 0);
        // SAFETY: the open socket, closed once.
        assert_eq!(unsafe { close(listener, &mut request) }, STATUS_SUCCESS);
    });
}

#[test]
fn invalid_parameter() {
    fires(Rule::InvalidParameter, |_| {
        let mut never_initialized = KEVENT::default();
        // SAFETY: an event never given to KeInitializeEvent: the bug under test (refused).
        unsafe { KeSetEvent(&mut never_initialized, 0, FALSE) };
    });
    fires(Rule::InvalidParameter, |_| {
        // SAFETY: a zero tag is the bug under test (refused: NULL).
        let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, 0) };
        assert!(block.is_null());
    });
    fires(Rule::InvalidParameter, |_| {
        // SAFETY: a NULL IRP is the bug under test (refused).
        unsafe { IoFreeIrp(null_mut()) };
    });
    silent(|_| {
        let mut event = KEVENT::default();
        // SAFETY: initialized first.
        unsafe {
            KeInitializeEvent(&mut event, SynchronizationEvent, FALSE);
            KeSetEvent(&mut event, 0, FALSE);
        }
    });
}

// ---- how findings are raised ----

/// The environment variable that makes `driver_bug_check` the child process that bug-checks.
const BUG_CHECK_CHILD: &str = "WSK_HOST_TEST_BUG_CHECK_CHILD";

#[test]
fn driver_bug_check() {
    if std::env::var_os(BUG_CHECK_CHILD).is_some() {
        let _session = Session::start();
        // A bug check stops the machine: here, the process.
        // SAFETY: the call under test; it does not return.
        unsafe { KeBugCheckEx(0xDEAD, 1, 2, 3, 4) };
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "driver_bug_check",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(BUG_CHECK_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(!child.status.success(), "the process is stopped");
    assert!(
        stderr.contains("DRIVER_BUG_CHECK: KeBugCheckEx(0xdead, 0x1, 0x2, 0x3, 0x4)"),
        "{stderr}"
    );
    // Correct code never gets there.
    silent(|_| {});
}

#[test]
fn finish_panics_with_every_finding_named() {
    let session = Session::start();
    // SAFETY: allocations never freed: the bugs under test.
    unsafe {
        IoAllocateIrp(1, FALSE);
    }
    pool(8, b"Fin!");
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.finish()))
        .expect_err("finish panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("IRP_LEAKED"), "{message}");
    assert!(
        message.contains("POOL_LEAKED") && message.contains("Fin!"),
        "{message}"
    );
    // The next session starts clean.
    Session::start().finish();
}

// ---- DISPATCH_LEVEL runs (Windows' DPC watchdog) ----

/// The context of [`held_completion`]: how long it holds its thread, and the event it signals
/// after.
struct Hold {
    hold: Duration,
    event: KEVENT,
}

/// A completion routine that holds its thread — the provider's, at DISPATCH_LEVEL — for
/// `Hold::hold` (a driver's routine that loops instead of yielding), then signals.
unsafe extern "system" fn held_completion(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's live `Hold`, which waits for this signal.
    let hold = unsafe { &mut *context.cast::<Hold>() };
    let until = std::time::Instant::now() + hold.hold;
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    // SAFETY: the live event.
    unsafe { KeSetEvent(&mut hold.event, 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A receive completed from the provider's thread whose completion routine holds it for
/// `hold`, in a session whose DISPATCH_LEVEL runs may take `budget`; the findings.
fn receive_completed_in(budget: Duration, hold: Duration) -> Vec<Violation> {
    let config = ProviderConfig {
        dispatch_run_budget: Some(budget),
        ..ProviderConfig::default()
    };
    findings(config, |session| {
        // Every completion from the provider's thread: the run measured is its.
        session.set_faults(wsk_host::FaultPlan::new(3).completion(CompletionMode::AlwaysPending));
        let registration = Registration::new();
        let mut request = SyncRequest::new().unwrap();
        let (socket, listener) = connected(&registration, &mut request);
        let (mut peer, _) = listener.accept().unwrap();
        let buffer = PoolBuffer::new(16).unwrap();
        let mut wsk_buf = buffer.wsk_buf(0, 16);
        let mut context = Box::new(Hold {
            hold,
            event: KEVENT::default(),
        });
        // SAFETY: the IRP, the buffer and the context outlive the receive, waited for below.
        unsafe {
            let irp = IoAllocateIrp(1, FALSE);
            assert!(!irp.is_null());
            KeInitializeEvent(&mut context.event, NotificationEvent, FALSE);
            IoSetCompletionRoutine(
                irp,
                Some(held_completion),
                (&raw mut *context).cast(),
                true,
                true,
                true,
            );
            let status =
                (connection_dispatch(socket).WskReceive.unwrap())(socket, &mut wsk_buf, 0, irp);
            assert_eq!(status, STATUS_PENDING);
            std::io::Write::write_all(&mut peer, b"x").unwrap();
            let mut timeout = LARGE_INTEGER {
                QuadPart: -10_000 * 20_000,
            };
            assert_eq!(
                KeWaitForSingleObject(
                    (&raw mut context.event).cast(),
                    Executive,
                    KernelMode,
                    FALSE,
                    &mut timeout,
                ),
                STATUS_SUCCESS,
                "the receive completes within 20 s"
            );
            assert_eq!((*irp).IoStatus.u.Status, STATUS_SUCCESS);
            IoFreeIrp(irp);
            assert_eq!(close(socket, &mut request), STATUS_SUCCESS);
        }
    })
}

#[test]
fn dpc_watchdog_violation() {
    let found = receive_completed_in(Duration::from_millis(20), Duration::from_millis(200));
    let rules: BTreeSet<&str> = found.iter().map(|v| v.rule.name()).collect();
    assert_eq!(
        rules,
        BTreeSet::from([Rule::DpcWatchdogViolation.name()]),
        "{found:#?}"
    );
    assert!(
        found[0].to_string().contains("DISPATCH_LEVEL"),
        "{found:#?}"
    );
    // A routine that returns promptly is within the budget; so is every run of the suites,
    // which run with the default budget.
    let found = receive_completed_in(Duration::from_millis(20), Duration::ZERO);
    assert!(found.is_empty(), "{found:#?}");
    assert!(ProviderConfig::default().dispatch_run_budget.is_some());
}
