//! `cargo xtask bench`: the instruction-count benchmark suite, the project's performance
//! gate (issue 13).
//!
//! Instructions are counted by valgrind's callgrind, which is deterministic where a timer is
//! not: the `wsk-bench` binary (the `wsk-bench` crate) runs one fixture per process — a
//! `wsk-host` session, loopback peers, `N` operations of one kind done one way in one
//! completion mode — and this command runs it under
//! `valgrind --tool=callgrind --separate-threads=yes` twice, with `N` and `2N` operations.
//! The counts of every thread are added up (the provider completes pending requests on its
//! own thread), and `(count(2N) - count(N)) / N` is the cost of one operation with all the
//! set-up, warm-up and teardown removed. The same difference per function, from
//! `callgrind_annotate`, is the profile of one operation.
//!
//! Why a script of our own rather than a harness crate: the maintained callgrind harness on
//! crates.io (`gungraun`, formerly `iai-callgrind`) needs its runner binary installed with
//! the exact version of the library (a `cargo install` of its own on every fresh CI
//! machine), runs one benchmark function per valgrind process without a way to subtract
//! two run lengths, and would report per-benchmark totals that still hold the session's
//! set-up; client-request crates (`crabgrind`) need bindgen, pkg-config and valgrind's
//! headers at build time, and callgrind's instrumentation toggle is per thread, which would
//! miss the provider thread's share. Differencing two whole runs needs neither: the binary is
//! plain Rust, and only this command needs valgrind.
//!
//! Allocations are counted without valgrind: `wsk-bench allocs` runs natively and prints
//! its own table (kernel: pool blocks + IRPs + MDLs from the session's counters; heap: a
//! counting global allocator, every thread).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use crate::{Result, on_path, run, workspace_root};

/// The operations measured, as `wsk-bench` names them.
const OPERATIONS: &[&str] = &[
    "send",
    "receive",
    "send_to",
    "receive_from",
    "accept",
    "connect",
];
/// The completion modes.
const MODES: &[&str] = &["inline", "pending"];
/// Accept and connect run `N / ACCEPT_DIVISOR` operations: each leaves a port in TIME_WAIT
/// for a minute, and the suite must not run out of ephemeral ports.
const ACCEPT_DIVISOR: u64 = 8;

/// `N` for `operation`.
fn length(operation: &str, n: u64) -> u64 {
    if matches!(operation, "accept" | "connect") {
        n.div_ceil(ACCEPT_DIVISOR)
    } else {
        n
    }
}

/// The target ratio wsk / raw (printed, not asserted yet: issue 13).
const TARGET_RATIO: f64 = 1.05;

/// The cargo profile the benchmark binary is built with: release with line tables, so that
/// callgrind_annotate names files and functions.
const PROFILE: &str = "bench-count";

/// `cargo xtask bench [--quick] [--ops N] [--profile OP[,OP...]] [--top N]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut options = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("bench: {name} takes a value"))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--ops" => options.ops = Some(value("--ops")?.parse()?),
            "--profile" => {
                options.profile = value("--profile")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "--top" => options.top = value("--top")?.parse()?,
            other => return Err(format!("bench: unknown option `{other}`").into()),
        }
    }
    run_suite(&options)
}

/// What a run measures.
#[derive(Debug)]
pub struct Options {
    /// The reduced run of the test suite: fewer operations, allocation check on.
    pub quick: bool,
    /// `N`, the shorter run length (default 2000; 200 with `--quick`).
    pub ops: Option<u64>,
    /// The operations whose wsk profile per operation is printed.
    pub profile: Vec<String>,
    /// Functions shown per profile.
    pub top: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            ops: None,
            profile: vec!["send".into(), "receive".into()],
            top: 25,
        }
    }
}

/// One case: an operation, a side, a mode.
#[derive(Clone, Debug)]
struct Case {
    operation: &'static str,
    side: &'static str,
    mode: &'static str,
}

impl Case {
    fn name(&self) -> String {
        format!("{}-{}-{}", self.operation, self.side, self.mode)
    }
}

/// The counts of one case: instructions per operation, and the callgrind outputs of both
/// runs (for the profile).
#[derive(Debug)]
struct Measured {
    per_op: f64,
    outputs: [Vec<PathBuf>; 2],
}

