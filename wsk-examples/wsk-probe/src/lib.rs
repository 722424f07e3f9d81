//! `wsk_probe.sys`: a WSK provider conformance probe. `DriverEntry` runs each WSK operation
//! the `wsk` and `wsk-sys` crates wrap — socket kinds, bind, listen and accept, connect,
//! `WskSocketConnect`, send and receive, vectored send, send-to and receive-from, disconnect,
//! local and remote addresses, a socket option, name resolution, and each event callback —
//! against loopback sockets of its own, each with a deadline, and prints one table row per
//! operation through `DbgPrint` (format: the `table` module). It returns `STATUS_SUCCESS`
//! once the table is printed, whatever the rows say: the table is the product.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_probe\Parameters`):
//! - `DeadlineMs` (`REG_DWORD`, default 2000, 10 to 600 000): how long each request may take
//!   before it is cancelled and reported `not completed`;
//! - `ListenPort` (`REG_DWORD`, default 0): 0 binds every probe socket to an ephemeral port
//!   on 127.0.0.1, learnt with `WskGetLocalAddress`; N (1 to 65 000) binds them to N, N+1, ...
//!   N+8 instead, for providers without `WskGetLocalAddress`;
//! - `Peer` (`REG_SZ`, optional): an external TCP peer (IP address and port) to connect to
//!   and send one line to (`wsk_probe: hello`), for the two `peer` rows.
//!
//! # Never hanging
//!
//! The probe runs in `DriverEntry`, at PASSIVE_LEVEL, and everything it starts has ended
//! (or been given up) when `DriverEntry` returns, so `DriverUnload` has nothing to wait for.
//! Every request has a deadline (`DeadlineMs`); what the provider does not complete by then is
//! cancelled, and given up (see the `probe` and `raw` modules for what is leaked then, and
//! why that is the provider's bug). The safe client's teardown waits for its client-level
//! requests and its sockets' closes; when one of those was given up, the probe does not tear
//! the client down (it is leaked, registered) rather than wait forever; likewise the raw
//! client is not deregistered when one of its sockets' closes was given up. The longest
//! `DriverEntry` can take is about (rows + 20) × `DeadlineMs`.
#![no_std]

extern crate alloc;

pub mod deadline;
pub mod probe;
pub mod raw;
pub mod table;

use alloc::format;
use core::net::SocketAddr;

use wsk::{Error, RegisterOptions, WskClient};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_SUCCESS};

use probe::{Config, Probe};
use raw::RawClient;
use table::{Api, Completion, Table};

/// `DeadlineMs` when the parameter is missing.
const DEFAULT_DEADLINE_MS: u32 = 2000;

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: wsk_driver_runtime::parameters::ParameterError) -> Error {
    kprint!("wsk_probe: {error}\n");
    error.into()
}

fn read_config(registry_path: PUNICODE_STRING) -> wsk::Result<Config> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let deadline_ms = parameters
        .dword_in("DeadlineMs", DEFAULT_DEADLINE_MS, 10..=600_000)
        .map_err(reported)?;
    let listen_port = parameters
        .dword_in("ListenPort", 0, 0..=65_000)
        .map_err(reported)? as u16;
    let peer = match parameters.string("Peer").map_err(reported)? {
        None => None,
        Some(text) => Some(text.trim().parse::<SocketAddr>().map_err(|_| {
            kprint!("wsk_probe: parameter Peer: `{text}` is not an IP address and port\n");
            Error::INVALID_PARAMETER
        })?),
    };
    let unimplemented = parameters
        .string("Unimplemented")
        .map_err(reported)?
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(alloc::string::String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Config {
        deadline_ms,
        listen_port,
        peer,
        unimplemented,
    })
}

