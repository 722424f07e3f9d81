//! Microsoft's WSK example "Sending Data over a Connection-Oriented Socket", transliterated to
//! Rust against `wsk-sys` alone, run on wsk-host against a std `TcpListener` on loopback.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::ptr::null_mut;

use wsk_host::{FaultPlan, Nth, Session};
use wsk_sys::*;

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// A blocking call helper of the documentation's kind: an IRP, a completion routine that sets
/// an event, a wait.
struct Sync {
    event: KEVENT,
}

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the `KEVENT` of the waiting thread.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Allocates an IRP whose completion signals `sync`.
unsafe fn sync_irp(sync: &mut Sync) -> PIRP {
    // SAFETY: the event outlives the IRP's use of it (the caller waits before dropping `sync`).
    unsafe {
        KeInitializeEvent(&mut sync.event, NotificationEvent, FALSE);
        let irp = IoAllocateIrp(1, FALSE);
        if !irp.is_null() {
            IoSetCompletionRoutine(
                irp,
                Some(signal),
                (&raw mut sync.event).cast(),
                true,
                true,
                true,
            );
        }
        irp
    }
}

unsafe fn wait(sync: &mut Sync, irp: PIRP) -> (NTSTATUS, usize) {
    // SAFETY: `irp` is the IRP `sync_irp` made; its completion signals `sync`'s event.
    unsafe {
        KeWaitForSingleObject(
            (&raw mut sync.event).cast(),
            Executive,
            KernelMode,
            FALSE,
            null_mut(),
        );
        let result = (
            (*irp).IoStatus.u.Status,
            (*irp).IoStatus.Information as usize,
        );
        IoFreeIrp(irp);
        result
    }
}

/// The documentation's completion routine of the send: reads the status and the bytes sent,
/// frees the IRP, returns STATUS_MORE_PROCESSING_REQUIRED.
unsafe extern "system" fn send_complete(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the `SendOutcome` `send_data` was given, alive until it is signalled.
    unsafe {
        let outcome = &mut *context.cast::<SendOutcome>();
        outcome.status = (*irp).IoStatus.u.Status;
        outcome.bytes = (*irp).IoStatus.Information as usize;
        IoFreeIrp(irp);
        KeSetEvent(&mut outcome.done, 0, FALSE);
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

struct SendOutcome {
    status: NTSTATUS,
    bytes: usize,
    done: KEVENT,
}

/// The documentation's send function.
unsafe fn send_data(
    socket: PWSK_SOCKET,
    buffer: &mut WSK_BUF,
    outcome: &mut SendOutcome,
) -> NTSTATUS {
    // SAFETY: `socket` is a connected socket and `buffer` a locked buffer, both alive until the completion.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        if irp.is_null() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        IoSetCompletionRoutine(
            irp,
            Some(send_complete),
            (outcome as *mut SendOutcome).cast(),
            true,
            true,
            true,
        );
        let dispatch = (*socket)
            .Dispatch
            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
        ((*dispatch).WskSend.unwrap())(socket, buffer, 0, irp)
    }
}

