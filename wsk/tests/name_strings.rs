//! `WskClient::resolve` hands the provider names that are counted strings and also
//! NUL-terminated right after their `Length` (inside `MaximumLength`): a provider that reads
//! them as C strings (Wine's, which ignores `Length`) resolves the same names.

use std::net::SocketAddr;

use wsk::{AddressFamily, ResolveHints, WskClient};
use wsk_host::Session;

mod common;
use common::driver;

#[test]
fn resolved_names_are_terminated_after_their_length() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let numeric = ResolveHints {
        family: Some(AddressFamily::V4),
        numeric_host: true,
    };
    // Every length of port (1 to 5 digits): the service name follows the node name in the
    // same buffer.
    for port in [7, 80, 443, 8080, 65535] {
        let addresses = client
            .resolve_with("127.0.0.1", port, numeric)
            .wait()
            .unwrap();
        assert_eq!(addresses, [SocketAddr::from(([127, 0, 0, 1], port))]);
    }
    let addresses = client.resolve("localhost", 8000).wait().unwrap();
    assert!(
        addresses
            .iter()
            .all(|a| a.port() == 8000 && a.ip().is_loopback())
    );
    assert_eq!(session.report().address_info_names_unterminated, 0);
    client.shutdown().unwrap();
    assert_eq!(session.finish().address_info_names_unterminated, 0);
}
