//! `wsk_driver_runtime::passive`: a task woken by a completion routine (DISPATCH_LEVEL on the
//! provider's thread) continues at PASSIVE_LEVEL, from the driver's work item, when its future
//! is wrapped in `PassiveLevel::run`, whose first poll is the work item's too — and, unwrapped,
//! at the completion's IRQL, first polled by `spawn` (the control that shows the test can
//! fail). Nothing leaks.

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc::channel;
use std::time::Duration;

use wsk::irql::Irql;
use wsk::task::TaskSet;
use wsk::{Buf, WskClient};
use wsk_driver_runtime::passive::PassiveLevel;
use wsk_host::Session;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_wrapped_task_continues_at_passive_level_after_a_completion() {
    let session = Session::start();
    // SAFETY: the session's own driver object, valid until the session ends.
    let driver = unsafe { wsk::DriverObject::from_raw(session.driver_object()) }.unwrap();
    let client = WskClient::register(driver).unwrap();
    let tasks = TaskSet::new(driver).unwrap();
    let passive = PassiveLevel::new(driver).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for wrapped in [false, true] {
        let socket = client
            .connect(listener.local_addr().unwrap())
            .wait()
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let (report, seen) = channel();
        let receive = async move {
            let before = (Irql::current(), std::thread::current().id());
            let (received, _buf) = socket.receive(Buf::with_capacity(8).unwrap()).await;
            let _ = report.send((before, received.map_err(|e| e.status()), Irql::current()));
        };
        if wrapped {
            tasks.spawn(passive.run(receive)).unwrap();
        } else {
            tasks.spawn(receive).unwrap();
        }
        // The receive waits in the provider; its completion comes from the provider's thread.
        assert!(session.wait_for_queued_requests(1, WAIT));
        peer.write_all(b"x").unwrap();
        let (before, received, after) = seen.recv_timeout(WAIT).unwrap();
        assert_eq!(before.0, Irql::PASSIVE);
        assert_eq!(
            before.1 == std::thread::current().id(),
            !wrapped,
            "the first poll runs in spawn, unless wrapped: then in the work item"
        );
        assert_eq!(received, Ok(1));
        if wrapped {
            assert_eq!(after, Irql::PASSIVE, "continued from the work item");
        } else {
            assert!(after > Irql::PASSIVE, "continued in the completion routine");
        }
    }
    drop((tasks, passive, client));
    session.finish();
}