/// Runs the whole suite: build, counts, table, profiles, allocations.
pub fn run_suite(options: &Options) -> Result<()> {
    if !on_path("valgrind") {
        return Err(
            "bench: valgrind is not installed (Debian: apt-get install valgrind; \
             `cargo xtask test` installs it)"
                .into(),
        );
    }
    let started = Instant::now();
    let n = options
        .ops
        .unwrap_or(if options.quick { 200 } else { 2_000 });
    crate::test_suite::cargo(&["build", "--profile", PROFILE, "-p", "wsk-bench"])?;
    let binary = workspace_root()
        .join("target")
        .join(PROFILE)
        .join(format!("wsk-bench{}", std::env::consts::EXE_SUFFIX));
    let out_dir = workspace_root().join("target").join("wsk-bench");
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)?;
    }
    std::fs::create_dir_all(&out_dir)?;

    let mut cases = Vec::new();
    for &operation in OPERATIONS {
        for &mode in MODES {
            for side in ["raw", "wsk"] {
                cases.push(Case {
                    operation,
                    side,
                    mode,
                });
            }
        }
    }
    eprintln!(
        "xtask: bench: {} cases under callgrind, {n} and {} operations each",
        cases.len(),
        2 * n
    );
    let results = run_cases(&binary, &out_dir, &cases, n)?;
    let counted = started.elapsed();

    println!();
    println!(
        "instructions per operation (callgrind, all threads, (count(2N) - count(N)) / N, N = {n}, accept and connect N / {ACCEPT_DIVISOR}; \
         4 KiB payloads, loopback, wsk-host):"
    );
    println!(
        "{:<13} {:<8} {:>10} {:>10} {:>7} {:>8}",
        "operation", "mode", "raw", "wsk", "ratio", "wsk-raw"
    );
    let mut over = Vec::new();
    for &operation in OPERATIONS {
        for &mode in MODES {
            let raw = &results[&format!("{operation}-raw-{mode}")];
            let wsk = &results[&format!("{operation}-wsk-{mode}")];
            let ratio = wsk.per_op / raw.per_op;
            println!(
                "{:<13} {:<8} {:>10.0} {:>10.0} {:>7.3} {:>8.0}",
                operation,
                mode,
                raw.per_op,
                wsk.per_op,
                ratio,
                wsk.per_op - raw.per_op
            );
            if ratio > TARGET_RATIO {
                over.push(format!("{operation}/{mode} {ratio:.3}"));
            }
        }
    }
    println!(
        "target: wsk <= {TARGET_RATIO} x raw (not asserted yet); above it: {}",
        if over.is_empty() {
            "none".to_string()
        } else {
            over.join(", ")
        }
    );

    for operation in &options.profile {
        for &mode in MODES {
            let key = format!("{operation}-wsk-{mode}");
            let Some(wsk) = results.get(&key) else {
                return Err(format!("bench: --profile: no operation `{operation}`").into());
            };
            let raw = &results[&format!("{operation}-raw-{mode}")];
            print_profile(operation, mode, wsk, raw, length(operation, n), options.top)?;
        }
    }

    println!();
    let mut allocs = Command::new(&binary);
    allocs.arg("allocs");
    if options.quick {
        allocs.args(["--ops", "500", "--check"]);
    }
    allocs.current_dir(workspace_root());
    let allocs_started = Instant::now();
    run(&mut allocs)?;
    eprintln!(
        "xtask: bench: counts in {:.1?}, allocations in {:.1?}, total {:.1?}",
        counted,
        allocs_started.elapsed(),
        started.elapsed()
    );
    Ok(())
}

/// The instructions of one run (all threads) and its callgrind outputs, per (case, length).
type Totals = HashMap<(usize, u64), (u64, Vec<PathBuf>)>;

/// Runs every case (N and 2N) on as many valgrind processes as there are cores.
fn run_cases(
    binary: &Path,
    out_dir: &Path,
    cases: &[Case],
    n: u64,
) -> Result<HashMap<String, Measured>> {
    let jobs: Vec<(usize, u64)> = (0..cases.len())
        .flat_map(|i| {
            let n = length(cases[i].operation, n);
            [(i, n), (i, 2 * n)]
        })
        .collect();
    let next = Mutex::new(0usize);
    let totals: Mutex<Totals> = Mutex::new(HashMap::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |p| p.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = {
                        let mut next = next.lock().unwrap();
                        let job = jobs.get(*next).copied();
                        *next += 1;
                        job
                    };
                    let Some((i, count)) = job else { return };
                    match callgrind(binary, out_dir, &cases[i], count) {
                        Ok(result) => {
                            totals.lock().unwrap().insert((i, count), result);
                        }
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    if !errors.is_empty() {
        return Err(errors.join("\n").into());
    }
    let mut totals = totals.into_inner().unwrap();
    let mut results = HashMap::new();
    for (i, case) in cases.iter().enumerate() {
        let n = length(case.operation, n);
        let (short, short_files) = totals.remove(&(i, n)).expect("measured");
        let (long, long_files) = totals.remove(&(i, 2 * n)).expect("measured");
        results.insert(
            case.name(),
            Measured {
                per_op: (long as f64 - short as f64) / n as f64,
                outputs: [short_files, long_files],
            },
        );
    }
    Ok(results)
}

/// Runs one case under callgrind; returns the instructions of all threads and the output
/// files (one per thread).
fn callgrind(
    binary: &Path,
    out_dir: &Path,
    case: &Case,
    count: u64,
) -> Result<(u64, Vec<PathBuf>)> {
    let stem = format!("{}-{count}", case.name());
    let out = out_dir.join(format!("{stem}.out"));
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--separate-threads=yes",
            "--quiet",
            &format!("--callgrind-out-file={}", out.display()),
        ])
        .arg(binary)
        .args(["count", case.operation, case.side, case.mode])
        .arg(count.to_string())
        .current_dir(workspace_root())
        // The benchmark names its completion mode; no other provider mode may interfere.
        .env_remove("WSK_HOST_MODES")
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "bench: {stem} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    // With --separate-threads=yes callgrind writes `<file>-<thread>` per thread.
    let prefix = format!("{stem}.out-");
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in std::fs::read_dir(out_dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with(&prefix) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let line = text
            .lines()
            .find(|l| l.starts_with("totals:"))
            .or_else(|| text.lines().find(|l| l.starts_with("summary:")))
            .ok_or_else(|| format!("bench: no totals in {}", path.display()))?;
        total += line
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| format!("bench: bad totals line `{line}` in {}", path.display()))?;
        files.push(path);
    }
    if files.is_empty() {
        return Err(format!("bench: callgrind wrote no output for {stem}").into());
    }
    Ok((total, files))
}

