//! `cargo xtask wine NAME [Name=Value]... [--duration S]`: runs a built driver image under
//! Wine — an independent implementation of the Windows kernel for drivers (`winedevice.exe`
//! hosting `ntoskrnl.exe`) and of WSK (`netio.sys`, over Winsock) — as a kernel service in a
//! private prefix under `target/wine/`, with its parameters as registry values, streaming its
//! debug output; then stops it and says how the stop went.
//!
//! [`run_image`] is the one call that runs an image and captures its output and ending: the
//! command, the test suite's Wine step ([`crate::wine_suite`]) and the probe's conformance
//! check ([`crate::wine_probe`]) use it.
//!
//! Every Wine command runs under a deadline; a command that overruns it, or a stop that does
//! not stop, ends the prefix's Wine session (`wineserver -k`). Each run has a session of its
//! own: a persistent `wineserver -p` is started, the first Wine command starts the service
//! manager with `WINEDEBUG=warn+debugstr` and its standard error going to the run's log —
//! the driver host (`winedevice.exe`) inherits both, so `DbgPrint` output lands in the log —
//! and the session is ended after the stop.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::driver_build::{Arch, BuildOptions, build};
use crate::examples::select;
use crate::{Result, workspace_root};

/// How long one Wine command may take (creating or starting a service, a registry write).
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);
/// How long creating the prefix may take (`wineboot -i`: about 10 s here).
const PREFIX_DEADLINE: Duration = Duration::from_secs(120);
/// How long `sc stop` may take before the stop counts as hung.
const STOP_DEADLINE: Duration = Duration::from_secs(12);

/// The marker Wine puts before a driver's `DbgPrint` text with `WINEDEBUG=warn+debugstr`.
const DEBUG_PRINT_MARKER: &str = "vDbgPrintExWithPrefix ";

/// The Wine installation and the project's prefix.
#[derive(Clone, Debug)]
pub struct Wine {
    /// The 64-bit loader (`wine64`, or `wine` where it is the 64-bit one).
    loader: PathBuf,
    /// `wineserver`.
    server: PathBuf,
    /// The prefix (`WINEPREFIX`): `target/wine/prefix`.
    prefix: PathBuf,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The service did not reach RUNNING (`DriverEntry` failed, or the driver host died).
    NotStarted,
    /// `sc stop` stopped it: `DriverUnload` returned.
    Stopped,
    /// `sc stop` did not stop it within its deadline: the Wine session was killed
    /// (`wineserver -k`).
    StopHung,
    /// The driver host died while the service ran (a crash: Wine printed why in the output).
    Died,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ending::NotStarted => "did not start",
            Ending::Stopped => "stopped",
            Ending::StopHung => "stop hung: wineserver killed",
            Ending::Died => "the driver host died while running",
        })
    }
}

/// What a run of an image gave.
#[derive(Clone, Debug)]
pub struct Run {
    /// The service reached RUNNING.
    pub running: bool,
    /// How it ended.
    pub ending: Ending,
    /// The driver's `DbgPrint` lines, in order.
    pub output: Vec<String>,
    /// Wine's own lines of the session (errors, stubs called, crashes), in order.
    pub wine_lines: Vec<String>,
    /// What `sc start` printed.
    pub start_report: String,
    /// From the first Wine command to RUNNING (or to the failed start).
    pub start_time: Duration,
    /// The whole run, session start to session end.
    pub total_time: Duration,
}

