//! Runs the example drivers in user mode, on `wsk-host`: their `DriverEntry` with the
//! parameters given as registry values, real sockets on loopback, their `DriverUnload`, and
//! the verifier's report. The `wsk-run` binary (`cargo xtask run NAME`) and the drivers'
//! tests use it.

pub mod peers;
pub mod probe_table;

use std::time::{Duration, Instant};

use wsk_host::{LoadedDriver, RegValue};
use wsk_sys::{NTSTATUS, PDRIVER_INITIALIZE};

/// An example driver linked into the runner.
#[derive(Clone, Copy, Debug)]
pub struct Driver {
    /// The driver's (service and image) name, `wsk_tcp_send`.
    pub name: &'static str,
    /// Its directory under `wsk-examples/`, `tcp-send`.
    pub short_name: &'static str,
    /// Its entry function.
    pub entry: PDRIVER_INITIALIZE,
}

/// Every example driver.
pub const DRIVERS: &[Driver] = &[
    Driver {
        name: "wsk_echo_server",
        short_name: "echo-server",
        entry: Some(wsk_echo_server::driver_entry),
    },
    Driver {
        name: "wsk_http_get",
        short_name: "http-get",
        entry: Some(wsk_http_get::driver_entry),
    },
    Driver {
        name: "wsk_https_get",
        short_name: "https-get",
        entry: Some(wsk_https_get::driver_entry),
    },
    Driver {
        name: "wsk_tcp_send",
        short_name: "tcp-send",
        entry: Some(wsk_tcp_send::driver_entry),
    },
    Driver {
        name: "wsk_tcp_send_raw",
        short_name: "tcp-send-raw",
        entry: Some(wsk_tcp_send_raw::driver_entry),
    },
    Driver {
        name: "wsk_probe",
        short_name: "wsk-probe",
        entry: Some(wsk_probe::driver_entry),
    },
    Driver {
        name: "wsk_udp_echo",
        short_name: "udp-echo",
        entry: Some(wsk_udp_echo::driver_entry),
    },
];

/// The driver called `name` (its name or its directory's).
#[must_use]
pub fn find(name: &str) -> Option<&'static Driver> {
    DRIVERS
        .iter()
        .find(|d| d.name == name || d.short_name == name || d.name.replace('_', "-") == name)
}

/// Parses a `Name=Value` parameter: a value of decimal digits is a `REG_DWORD`, anything else
/// a `REG_SZ`; `Name=sz:Value` forces a string.
pub fn parse_parameter(text: &str) -> Result<(String, RegValue), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("parameter `{text}` is not Name=Value"))?;
    if name.is_empty() {
        return Err(format!("parameter `{text}` has no name"));
    }
    let value = if let Some(text) = value.strip_prefix("sz:") {
        RegValue::String(text.to_string())
    } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        RegValue::Dword(
            value
                .parse()
                .map_err(|_| format!("`{value}` does not fit a REG_DWORD"))?,
        )
    } else {
        RegValue::String(value.to_string())
    };
    Ok((name.to_string(), value))
}

/// Loads `driver` with `parameters`: runs its `DriverEntry`.
pub fn load(driver: &Driver, parameters: &[(&str, RegValue)]) -> Result<LoadedDriver, NTSTATUS> {
    wsk_host::driver::load(driver.name, driver.entry, parameters)
}

/// Collects the driver's `DbgPrint` output as it comes.
#[derive(Debug, Default)]
pub struct Output {
    text: String,
}

impl Output {
    /// A collector (what was printed before is dropped).
    #[must_use]
    pub fn new() -> Output {
        wsk_host::debug_output();
        Output::default()
    }

    /// Everything collected so far.
    pub fn text(&mut self) -> &str {
        self.text.push_str(&wsk_host::debug_output());
        &self.text
    }

    /// Waits until a line containing `needle` was printed; returns that line. Panics after
    /// `timeout`, showing what was printed.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.text().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line with `{needle}` printed within {timeout:?}; printed:\n{}",
                self.text
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
