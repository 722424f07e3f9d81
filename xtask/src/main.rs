//! `cargo xtask`: the project's chores.
//!
//! Run `cargo xtask help` for the list of commands.

// Used by `bindgen --wdk`, which only runs on Windows; tested everywhere.
#[cfg_attr(not(windows), allow(dead_code))]
mod abi_compare;
mod bench;
mod bindings;
#[cfg(windows)]
mod bindings_wdk;
mod client_share;
mod driver_build;
mod emulation;
mod examples;
mod host_run;
mod import_versions;
mod miri;
mod pe_check;
mod python_env;
mod test_suite;
mod toolchain;
mod wdk_sys_check;
mod wine;
mod wine_probe;
mod wine_suite;

pub use examples::examples;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Errors of xtask commands: reported as text, exit status 1.
pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const HELP: &str = "\
cargo xtask <command>

commands:
  bindgen [--check] [--wdk]   regenerate wsk-sys's bindings from its headers (--check: fail
                              when the committed bindings differ; --wdk: Windows only,
                              generate from the installed WDK and compare layouts and
                              signatures with the committed bindings)
  demo                        the main job: build every example driver (.sys, x64 and
                              ARM64), check the images, run the echo server on wsk-host
                              with a client
  build-driver NAME|--all [--release] [--target x86_64|aarch64]...
                              cross-build example drivers into
                              target/drivers/<target>/<profile>/NAME.sys (+ .inf, and a
                              test-signed copy when osslsigncode is installed)
  check-pe NAME|--all [--release] [--target ...] | FILE.sys...
                              check built images: machine, native subsystem, kernel-only
                              imports, none newer than the architecture's minimum
                              Windows release, relocations, no W+X section, checksum
  imports [--check]           write (--check: compare) the table of the built release
                              drivers' imports, with the first Windows release exporting
                              each, in wsk-sys/README.md
  emulate NAME|--all [--release]
                              run each x64 image's DriverEntry in speakeasy's emulated
                              kernel; check STATUS_SUCCESS and the WSK calls made
  run NAME [Name=Value]... [--for SECONDS]
                              run a driver on wsk-host until Ctrl-C, with registry
                              parameters; unload; print the verifier's report
  wine NAME [Name=Value]... [--duration S]
                              run the release x64 image under Wine's kernel and WSK
                              provider (Debian's wine64) as a kernel service in the prefix
                              target/wine/prefix, with registry parameters, streaming its
                              debug output until Ctrl-C or S seconds; then stop it and say
                              how the stop went
  wine --suite                the test suite's Wine step alone: every example image under
                              Wine with loopback peers (see xtask/src/wine_suite.rs)
  wine --probe [--update]     run wsk_probe.sys under Wine, print its conformance table and
                              its differences from wsk-examples/wsk-probe/WINE.md; --update
                              rewrites that file from the run
  bench [--quick] [--ops N] [--repeat R] [--only OP,...] [--profile OP,...] [--top N]
                              the instruction-count benchmark suite: raw wsk-sys against
                              wsk per operation (send, receive, send_to, receive_from,
                              accept, connect) in always-inline and always-pending modes
                              under callgrind, all threads, set-up removed by differencing
                              N and 2N operations, the median of R runs (default 3; 1
                              with --quick) with their range; a table with ratios, wsk's profile per
                              operation (default: send,receive), allocations per operation
                              at 1/4/8/64 in flight; fails if send's or receive's ratio*
                              is above 1.05 (--only OP[,OP...]: those operations only;
                              --quick: the test suite's reduced run, also failing if wsk
                              allocates per operation, then the reduced echo figure)
  bench --echo [--quick] [--rounds R] [--mode inline|pending|both] [--top N]
                              the end-to-end figure: an echo server written with wsk
                              (tasks in completion routines) against the same raw in
                              wsk-sys, 64 connections x 1 MiB byte-checked: throughput
                              ratio (printed, not asserted) and instructions per echoed
                              byte under callgrind, with wsk's excess by function
  wdk-sys-check [--real]      compile wsk-sys with its wdk-sys feature, and wsk over it, for
                              both Windows targets against the stand-in of
                              xtask/wdk-sys-stand-in, after comparing the stand-in with
                              wdk-sys's generation of the same declarations (--real:
                              against wdk-sys 0.5, on Windows with the WDK)
  test [--host]               the whole test suite: every check of the Linux CI job
                              (--host: only the tests that run in user mode, as on the
                              Windows CI job)
  help                        this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bindgen") => bindings::command(&args[1..]),
        Some("test") => test_suite::command(&args[1..]),
        Some("bench") => bench::command(&args[1..]),
        Some("build-driver") => driver_build::command(&args[1..]),
        Some("check-pe") => pe_check::command(&args[1..]),
        Some("emulate") => emulation::command(&args[1..]),
        Some("imports") => import_versions::command(&args[1..]),
        Some("wdk-sys-check") => wdk_sys_check::command(&args[1..]),
        Some("run") => host_run::command(&args[1..]),
        Some("demo") => host_run::demo(&args[1..]),
        Some("wine") => wine::command(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs a command to completion, failing when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(())
}

/// Whether `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}