impl Run {
    /// The driver's output as text, one line each, for a failure report.
    pub fn output_text(&self) -> String {
        let mut text = String::new();
        for line in &self.output {
            text.push_str("    | ");
            text.push_str(line);
            text.push('\n');
        }
        if !self.wine_lines.is_empty() {
            text.push_str("    Wine said:\n");
            for line in &self.wine_lines {
                text.push_str("    ! ");
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Whether a driver line contains `text`.
    pub fn printed(&self, text: &str) -> bool {
        self.output.iter().any(|line| line.contains(text))
    }
}

/// A registry parameter of the service: a value of decimal digits is a `REG_DWORD`, anything
/// else a `REG_SZ` (as `cargo xtask run` reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// The value's name.
    pub name: String,
    /// Its text.
    pub value: String,
}

impl Parameter {
    /// Parses `Name=Value`.
    pub fn parse(text: &str) -> Result<Parameter> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("parameter `{text}`: expected Name=Value"))?;
        if name.is_empty() {
            return Err(format!("parameter `{text}`: the name is empty").into());
        }
        Ok(Parameter {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    /// `Name=Value` from parts.
    pub fn new(name: &str, value: impl ToString) -> Parameter {
        Parameter {
            name: name.to_string(),
            value: value.to_string(),
        }
    }

    fn registry_type(&self) -> Result<&'static str> {
        if !self.value.is_empty() && self.value.bytes().all(|b| b.is_ascii_digit()) {
            self.value
                .parse::<u32>()
                .map_err(|_| format!("`{}` does not fit a REG_DWORD", self.value))?;
            Ok("REG_DWORD")
        } else {
            Ok("REG_SZ")
        }
    }
}

/// The driver's debug output while it runs: filled by a thread that follows the log.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    wine_lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    /// The driver lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    /// Waits (until `deadline`) for a driver line containing `text`; returns it.
    pub fn wait_for(&self, text: &str, deadline: Duration) -> Option<String> {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(text)) {
                return Some(line);
            }
            if started.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a run does while the service runs: returns when the run may stop.
pub enum Hold<'a> {
    /// Runs for this long.
    For(Duration),
    /// Until Ctrl-C (SIGINT) or this long.
    UntilInterrupted(Duration),
    /// Calls this (checks against the running driver); its error is kept and the run stops.
    While(&'a mut dyn FnMut(&Log) -> Result<()>),
}

impl Wine {
    /// Finds Wine and the project's prefix; a clear error when Wine is not installed.
    pub fn find() -> Result<Wine> {
        let loader = ["wine64", "wine"]
            .iter()
            .find_map(|name| program(name))
            .or_else(|| file("/usr/lib/wine/wine64"))
            .ok_or(
                "Wine is not installed: install Debian's `wine64` package \
                 (apt-get install --no-install-recommends wine64; `cargo xtask test` installs it \
                 when run as root)",
            )?;
        let server = program("wineserver")
            .or_else(|| file("/usr/lib/wine/wineserver"))
            .ok_or("Wine's `wineserver` was not found: reinstall Debian's `wine64` package")?;
        Ok(Wine {
            loader,
            server,
            prefix: workspace_root().join("target").join("wine").join("prefix"),
        })
    }

    /// Whether Wine is installed.
    pub fn installed() -> bool {
        Wine::find().is_ok()
    }

    /// What `wine64 --version` says (`wine-8.0 (Debian 8.0~repack-4)`), if it answers.
    pub fn version(&self) -> Option<String> {
        let output = bounded(self.base(&self.loader).arg("--version"), COMMAND_DEADLINE).ok()?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        (!version.is_empty()).then_some(version)
    }

    /// The prefix directory.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    fn base(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            // No display: nothing here draws, and Wine does not try to.
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// `wine64 ARGS` in the prefix.
    fn wine(&self, args: &[&str]) -> Command {
        let mut cmd = self.base(&self.loader);
        cmd.args(args);
        cmd
    }

    /// Ends the prefix's Wine session (`wineserver -k`, then waits for it to go).
    pub fn kill_session(&self) {
        let _ = quiet(self.base(&self.server).arg("-k"), Duration::from_secs(15));
        let _ = quiet(self.base(&self.server).arg("-w"), Duration::from_secs(15));
    }

    /// Creates the prefix when it is missing; returns how long that took (`None`: it
    /// existed).
    pub fn ensure_prefix(&self) -> Result<Option<Duration>> {
        if self.prefix.join("system.reg").is_file() {
            return Ok(None);
        }
        let started = Instant::now();
        std::fs::create_dir_all(&self.prefix)?;
        eprintln!("xtask: creating the Wine prefix {}", self.prefix.display());
        let mut boot = self.wine(&["wineboot", "-i"]);
        // A 64-bit prefix; no Mono or Gecko (nothing here needs them).
        boot.env("WINEARCH", "win64")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        let booted = quiet(&mut boot, PREFIX_DEADLINE);
        // The prefix is written when the session ends.
        let _ = quiet(self.base(&self.server).arg("-w"), PREFIX_DEADLINE);
        match booted {
            Ok(status) if status.success() && self.prefix.join("system.reg").is_file() => {
                Ok(Some(started.elapsed()))
            }
            Ok(status) => {
                self.kill_session();
                Err(format!(
                    "creating the Wine prefix {} failed: {status}",
                    self.prefix.display()
                )
                .into())
            }
            Err(error) => {
                self.kill_session();
                Err(format!("creating the Wine prefix: {error}").into())
            }
        }
    }

    /// Runs a Wine command in the session under [`COMMAND_DEADLINE`]; its output.
    fn command(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.wine(args);
        bounded(&mut cmd, COMMAND_DEADLINE)
    }
}

/// `name` on `PATH`, as a path.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn file(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    path.is_file().then_some(path)
}

/// Runs `cmd` with no output (for commands that leave daemons behind, which would hold a
/// pipe) to its end or `deadline`: past the deadline it is killed and an error says so.
fn quiet(cmd: &mut Command, deadline: Duration) -> Result<std::process::ExitStatus> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    wait_child(&mut child, deadline)
}

