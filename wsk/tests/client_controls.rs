//! Client-level controls (`WskControlClient`) and reverse lookup (`WskGetNameInfo`) on
//! wsk-host.

use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wsk::{ErrorKind, NameInfoFlags, WskClient};
use wsk_host::Session;
use wsk_sys::*;

mod common;
use common::driver;

#[test]
fn the_transport_list_has_tcp_and_udp_over_both_families() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let transports = client.transports().unwrap();
    for (socket_type, protocol, family) in [
        (SOCK_STREAM, IPPROTO_TCP, AF_INET),
        (SOCK_STREAM, IPPROTO_TCP, AF_INET6),
        (SOCK_DGRAM, IPPROTO_UDP, AF_INET),
        (SOCK_DGRAM, IPPROTO_UDP, AF_INET6),
    ] {
        assert!(
            transports
                .iter()
                .any(|t| (t.socket_type, t.protocol, t.family) == (socket_type, protocol, family)),
            "{transports:?}"
        );
    }
    // The raw form, with too small a buffer: the size needed comes back.
    // SAFETY: the query takes no input.
    let error = unsafe { client.control_client(WSK_TRANSPORT_LIST_QUERY, &[], 8) }.unwrap_err();
    assert_eq!(
        error.needed_size(),
        Some(transports.len() * std::mem::size_of::<WSK_TRANSPORT>())
    );
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_transport_list_change_completes_on_a_change_and_is_cancelled_otherwise() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    let mut change = Box::pin(client.transport_list_change());
    assert!(change.as_mut().poll(&mut cx).is_pending());
    std::thread::sleep(Duration::from_millis(20));
    assert!(change.as_mut().poll(&mut cx).is_pending(), "no change yet");
    session.change_transports();
    change.as_mut().wait_ready(&mut cx).unwrap();

    // Dropped while pending: cancelled, nothing left behind.
    let mut dropped = Box::pin(client.transport_list_change());
    assert!(dropped.as_mut().poll(&mut cx).is_pending());
    drop(dropped);

    // Pending when the client goes: the teardown cancels it and does not hang.
    let mut last = Box::pin(client.transport_list_change());
    assert!(last.as_mut().poll(&mut cx).is_pending());
    let teardown = std::thread::spawn(move || drop(client));
    let result = last.as_mut().wait_ready(&mut cx);
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
    teardown.join().unwrap();
    drop((change, last));
    session.finish();
}

