//! The `wsk-run` binary: its exit status reflects `DriverEntry`'s, `--for inf` runs until a
//! signal, and SIGTERM (what `timeout` sends) unloads the driver and reports like Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const RUNNER: &str = env!("CARGO_BIN_EXE_wsk-run");
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits for `child` up to [`DEADLINE`]; kills it and panics after.
fn wait(mut child: std::process::Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("wsk-run did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failed_driver_entry_is_the_exit_status() {
    let output = Command::new(RUNNER)
        .args(["echo-server", "Listen=not-an-address", "--for", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut child = output;
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = wait(child);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DriverEntry failed"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn for_inf_runs_until_sigterm_which_unloads_and_reports() {
    let mut child = Command::new(RUNNER)
        .args(["udp-echo", "Listen=127.0.0.1:0", "--for", "inf"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (line, lines) = channel::<String>();
    std::thread::spawn(move || {
        for text in BufReader::new(stderr).lines() {
            let Ok(text) = text else { return };
            if line.send(text).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let started = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("listening on")) {
        let left = DEADLINE.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(text) => seen.push(text),
            Err(_) => {
                let _ = child.kill();
                panic!("the driver never listened:\n{}", seen.join("\n"));
            }
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait(child);
    seen.extend(lines.try_iter());
    while let Ok(text) = lines.recv_timeout(Duration::from_secs(5)) {
        seen.push(text);
    }
    let text = seen.join("\n");
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("wsk_udp_echo: unloaded"), "{text}");
    assert!(text.contains("verifier: no violation"), "{text}");
}

/// A runner whose standard error goes away (`wsk-run … 2>&1 | head -1`) still runs its
/// course: the driver's debug output and the report are dropped, not a reason to abort
/// without unloading.
#[test]
fn a_closed_standard_error_does_not_abort_the_runner() {
    let mut child = Command::new(RUNNER)
        .args(["echo-server", "Listen=127.0.0.1:0", "--for", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped: every later write to standard error fails with EPIPE.
    let status = wait(child);
    assert_eq!(status.code(), Some(0), "first line: {first}");
}