/// Runs `cmd` to its end or `deadline`, whichever comes first: past the deadline it is
/// killed and an error says so. Its standard output and error are captured.
pub fn bounded(cmd: &mut Command, deadline: Duration) -> Result<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    // The pipes are read by threads: a chatty command cannot block on a full pipe.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish within {deadline:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A Wine command can leave a daemon holding its pipes (the wineserver, the service
    // manager): the pipe's end is waited for a moment only, then what was read is taken.
    let collect =
        |reader: Option<PipeReader>| reader.map_or_else(Vec::new, |r| r.take(PIPE_END_WAIT));
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// How long the end of an exited command's pipe is waited for.
const PIPE_END_WAIT: Duration = Duration::from_secs(2);

/// What a pipe-reading thread has read so far, and whether it reached the pipe's end.
struct PipeReader {
    data: Arc<Mutex<Vec<u8>>>,
    ended: Arc<AtomicBool>,
}

impl PipeReader {
    /// What was read, once the pipe has ended or `wait` has passed.
    fn take(&self, wait: Duration) -> Vec<u8> {
        let started = Instant::now();
        while !self.ended.load(Ordering::Acquire) && started.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::take(&mut *self.data.lock().expect("pipe lock"))
    }
}

fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> PipeReader {
    let data = Arc::new(Mutex::new(Vec::new()));
    let ended = Arc::new(AtomicBool::new(false));
    let (sink, end) = (Arc::clone(&data), Arc::clone(&ended));
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("pipe lock")
                .extend_from_slice(&chunk[..n]);
        }
        end.store(true, Ordering::Release);
    });
    PipeReader { data, ended }
}

/// Follows the session's log file, sorting its lines into the driver's and Wine's; echoes
/// them when `echo`.
fn follow(
    path: PathBuf,
    log: Log,
    stop: Arc<AtomicBool>,
    echo: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut file) = File::open(&path) else {
            return;
        };
        let _ = file.seek(SeekFrom::Start(0));
        let mut reader = BufReader::new(file);
        let mut pending = String::new();
        let mut idle_after_stop = 0;
        loop {
            let mut chunk = String::new();
            match reader.read_line(&mut chunk) {
                Ok(0) | Err(_) => {
                    if stop.load(Ordering::Acquire) {
                        idle_after_stop += 1;
                        if idle_after_stop > 5 {
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(40));
                    continue;
                }
                Ok(_) => {}
            }
            pending.push_str(&chunk);
            if !pending.ends_with('\n') {
                continue;
            }
            let line = std::mem::take(&mut pending);
            let line = line.trim_end();
            if let Some(at) = line.find(DEBUG_PRINT_MARKER) {
                // `vDbgPrintExWithPrefix COMPONENT:LEVEL: TEXT`.
                let rest = &line[at + DEBUG_PRINT_MARKER.len()..];
                let text = rest.split_once(": ").map_or(rest, |(_, text)| text);
                if echo {
                    eprintln!("  {text}");
                }
                log.lines.lock().expect("log lock").push(text.to_string());
            } else if is_worth_keeping(line) {
                if echo {
                    eprintln!("  [wine] {line}");
                }
                log.wine_lines
                    .lock()
                    .expect("log lock")
                    .push(line.to_string());
            }
        }
    })
}

/// Wine's lines that say something about the driver: errors, crashes, stubs it called (not
/// the noise of a display-less session).
fn is_worth_keeping(line: &str) -> bool {
    const NOISE: &[&str] = &[
        "nodrv_CreateWindow",
        "systray",
        "hid:handle_IRP_MN_QUERY_ID",
        "start_rpcss",
        "failed to create service 1073",
        "rundll32.exe",
        "explorer",
    ];
    if NOISE.iter().any(|noise| line.contains(noise)) {
        return false;
    }
    line.starts_with("wine:")
        || line.contains(":err:")
        || line.contains(":fixme:ntoskrnl")
        || line.contains(":fixme:netio")
        || line.contains(":fixme:winsock")
}