/// Self cost per function over all the threads of one run (`callgrind_annotate`).
fn functions(files: &[PathBuf]) -> Result<HashMap<String, u64>> {
    let mut costs = HashMap::new();
    for file in files {
        let output = Command::new("callgrind_annotate")
            .args([
                "--threshold=100",
                "--inclusive=no",
                "--show-percs=no",
                "--auto=no",
            ])
            .arg(file)
            .output()
            .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "callgrind_annotate {} failed: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let mut in_functions = false;
        for line in text.lines() {
            if line.trim_end().ends_with("file:function") {
                in_functions = true;
                continue;
            }
            if !in_functions {
                continue;
            }
            let line = line.trim();
            let Some((number, name)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            let Ok(cost) = number.replace(',', "").parse::<u64>() else {
                continue;
            };
            // `file:function [object]`: the object says nothing here.
            let name = name.trim();
            let name = name.rsplit_once(" [").map_or(name, |(n, _)| n).trim();
            let name = name.strip_prefix("???:").unwrap_or(name);
            *costs.entry(name.to_string()).or_insert(0) += cost;
        }
    }
    Ok(costs)
}

/// Prints the per-operation self cost of the functions of wsk's path and of the raw path:
/// the difference of the two run lengths, per function, divided by N; the top `top` of wsk's
/// beside the raw path's cost of the same function.
fn print_profile(
    operation: &str,
    mode: &str,
    wsk: &Measured,
    raw: &Measured,
    n: u64,
    top: usize,
) -> Result<()> {
    let per_op = |m: &Measured| -> Result<HashMap<String, f64>> {
        let short = functions(&m.outputs[0])?;
        let long = functions(&m.outputs[1])?;
        let mut names: Vec<&String> = short.keys().chain(long.keys()).collect();
        names.sort();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| {
                let a = short.get(name).copied().unwrap_or(0) as f64;
                let b = long.get(name).copied().unwrap_or(0) as f64;
                (name.clone(), (b - a) / n as f64)
            })
            .collect())
    };
    let wsk_costs = per_op(wsk)?;
    let raw_costs = per_op(raw)?;
    let mut rows: Vec<(&String, f64)> = wsk_costs.iter().map(|(k, v)| (k, *v)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    println!();
    println!(
        "{operation} / {mode}: self instructions per operation by function, wsk ({:.0}/op) \
         against raw ({:.0}/op), top {top}:",
        wsk.per_op, raw.per_op
    );
    println!("{:>8} {:>8} {:>8}  function", "wsk", "raw", "wsk-raw");
    for (name, cost) in rows.into_iter().take(top) {
        let raw_cost = raw_costs.get(name).copied().unwrap_or(0.0);
        println!(
            "{cost:>8.1} {raw_cost:>8.1} {:>8.1}  {}",
            cost - raw_cost,
            shorten(name)
        );
    }
    // The functions that cost wsk the most beyond the raw path.
    let mut extra: Vec<(&String, f64)> = wsk_costs
        .iter()
        .map(|(k, v)| (k, v - raw_costs.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d >= 1.0)
        .collect();
    extra.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    println!("largest excess of wsk over raw, by function:");
    for (name, d) in extra.into_iter().take(top) {
        println!("{d:>8.1}  {}", shorten(name));
    }
    Ok(())
}

/// A function name cut to a line.
fn shorten(name: &str) -> String {
    const MAX: usize = 140;
    if name.chars().count() <= MAX {
        name.to_string()
    } else {
        let cut: String = name.chars().take(MAX).collect();
        format!("{cut}…")
    }
}