/// Runs every row and prints the table. PASSIVE_LEVEL (`DriverEntry`).
fn run(driver: wsk::DriverObject, config: Config) -> Table {
    let mut table = Table::default();
    let options = RegisterOptions {
        capture_timeout_ms: config.deadline_ms,
        ..RegisterOptions::default()
    };
    let client = match WskClient::register_with(driver, options) {
        Ok(client) => {
            let info = client.info();
            let note = format!(
                "WSK {}.{}, Windows {}.{}.{}",
                info.version >> 8,
                info.version & 0xff,
                info.os_major,
                info.os_minor,
                info.os_build
            );
            table.add(
                "WskRegister+WskCaptureProviderNPI",
                Api::Safe,
                Completion::Completed(STATUS_SUCCESS),
                None,
                &note,
            );
            client
        }
        Err(error) => {
            table.add(
                "WskRegister+WskCaptureProviderNPI",
                Api::Safe,
                Completion::Completed(error.status()),
                None,
                "nothing else can run",
            );
            return table;
        }
    };
    let raw = match RawClient::register(config.deadline_ms) {
        Ok(raw) => {
            table.add(
                "raw WskRegister+WskCaptureProviderNPI",
                Api::Raw,
                Completion::Completed(STATUS_SUCCESS),
                None,
                "a second registration",
            );
            Some(raw)
        }
        Err(status) => {
            table.add(
                "raw WskRegister+WskCaptureProviderNPI",
                Api::Raw,
                Completion::Completed(status),
                None,
                "",
            );
            None
        }
    };
    let mut probe = Probe::new(&client, config);
    core::mem::swap(&mut probe.table, &mut table);
    let ran = deadline::run(async {
        probe.connections(raw.as_ref()).await;
        probe.connection_events().await;
        probe.datagrams().await;
        probe.streams().await;
        probe.names().await;
        probe.peer().await;
    });
    if ran.is_none() {
        probe.table.add(
            "probe",
            Api::Safe,
            Completion::NotRun,
            Some("DriverEntry above APC_LEVEL: cannot wait"),
            "",
        );
    }
    probe.basic(raw.as_ref());
    let (client_stuck, raw_stuck) = (probe.client_stuck, probe.raw_stuck);
    let mut table = core::mem::take(&mut probe.table);
    match raw {
        Some(raw) if raw_stuck => {
            raw.leak();
            table.add(
                "raw WskReleaseProviderNPI+WskDeregister",
                Api::Raw,
                Completion::NotRun,
                Some("a socket's close was given up: WskDeregister would wait for it"),
                "registration leaked",
            );
        }
        Some(raw) => {
            drop(raw);
            table.add(
                "raw WskReleaseProviderNPI+WskDeregister",
                Api::Raw,
                Completion::Completed(STATUS_SUCCESS),
                None,
                "",
            );
        }
        None => {}
    }
    if client_stuck {
        // The teardown would wait for a request the provider never completes.
        core::mem::forget(client);
        table.add(
            "WskReleaseProviderNPI+WskDeregister",
            Api::Safe,
            Completion::NotRun,
            Some("a client-level request or a close was given up: the teardown would wait for it"),
            "client leaked",
        );
    } else {
        drop(client);
        table.add(
            "WskReleaseProviderNPI+WskDeregister",
            Api::Safe,
            Completion::Completed(STATUS_SUCCESS),
            None,
            "",
        );
    }
    table
}

/// The driver's entry point (exported as `DriverEntry` in the image). PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager (or the host runner) with a valid driver object and registry
/// path.
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    let config = match read_config(registry_path) {
        Ok(config) => config,
        Err(error) => {
            kprint!("wsk_probe: not started: {error}\n");
            return error.status();
        }
    };
    // SAFETY: the driver object `DriverEntry` was given.
    let Some(driver_object) = (unsafe { wsk::DriverObject::from_raw(driver) }) else {
        return Error::INVALID_PARAMETER.status();
    };
    kprint!(
        "wsk_probe: probing, {} ms per request\n",
        config.deadline_ms
    );
    let table = run(driver_object, config);
    table.print();
    // SAFETY: the driver object is valid for the driver's lifetime.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

/// Nothing is left running: the probe ended in `DriverEntry`. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    kprint!("wsk_probe: unloaded\n");
}

export_driver_entry!(driver_entry);
