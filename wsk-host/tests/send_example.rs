//! Microsoft's WSK example "Sending Data over a Connection-Oriented Socket", transliterated to
//! Rust against `wsk-sys` alone, run on wsk-host against a std `TcpListener` on loopback.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::ptr::null_mut;

use common::{PoolBuffer, Registration, SyncRequest, close, connect};
use wsk_host::{FaultPlan, Nth, Session};
use wsk_sys::*;

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

/// Registers, connects, sends `message` once with the documentation's code, closes,
/// releases, deregisters. Returns the send's status.
fn run_example(listener: &TcpListener, message: &[u8]) -> NTSTATUS {
    let registration = Registration::new();
    let mut request = SyncRequest::new().expect("an IRP for the connect");
    let socket = connect(&registration, &mut request, listener.local_addr().unwrap())
        .expect("WskSocketConnect");
    // The data buffer: non-paged pool and its MDL.
    let data = PoolBuffer::from_slice(message).expect("pool for the message");
    let mut buffer = data.wsk_buf(0, message.len());
    let mut outcome = SendOutcome {
        status: STATUS_PENDING,
        bytes: 0,
        done: KEVENT::default(),
    };
    // SAFETY: the documentation's sequence: the socket is connected, the buffer and the
    // outcome live until the completion is waited for, and the socket is closed last.
    unsafe {
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
        assert_eq!(close(socket, &mut request), STATUS_SUCCESS);
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
