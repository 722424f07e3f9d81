//! The unsafe machinery of `wsk` under Miri (Stacked Borrows): the suite's step that runs
//! `wsk`'s provider-free tests in the interpreter, on wsk-host's kernel functions.
//!
//! Equivalent by hand:
//!
//! ```text
//! rustup toolchain install nightly-2026-05-20 --profile minimal --component miri,rust-src
//! cargo +nightly-2026-05-20 miri setup
//! MIRIFLAGS=-Zmiri-many-seeds=0..8 cargo +nightly-2026-05-20 miri test -p wsk --features host --test miri_machinery
//! MIRIFLAGS=-Zmiri-many-seeds=0..8 cargo +nightly-2026-05-20 miri test -p wsk --features host --lib
//! ```

use std::process::{Command, Stdio};

use crate::{Result, run, workspace_root};

/// The toolchain Miri runs on. Miri ships only with nightly toolchains, and the project's
/// own toolchain (`rust-toolchain.toml`) is stable: this dated nightly is pinned so that a
/// new nightly — whose Miri may find new things or fail to build the sysroot — never changes
/// the outcome of the suite by itself. Move it forward on purpose, with its findings.
pub const MIRI_TOOLCHAIN: &str = "nightly-2026-05-20";

/// Miri's flags. Isolation stays on (wsk-host's kernel functions need no host access under
/// Miri: its clock is Miri's virtual one). `-Zmiri-many-seeds` runs every test binary under
/// eight scheduler seeds: the tests are about interleavings of threads (spin locks, wakers
/// fired from other threads, cancellation racing wake-ups), and each seed gives Miri's
/// preemptive scheduler different ones.
const MIRIFLAGS: &str = "-Zmiri-many-seeds=0..8";

/// The test targets of `wsk` run under Miri: the integration test of its provider-free
/// machinery, and its unit tests (private machinery).
const TARGETS: &[&[&str]] = &[&["--test", "miri_machinery"], &["--lib"]];

/// Installs the pinned toolchain with Miri, builds Miri's sysroot, and runs the tests.
/// Miri's builds go to `target/miri` (cargo-miri's own directory), apart from the normal
/// build's.
pub fn run_machinery_tests() -> Result<()> {
    ensure_toolchain()?;
    run(&mut miri_cargo(&["miri", "setup"]))?;
    for target in TARGETS {
        let mut args = vec!["miri", "test", "-p", "wsk", "--features", "host"];
        args.extend_from_slice(target);
        let mut cmd = miri_cargo(&args);
        cmd.env("MIRIFLAGS", MIRIFLAGS);
        run(&mut cmd)?;
    }
    Ok(())
}

/// Installs [`MIRI_TOOLCHAIN`] with the `miri` and `rust-src` components unless they are
/// there (explicitly: CI runs with `RUSTUP_AUTO_INSTALL=0`).
fn ensure_toolchain() -> Result<()> {
    let installed = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            MIRI_TOOLCHAIN,
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run rustup (Miri needs a rustup toolchain): {e}"))?;
    let components = String::from_utf8_lossy(&installed.stdout);
    let has = |name: &str| components.lines().any(|line| line.starts_with(name));
    if installed.status.success() && has("miri") && has("rust-src") {
        return Ok(());
    }
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        MIRI_TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "miri,rust-src",
    ]))
}

/// `cargo ARGS` of the pinned toolchain, in the workspace (`cargo +TOOLCHAIN`, through
/// `rustup run`, which works whatever `cargo` is first on `PATH`). The variables through
/// which `cargo xtask` names the project's own toolchain are removed.
fn miri_cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", MIRI_TOOLCHAIN, "cargo"])
        .args(args)
        .current_dir(workspace_root());
    for variable in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN"] {
        cmd.env_remove(variable);
    }
    cmd
}
