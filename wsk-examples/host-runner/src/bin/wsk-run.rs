//! `wsk-run NAME [Name=Value]... [--for SECONDS]`: loads an example driver on wsk-host with
//! the given registry parameters, runs it until Ctrl-C, SIGTERM or SIGHUP (or for the given
//! time; `--for inf` is until signalled), unloads it and prints the verifier's report. Exit
//! status 1 when the verifier found something, 2 when `DriverEntry` failed or the
//! command line is wrong. The driver's `DbgPrint` lines are streamed to standard error, none kept.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use wsk_host::{RegValue, Session};
use wsk_host_runner::{DRIVERS, find, parse_parameter};

/// `eprintln!` that ignores a closed standard error (a pipe whose reader went away) instead
/// of panicking: the runner still unloads the driver and sets its exit status.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn usage() -> String {
    let names: Vec<&str> = DRIVERS.iter().map(|d| d.short_name).collect();
    format!(
        "usage: wsk-run NAME [Name=Value]... [--for SECONDS]\ndrivers: {}",
        names.join(", ")
    )
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        say!("{}", usage());
        return ExitCode::from(2);
    };
    let Some(driver) = find(&name) else {
        say!("wsk-run: no driver `{name}`\n{}", usage());
        return ExitCode::from(2);
    };
    let mut parameters: Vec<(String, RegValue)> = Vec::new();
    let mut duration = None;
    while let Some(arg) = args.next() {
        if arg == "--for" {
            match args.next().and_then(|s| s.parse::<f64>().ok()) {
                // Too long to represent (`inf` among them): until signalled.
                Some(seconds) if seconds >= 0.0 => {
                    duration = Duration::try_from_secs_f64(seconds).ok()
                }
                _ => {
                    say!("wsk-run: --for needs a number of seconds (or inf)");
                    return ExitCode::from(2);
                }
            }
            continue;
        }
        match parse_parameter(&arg) {
            Ok(parameter) => parameters.push(parameter),
            Err(e) => {
                say!("wsk-run: {e}\n{}", usage());
                return ExitCode::from(2);
            }
        }
    }

    let (stop, stopped) = mpsc::channel();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop.send(());
    }) {
        say!("wsk-run: cannot handle Ctrl-C: {e}");
        return ExitCode::from(2);
    }

    // Each line is on standard error as it comes: keep none of it in memory.
    wsk_host::set_debug_output_limit(0);
    let session = Session::start();
    let borrowed: Vec<(&str, RegValue)> = parameters
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    say!("wsk-run: loading {} (DriverEntry)", driver.name);
    let loaded = wsk_host_runner::load(driver, &borrowed);
    match &loaded {
        Ok(_) => match duration {
            Some(d) => {
                say!("wsk-run: running for {d:?} (Ctrl-C stops it sooner)");
                let _ = stopped.recv_timeout(d);
            }
            None => {
                say!("wsk-run: running; Ctrl-C (or SIGTERM) unloads it");
                let _ = stopped.recv();
            }
        },
        Err(status) => say!("wsk-run: DriverEntry failed: {:#010X}", *status as u32),
    }
    let entry_failed = loaded.is_err();
    if let Ok(loaded) = loaded {
        say!("wsk-run: unloading {} (DriverUnload)", driver.name);
        if !loaded.unload() {
            say!("wsk-run: the driver has no DriverUnload: it cannot be unloaded");
        }
    }
    let (report, findings) = session.conclude();
    say!(
        "wsk-run: verifier report: IRPs {}/{} allocated/freed, MDLs {}/{}, sockets {}/{} \
         created/closed, {} completions inline, {} pending, {} cancelled, {} events, \
         {} bytes sent, {} received",
        report.irps_allocated,
        report.irps_freed,
        report.mdls_allocated,
        report.mdls_freed,
        report.sockets_created,
        report.sockets_closed,
        report.completed_inline,
        report.completed_pending,
        report.cancelled,
        report.events_delivered,
        report.bytes_sent,
        report.bytes_received
    );
    if findings.is_empty() {
        say!("wsk-run: verifier: no violation, nothing leaked");
    }
    for finding in &findings {
        say!("wsk-run: verifier: {finding}");
    }
    if entry_failed {
        ExitCode::from(2)
    } else if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