/// Whether `sc query`'s report says RUNNING.
fn state_running(report: &str) -> bool {
    report
        .lines()
        .any(|l| l.contains("STATE") && l.contains("RUNNING"))
}

/// Runs the image `sys` under Wine as the kernel service `service` with `parameters`:
/// starts it, holds it as `hold` says, stops it, and returns its output and how it ended.
/// `echo` streams the driver's lines as they come. The Wine session is ended on return.
pub fn run_image(
    wine: &Wine,
    sys: &Path,
    service: &str,
    parameters: &[Parameter],
    hold: Hold<'_>,
    echo: bool,
) -> Result<(Run, Result<()>)> {
    wine.ensure_prefix()?;
    for parameter in parameters {
        parameter.registry_type()?;
    }
    let drivers = wine
        .prefix
        .join("drive_c")
        .join("windows")
        .join("system32")
        .join("drivers");
    std::fs::create_dir_all(&drivers)?;
    std::fs::copy(sys, drivers.join(format!("{service}.sys")))
        .map_err(|e| format!("cannot copy {} into the prefix: {e}", sys.display()))?;
    let log_path = wine
        .prefix
        .parent()
        .unwrap_or(&wine.prefix)
        .join(format!("{service}.log"));
    let log_file = File::create(&log_path)?;

    // A session of the run's own.
    wine.kill_session();
    let started = Instant::now();
    // It goes to the background at once; its output goes nowhere (it would hold a pipe).
    quiet(wine.base(&wine.server).arg("-p"), COMMAND_DEADLINE)?;

    // The first command starts the service manager: its debug channels and its standard
    // error are the driver host's.
    let bin_path = format!(r"C:\windows\system32\drivers\{service}.sys");
    let mut create = wine.wine(&[
        "sc", "create", service, "type=", "kernel", "start=", "demand", "binPath=", &bin_path,
    ]);
    create
        .env(
            "WINEDEBUG",
            "warn+debugstr,fixme+ntoskrnl,fixme+netio,err+all",
        )
        .stdout(Stdio::null())
        .stderr(log_file);
    let log = Log::default();
    let stop_following = Arc::new(AtomicBool::new(false));
    let follower = follow(
        log_path.clone(),
        log.clone(),
        Arc::clone(&stop_following),
        echo,
    );
    let outcome = (|| -> Result<(Run, Result<()>)> {
        let mut child = create.spawn()?;
        // Its status is not looked at: "exists" (1073), left by a run whose stop hung, is as
        // good as created (the image path is the same).
        wait_child(&mut child, COMMAND_DEADLINE)?;
        let key = format!(r"HKLM\System\CurrentControlSet\Services\{service}\Parameters");
        let _ = wine.command(&["reg", "delete", &key, "/f"]);
        for parameter in parameters {
            let kind = parameter.registry_type()?;
            let added = wine.command(&[
                "reg",
                "add",
                &key,
                "/v",
                &parameter.name,
                "/t",
                kind,
                "/d",
                &parameter.value,
                "/f",
            ])?;
            if !added.status.success() {
                return Err(format!("`reg add` of {} failed", parameter.name).into());
            }
        }
        let start = wine.command(&["sc", "start", service])?;
        let start_report = String::from_utf8_lossy(&start.stdout).into_owned()
            + &String::from_utf8_lossy(&start.stderr);
        let query = wine.command(&["sc", "query", service])?;
        let running = state_running(&String::from_utf8_lossy(&query.stdout));
        let start_time = started.elapsed();
        let mut held = Ok(());
        if running {
            held = match hold {
                Hold::For(duration) => {
                    std::thread::sleep(duration);
                    Ok(())
                }
                Hold::UntilInterrupted(duration) => {
                    wait_interrupted(duration);
                    Ok(())
                }
                Hold::While(check) => check(&log),
            };
        }
        let ending = if !running {
            Ending::NotStarted
        } else {
            let still = wine
                .command(&["sc", "query", service])
                .map(|q| state_running(&String::from_utf8_lossy(&q.stdout)))
                .unwrap_or(false);
            if !still {
                Ending::Died
            } else {
                let mut stop = wine.wine(&["sc", "stop", service]);
                match bounded(&mut stop, STOP_DEADLINE) {
                    Ok(output)
                        if output.status.success()
                            && String::from_utf8_lossy(&output.stdout).contains("STOPPED") =>
                    {
                        Ending::Stopped
                    }
                    _ => Ending::StopHung,
                }
            }
        };
        if ending != Ending::StopHung {
            let _ = wine.command(&["sc", "delete", service]);
        }
        Ok((
            Run {
                running,
                ending,
                output: Vec::new(),
                wine_lines: Vec::new(),
                start_report,
                start_time,
                total_time: Duration::ZERO,
            },
            held,
        ))
    })();
    wine.kill_session();
    stop_following.store(true, Ordering::Release);
    let _ = follower.join();
    let (mut run, held) = outcome?;
    run.output = log.lines();
    run.wine_lines = log.wine_lines.lock().expect("log lock").clone();
    run.total_time = started.elapsed();
    Ok((run, held))
}