trait WaitReady: Future {
    fn wait_ready(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Self::Output;
}

impl<F: Future> WaitReady for F {
    fn wait_ready(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> F::Output {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Poll::Ready(output) = self.as_mut().poll(cx) {
                return output;
            }
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn raw_client_controls() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    // A descriptor cached, then released (a leak would show in the session's pool check).
    let descriptor = [0u8; 20];
    let input = (descriptor.as_ptr() as usize).to_ne_bytes();
    // SAFETY: the input is a pointer to a descriptor alive across the call.
    let cached = unsafe { client.control_client(WSK_CACHE_SD, &input, 8) }.unwrap();
    assert_eq!(cached.len(), std::mem::size_of::<usize>());
    assert_ne!(usize::from_ne_bytes(cached[..].try_into().unwrap()), 0);
    // SAFETY: the cached descriptor, released once.
    unsafe { client.control_client(WSK_RELEASE_SD, &cached, 0) }.unwrap();

    // The change notification needs an IRP: refused here.
    // SAFETY: refused before the provider is called.
    let error = unsafe { client.control_client(WSK_TRANSPORT_LIST_CHANGE, &[], 0) }.unwrap_err();
    assert_eq!(error, wsk::Error::INVALID_PARAMETER);
    // SAFETY: no input.
    let error = unsafe { client.control_client(WSK_TDI_BEHAVIOR, &[], 0) }.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotSupported);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn reverse_lookup_of_loopback_and_numeric_addresses() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let names = client
        .name_of(loopback, NameInfoFlags::default())
        .wait()
        .unwrap();
    assert_eq!(
        (names.host.as_str(), names.service.as_str()),
        ("localhost", "8080")
    );
    let numeric = NameInfoFlags {
        numeric_host: true,
        numeric_service: true,
        ..NameInfoFlags::default()
    };
    let names = client.name_of(loopback, numeric).wait().unwrap();
    assert_eq!(names.host, "127.0.0.1");
    let names = client
        .name_of("[::1]:443".parse().unwrap(), numeric)
        .wait()
        .unwrap();
    assert_eq!(
        (names.host.as_str(), names.service.as_str()),
        ("::1", "443")
    );
    let names = client
        .name_of("[::1]:443".parse().unwrap(), NameInfoFlags::default())
        .wait()
        .unwrap();
    assert_eq!(names.host, "localhost");
    // An address with no name: numeric, unless a name is required.
    let documentation: SocketAddr = "192.0.2.7:9".parse().unwrap();
    let names = client
        .name_of(documentation, NameInfoFlags::default())
        .wait()
        .unwrap();
    assert_eq!(names.host, "192.0.2.7");
    let required = NameInfoFlags {
        name_required: true,
        ..NameInfoFlags::default()
    };
    let error = client.name_of(documentation, required).wait().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn client_controls_refuse_above_passive_level() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let lock = wsk::SpinLock::new(());
    {
        // Holding a spin lock: DISPATCH_LEVEL.
        let _guard = lock.lock();
        assert_eq!(client.transports().unwrap_err(), wsk::Error::IRQL_TOO_HIGH);
        // SAFETY: refused before the provider is called.
        let error = unsafe { client.control_client(WSK_TDI_BEHAVIOR, &[], 0) }.unwrap_err();
        assert_eq!(error, wsk::Error::IRQL_TOO_HIGH);
        // Issued (polled) at DISPATCH_LEVEL, the reverse lookup refuses too.
        let mut cx = Context::from_waker(Waker::noop());
        let mut lookup =
            Box::pin(client.name_of("127.0.0.1:1".parse().unwrap(), NameInfoFlags::default()));
        match lookup.as_mut().poll(&mut cx) {
            Poll::Ready(result) => assert_eq!(result.unwrap_err(), wsk::Error::IRQL_TOO_HIGH),
            Poll::Pending => panic!("a reverse lookup was issued at DISPATCH_LEVEL"),
        }
    }
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_reverse_lookup_after_a_resolution_collected_at_dispatch_level_leaks_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let numeric = NameInfoFlags {
        numeric_host: true,
        numeric_service: true,
        ..NameInfoFlags::default()
    };
    for _ in 0..3 {
        // Collected above PASSIVE_LEVEL: its address list cannot be freed there, and is left
        // in the block for the next PASSIVE_LEVEL opportunity.
        let mut resolve = Box::pin(client.resolve("127.0.0.1", 80));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Issued at PASSIVE_LEVEL (name resolution is issued there only); the resolver
        // completes it later.
        assert!(resolve.as_mut().poll(&mut cx).is_pending());
        {
            let _raised = wsk_host::irql::raise(DISPATCH_LEVEL);
            loop {
                if let Poll::Ready(addresses) = resolve.as_mut().poll(&mut cx) {
                    // Read there; the list itself can be freed only at PASSIVE_LEVEL.
                    assert_eq!(addresses.unwrap(), ["127.0.0.1:80".parse().unwrap()]);
                    break;
                }
                assert!(Instant::now() < deadline, "timed out");
                std::thread::sleep(Duration::from_millis(2));
            }
            // Let go there too: the block goes back to the pool with the list in it.
            drop(resolve);
        }
        // A reverse lookup on the same block returns no list: the one left must not be lost.
        let names = client
            .name_of("127.0.0.1:80".parse().unwrap(), numeric)
            .wait()
            .unwrap();
        assert_eq!(names.host, "127.0.0.1");
    }
    client.shutdown().unwrap();
    session.finish();
}
