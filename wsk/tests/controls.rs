//! The SIO_WSK_* socket controls and the send-backlog event, on wsk-host over loopback.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wsk::{Buf, ConnectionSocket, ControlKind, ErrorKind, SocketOptions, WskClient};
use wsk_host::Session;
use wsk_sys::*;

mod common;
use common::driver;

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, event: PVOID) -> NTSTATUS {
    // SAFETY: the event the test waits on, alive until then.
    unsafe { KeSetEvent(event.cast(), IO_NO_INCREMENT.into(), FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn receive_backlog_counts_a_waiting_datagram() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    let local = socket.local_addr().wait().unwrap();
    assert_eq!(socket.receive_backlog().wait().unwrap(), 0);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(&[7u8; 100], local).unwrap();
    until("the datagram to be counted", || {
        socket.receive_backlog().wait().unwrap() == 100
    });
    let (received, _) = socket.receive_from(Buf::with_capacity(256).unwrap()).wait();
    assert_eq!(received.unwrap().0, 100);
    assert_eq!(socket.receive_backlog().wait().unwrap(), 0);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_fixed_remote_address_is_where_a_send_without_one_goes() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .set_send_to_address(peer.local_addr().unwrap())
        .wait()
        .unwrap();
    socket
        .set_remote_address(peer.local_addr().unwrap())
        .wait()
        .unwrap();
    // The other family is refused before the provider sees it.
    let error = socket
        .set_remote_address("[::1]:9".parse().unwrap())
        .wait()
        .unwrap_err();
    assert_eq!(error, wsk::Error::ADDRESS_FAMILY_MISMATCH);

    // A send with no address, through the raw datagram table: it goes to the fixed one.
    let data = Buf::from_slice(b"fixed").unwrap();
    let mut event = KEVENT::default();
    let irp = wsk::Irp::new().unwrap();
    // SAFETY: the socket is open and stays so; the data (non-paged pool, only read), its MDL, the WSK_BUF, the IRP and
    // the event outlive the request, which is waited for before any of them goes.
    let status = unsafe {
        let mdl = IoAllocateMdl(
            data.as_ptr().cast_mut().cast(),
            data.len() as ULONG,
            FALSE,
            FALSE,
            std::ptr::null_mut(),
        );
        assert!(!mdl.is_null());
        MmBuildMdlForNonPagedPool(mdl);
        let mut wsk_buf = WSK_BUF {
            Mdl: mdl,
            Offset: 0,
            Length: data.len() as SIZE_T,
        };
        KeInitializeEvent(&mut event, NotificationEvent, FALSE);
        IoSetCompletionRoutine(
            irp.as_ptr(),
            Some(signal),
            (&raw mut event).cast(),
            true,
            true,
            true,
        );
        let raw = socket.as_raw();
        let table = &*(*raw).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
        table.WskSendTo.unwrap()(
            raw,
            &mut wsk_buf,
            0,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            irp.as_ptr(),
        );
        KeWaitForSingleObject(
            (&raw mut event).cast(),
            Executive,
            KernelMode,
            FALSE,
            std::ptr::null_mut(),
        );
        IoFreeMdl(mdl);
        irp.status()
    };
    assert_eq!(status, STATUS_SUCCESS);
    let mut got = [0u8; 16];
    let (n, from) = peer.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], b"fixed");
    assert_eq!(from, socket.local_addr().wait().unwrap());
    drop((irp, data, socket));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn connection_controls() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    let (_peer, _) = listener.accept().unwrap();

    let ideal = socket.ideal_send_backlog().wait().unwrap();
    assert!(ideal > 0);
    // The same control, raw, with room for the answer and without.
    // SAFETY: the control carries no pointer.
    let bytes = unsafe {
        socket.control(
            ControlKind::Ioctl,
            SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
            0,
            &[],
            64,
        )
    }
    .wait()
    .unwrap();
    assert_eq!(bytes.len(), std::mem::size_of::<usize>());
    assert_eq!(usize::from_ne_bytes(bytes[..].try_into().unwrap()), ideal);
    // SAFETY: as above.
    let error = unsafe {
        socket.control(
            ControlKind::Ioctl,
            SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
            0,
            &[],
            2,
        )
    }
    .wait()
    .unwrap_err();
    assert_eq!(error.needed_size(), Some(std::mem::size_of::<usize>()));

    // Not accepted through a conditional accept: no inspect ID.
    assert!(socket.inspect_id().wait().is_err());

    // Silent mode: nothing is sent any more.
    socket.set_tcp_silent_mode().wait().unwrap();
    let (sent, _) = socket.send(Buf::from_slice(b"quiet").unwrap()).wait();
    assert_eq!(sent.unwrap_err().kind(), ErrorKind::SocketClosed);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

struct Backlog(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl wsk::ConnectionEvents for Backlog {
    fn on_receive<'a>(&self, data: wsk::ReceivedData<'a>) -> wsk::ReceiveDecision<'a> {
        data.consume()
    }
    fn on_send_backlog(&self, ideal_bytes: usize) {
        self.0.store(ideal_bytes, Ordering::SeqCst);
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_send_backlog_event_fires_when_enabled_and_when_the_ideal_changes() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (ideal, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let socket = ConnectionSocket::connect_with_events(
        &client,
        listener.local_addr().unwrap(),
        Backlog(ideal.clone(), calls.clone()),
    )
    .wait()
    .unwrap();
    until("the first send-backlog event", || {
        calls.load(Ordering::SeqCst) >= 1
    });
    assert_eq!(
        ideal.load(Ordering::SeqCst),
        socket.ideal_send_backlog().wait().unwrap()
    );
    let before = calls.load(Ordering::SeqCst);
    let larger = socket.send_buffer_size().wait().unwrap() * 2;
    SocketOptions::set_send_buffer_size(&socket, larger)
        .wait()
        .unwrap();
    until("the event of the new ideal", || {
        calls.load(Ordering::SeqCst) > before
    });
    assert_eq!(
        ideal.load(Ordering::SeqCst),
        socket.ideal_send_backlog().wait().unwrap()
    );
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}
