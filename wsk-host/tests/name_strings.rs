//! The provider counts the names given to `WskGetAddressInfo` that have no NUL right after
//! their `Length` (`Report::address_info_names_unterminated`): the counter `wsk`'s own test
//! (`wsk/tests/name_strings.rs`) relies on counts what it should, and only that.

mod common;

use std::ptr::null_mut;

use common::{Registration, SyncRequest};
use wsk_host::Session;
use wsk_sys::*;

/// `WskGetAddressInfo` of `node` and `service` (numeric host); returns the status and frees
/// the list.
fn resolve(
    registration: &Registration,
    node: &mut UNICODE_STRING,
    service: &mut UNICODE_STRING,
) -> NTSTATUS {
    let mut request = SyncRequest::new().unwrap();
    let mut result: PADDRINFOEXW = null_mut();
    let mut hints = ADDRINFOEXW {
        ai_flags: AI_NUMERICHOST,
        ai_family: i32::from(AF_INET),
        ..ADDRINFOEXW::default()
    };
    let irp = request.irp();
    // SAFETY: the strings, hints and result slot live until the wait below.
    unsafe {
        (registration.dispatch().WskGetAddressInfo.unwrap())(
            registration.client(),
            node,
            service,
            NS_ALL,
            null_mut(),
            &mut hints,
            &mut result,
            null_mut(),
            null_mut(),
            irp,
        );
    }
    let status = request.wait().0;
    if !result.is_null() {
        // SAFETY: the list the provider returned, freed once.
        unsafe {
            (registration.dispatch().WskFreeAddressInfo.unwrap())(registration.client(), result)
        };
    }
    status
}

/// A counted string over `units[..length]` with `MaximumLength` of `maximum` units.
fn counted(units: &mut [u16], length: usize, maximum: usize) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: (length * 2) as u16,
        MaximumLength: (maximum * 2) as u16,
        Buffer: units.as_mut_ptr(),
    }
}

#[test]
fn names_without_a_nul_after_their_length_are_counted() {
    let session = Session::start();
    let registration = Registration::new();
    // "127.0.0.1" then "80" in one buffer, no NUL between them: read as C strings, the node
    // is "127.0.0.180".
    let mut adjacent: Vec<u16> = "127.0.0.180".encode_utf16().collect();
    let (node_units, service_units) = adjacent.split_at_mut(9);
    let mut node = counted(node_units, 9, 9);
    let mut service = counted(service_units, 2, 2);
    assert_eq!(
        resolve(&registration, &mut node, &mut service),
        STATUS_SUCCESS
    );
    assert_eq!(session.report().address_info_names_unterminated, 2);

    // A NUL inside MaximumLength but not right after Length: still counted.
    let mut padded: Vec<u16> = "127.0.0.1x\0".encode_utf16().collect();
    let mut node = counted(&mut padded, 9, 11);
    let mut port: Vec<u16> = "80\0".encode_utf16().collect();
    let mut service = counted(&mut port, 2, 3);
    assert_eq!(
        resolve(&registration, &mut node, &mut service),
        STATUS_SUCCESS
    );
    assert_eq!(session.report().address_info_names_unterminated, 3);

    // Terminated as RtlInitUnicodeString leaves them: not counted.
    let mut host: Vec<u16> = "127.0.0.1\0".encode_utf16().collect();
    let mut node = counted(&mut host, 9, 10);
    let mut service = counted(&mut port, 2, 3);
    assert_eq!(
        resolve(&registration, &mut node, &mut service),
        STATUS_SUCCESS
    );
    drop(registration);
    assert_eq!(session.finish().address_info_names_unterminated, 3);
}