/// Waits for `child` until `deadline` (killing it then).
fn wait_child(
    child: &mut std::process::Child,
    deadline: Duration,
) -> Result<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("a Wine command did not finish within {deadline:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Returns after `duration`, or at the first Ctrl-C (a second one ends the process as
/// usual).
fn wait_interrupted(duration: Duration) {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    let handled = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::AcqRel) {
            std::process::exit(130);
        }
    });
    if let Err(error) = handled {
        eprintln!("xtask: Ctrl-C cannot be caught ({error}): the driver runs for {duration:?}");
    }
    let started = Instant::now();
    while started.elapsed() < duration && !interrupted.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if interrupted.load(Ordering::Acquire) {
        eprintln!("xtask: interrupted: stopping the driver");
    }
}

/// The release x64 image of the example `name`, built (`cargo xtask build-driver NAME
/// --release`; cargo rebuilds only what changed).
pub fn release_image(name: &str) -> Result<(PathBuf, String)> {
    let examples = select(&[name.to_string()], false)?;
    let example = &examples[0];
    let built = build(
        example,
        &BuildOptions {
            release: true,
            arch: Arch::X86_64,
        },
    )?;
    Ok((built.sys, example.driver_name()))
}

/// `cargo xtask wine NAME [Name=Value]... [--duration S]`, `cargo xtask wine --suite` (the
/// test suite's Wine step alone) and `cargo xtask wine --probe [--update]` (the probe's table:
/// [`crate::wine_probe`]).
pub fn command(args: &[String]) -> Result<()> {
    if args.first().is_some_and(|a| a == "--suite") {
        if let Some(extra) = args.get(1) {
            return Err(format!("wine --suite: unexpected argument `{extra}`").into());
        }
        return crate::wine_suite::step();
    }
    if args.first().is_some_and(|a| a == "--probe") {
        return crate::wine_probe::command(&args[1..]);
    }
    let mut name = None;
    let mut parameters = Vec::new();
    let mut duration = Duration::from_secs(24 * 3600);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                let seconds: f64 = args
                    .next()
                    .ok_or("wine: --duration needs seconds")?
                    .parse()
                    .map_err(|_| "wine: --duration needs seconds")?;
                if !(seconds.is_finite() && seconds >= 0.0) {
                    return Err("wine: --duration needs seconds".into());
                }
                duration = Duration::from_secs_f64(seconds);
            }
            text if text.contains('=') => parameters.push(Parameter::parse(text)?),
            text if name.is_none() && !text.starts_with('-') => name = Some(text.to_string()),
            other => return Err(format!("wine: unexpected argument `{other}`").into()),
        }
    }
    let name = name.ok_or("wine: name an example driver (cargo xtask wine echo-server)")?;
    let wine = Wine::find()?;
    let (sys, service) = release_image(&name)?;
    if let Some(took) = wine.ensure_prefix()? {
        eprintln!("xtask: Wine prefix created in {took:.1?}");
    }
    eprintln!(
        "xtask: running {} under Wine (prefix {}) as the kernel service {service} (Ctrl-C stops it)",
        sys.display(),
        wine.prefix().display()
    );
    let (run, _) = run_image(
        &wine,
        &sys,
        &service,
        &parameters,
        Hold::UntilInterrupted(duration),
        true,
    )?;
    if !run.running {
        if !run.start_report.trim().is_empty() {
            eprintln!("{}", run.start_report.trim_end());
        }
        return Err(format!("{service} did not reach RUNNING under Wine").into());
    }
    eprintln!(
        "xtask: {service}: running after {:.1?}; {} ({:.1?} in all)",
        run.start_time, run.ending, run.total_time
    );
    match run.ending {
        Ending::Stopped => Ok(()),
        other => Err(format!("{service}: {other}").into()),
    }
}