fn sockaddr(address: SocketAddr) -> SOCKADDR_INET {
    let mut raw = SOCKADDR_INET::default();
    match address {
        SocketAddr::V4(v4) => {
            raw.Ipv4.sin_family = AF_INET;
            raw.Ipv4.sin_port = v4.port().to_be();
            raw.Ipv4.sin_addr.S_un.S_addr = u32::from_ne_bytes(v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            raw.Ipv6.sin6_family = AF_INET6;
            raw.Ipv6.sin6_port = v6.port().to_be();
            raw.Ipv6.sin6_addr.u.Byte = v6.ip().octets();
        }
    }
    raw
}

/// Registers, connects, sends `message` once with the documentation's code, closes,
/// releases, deregisters. Returns the send's status.
fn run_example(listener: &TcpListener, message: &[u8]) -> NTSTATUS {
    let remote = listener.local_addr().unwrap();
    let unspecified: SocketAddr = if remote.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    // SAFETY: the documentation's sequence, each pointer checked by an assertion before use.
    unsafe {
        let mut registration = WSK_REGISTRATION::default();
        let mut npi = WSK_CLIENT_NPI {
            ClientContext: null_mut(),
            Dispatch: &CLIENT_DISPATCH,
        };
        assert_eq!(WskRegister(&mut npi, &mut registration), STATUS_SUCCESS);
        let mut provider = WSK_PROVIDER_NPI::default();
        assert_eq!(
            WskCaptureProviderNPI(&mut registration, WSK_INFINITE_WAIT, &mut provider),
            STATUS_SUCCESS
        );

        let mut sync = Sync {
            event: KEVENT::default(),
        };
        let mut local = sockaddr(unspecified);
        let mut remote = sockaddr(remote);
        let irp = sync_irp(&mut sync);
        assert!(!irp.is_null());
        ((*provider.Dispatch).WskSocketConnect.unwrap())(
            provider.Client,
            SOCK_STREAM,
            IPPROTO_TCP,
            (&raw mut local).cast(),
            (&raw mut remote).cast(),
            0,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            irp,
        );
        let (status, socket) = wait(&mut sync, irp);
        assert_eq!(status, STATUS_SUCCESS);
        let socket = socket as PWSK_SOCKET;

        // The data buffer: non-paged pool and its MDL.
        let data = ExAllocatePoolWithTag(
            NonPagedPoolNx,
            message.len() as SIZE_T,
            u32::from_le_bytes(*b"Test"),
        )
        .cast::<u8>();
        std::ptr::copy_nonoverlapping(message.as_ptr(), data, message.len());
        let mdl = IoAllocateMdl(
            data.cast(),
            message.len() as ULONG,
            FALSE,
            FALSE,
            null_mut(),
        );
        MmBuildMdlForNonPagedPool(mdl);
        let mut buffer = WSK_BUF {
            Mdl: mdl,
            Offset: 0,
            Length: message.len() as SIZE_T,
        };
        let mut outcome = SendOutcome {
            status: STATUS_PENDING,
            bytes: 0,
            done: KEVENT::default(),
        };
        KeInitializeEvent(&mut outcome.done, NotificationEvent, FALSE);
        let send_status = send_data(socket, &mut buffer, &mut outcome);
        if send_status != STATUS_INSUFFICIENT_RESOURCES {
            KeWaitForSingleObject(
                (&raw mut outcome.done).cast(),
                Executive,
                KernelMode,
                FALSE,
                null_mut(),
            );
            assert_eq!(outcome.status, STATUS_SUCCESS);
            assert_eq!(outcome.bytes, message.len());
        }

        // Close the socket, free the buffer, release and deregister.
        let irp = sync_irp(&mut sync);
        let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        ((*basic).WskCloseSocket.unwrap())(socket, irp);
        assert_eq!(wait(&mut sync, irp).0, STATUS_SUCCESS);
        IoFreeMdl(mdl);
        ExFreePoolWithTag(data.cast(), u32::from_le_bytes(*b"Test"));
        WskReleaseProviderNPI(&mut registration);
        WskDeregister(&mut registration);
        if send_status == STATUS_INSUFFICIENT_RESOURCES {
            send_status
        } else {
            outcome.status
        }
    }
}

fn deliver_to_listener(address: &str) {
    let session = Session::start();
    let listener = TcpListener::bind(address).unwrap();
    let message = b"Hello from the WSK send example, in Rust".repeat(100);
    let reader = {
        let listener = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            received
        })
    };
    assert_eq!(run_example(&listener, &message), STATUS_SUCCESS);
    assert_eq!(reader.join().unwrap(), message);
    let report = session.finish();
    assert_eq!(report.irps_allocated, report.irps_freed);
}

#[test]
fn delivers_its_bytes_over_ipv4() {
    deliver_to_listener("127.0.0.1:0");
}

#[test]
fn delivers_its_bytes_over_ipv6() {
    deliver_to_listener("[::1]:0");
}

#[test]
fn irp_allocation_failure_returns_insufficient_resources_and_leaks_nothing() {
    let session = Session::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let acceptor = {
        let listener = listener.try_clone().unwrap();
        std::thread::spawn(move || drop(listener.accept()))
    };
    // The connect's IRP is the 1st allocation, the send's the 2nd.
    session.set_faults(FaultPlan::new(1).fail_irp_allocation(Nth::Call(2)));
    assert_eq!(
        run_example(&listener, b"never sent"),
        STATUS_INSUFFICIENT_RESOURCES
    );
    acceptor.join().unwrap();
    session.finish();
}
