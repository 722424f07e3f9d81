//! `cargo xtask run NAME [Name=Value]... [--for SECONDS]`: runs an example driver on
//! wsk-host until Ctrl-C, then unloads it and prints the verifier's report; and
//! `cargo xtask demo`: the project's main job — builds every example driver for x64 and
//! ARM64, checks the images, and runs the echo server on the host with a client talking to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::driver_build::{Arch, BuildOptions, build};
use crate::examples::select;
use crate::{Result, run, workspace_root};

/// The runner binary's arguments go through `cargo run`.
fn runner(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root())
        .args([
            "run",
            "--quiet",
            "-p",
            "wsk-host-runner",
            "--bin",
            "wsk-run",
            "--",
        ])
        .args(args);
    cmd
}

/// `cargo xtask run`. On Unix the xtask process becomes the runner (it executes `cargo run`,
/// which executes the runner in its turn): a signal sent to `cargo xtask run` — SIGINT,
/// SIGTERM from `timeout` — reaches the runner itself, which unloads the driver and reports;
/// nothing is orphaned. Elsewhere the runner is a child (Ctrl-C reaches the whole console).
pub fn command(args: &[String]) -> Result<()> {
    if args.is_empty() {
        return Err("run: name an example driver (cargo xtask run echo-server)".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let mut cmd = runner(args);
        let error = cmd.exec();
        Err(format!("cannot run {cmd:?}: {error}").into())
    }
    #[cfg(not(unix))]
    run(&mut runner(args))
}

/// `cargo xtask demo`.
pub fn demo(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        return Err(format!("demo: unexpected argument `{arg}`").into());
    }
    let started = Instant::now();
    let examples = select(&[], true)?;
    for arch in Arch::ALL {
        let options = BuildOptions {
            release: true,
            arch,
        };
        for example in &examples {
            let built = build(example, &options)?;
            eprintln!(
                "demo: built {} ({} bytes)",
                built.sys.display(),
                std::fs::metadata(&built.sys)?.len()
            );
        }
    }
    eprintln!(
        "demo: {} drivers built for x64 and ARM64 in {:.1?}",
        examples.len(),
        started.elapsed()
    );
    crate::pe_check::command(&[
        "--all".into(),
        "--release".into(),
        "--target".into(),
        "x86_64".into(),
        "--target".into(),
        "aarch64".into(),
    ])?;

    eprintln!("\ndemo: running wsk_echo_server on wsk-host (user mode, real loopback sockets)");
    let mut child = runner(&[
        "echo-server".into(),
        "Listen=127.0.0.1:0".into(),
        "--for".into(),
        "30".into(),
    ])
    .stderr(Stdio::piped())
    .spawn()?;
    let mut log = BufReader::new(child.stderr.take().ok_or("no stderr")?);
    let address: SocketAddr = loop {
        let mut line = String::new();
        if log.read_line(&mut line)? == 0 {
            child.wait()?;
            return Err("the runner ended before the server listened".into());
        }
        eprint!("  {line}");
        if let Some(rest) = line.trim().split("listening on ").nth(1) {
            break rest.parse()?;
        }
    };
    let message = b"Hello, kernel: this came back through a Rust WSK driver.\n";
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(message)?;
    stream.shutdown(Shutdown::Write)?;
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed)?;
    eprintln!(
        "demo: sent {} bytes to {address}, got back: {}",
        message.len(),
        String::from_utf8_lossy(&echoed).trim_end()
    );
    if echoed != message {
        let _ = child.kill();
        return Err("the echo differs from the message".into());
    }
    // Ctrl-C for the runner: it unloads the driver and prints the verifier's report.
    if cfg!(unix) {
        run(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
    }
    for line in log.lines() {
        eprintln!("  {}", line?);
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the runner reported a problem: {status}").into());
    }
    eprintln!("demo: done in {:.1?}", started.elapsed());
    Ok(())
}
