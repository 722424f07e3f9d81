//! `cargo xtask test`: the whole test suite — every check the Linux CI job makes — and
//! `cargo xtask test --host`, the part that runs in Windows user mode too.

use std::process::Command;
use std::time::Instant;

use crate::{Result, on_path, run, workspace_root};

/// Debian packages the suite uses: `osslsigncode` test-signs the built drivers, `nc` and
/// `socat` are the third-party clients of the echo server's test, `valgrind` (callgrind)
/// counts the instructions of the benchmark suite (and, checked apart, `python3-venv`: the
/// Python tools' environment; `wine64`: the second kernel the images run on, whose loader
/// Debian keeps off `PATH`).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("osslsigncode", "osslsigncode"),
    ("valgrind", "valgrind"),
    ("nc", "netcat-openbsd"),
    ("socat", "socat"),
];

/// The crates published on crates.io, in publishing order (`wsk`'s tests use `wsk-host`).
pub const PUBLISHED: &[&str] = &["wsk-sys", "wsk-host", "wsk"];

/// The Windows targets drivers are built for.
pub const DRIVER_TARGETS: &[&str] = &["x86_64-pc-windows-msvc", "aarch64-pc-windows-msvc"];

/// `cargo xtask test [--host]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut host_only = false;
    for arg in args {
        match arg.as_str() {
            "--host" => host_only = true,
            other => return Err(format!("test: unknown option `{other}`").into()),
        }
    }
    let started = Instant::now();
    let mut suite = Suite::default();
    if !host_only {
        // The pinned toolchain's Windows targets, added when missing (the lint, build and
        // doc steps for the Windows targets need them).
        crate::toolchain::ensure_driver_targets()?;
    }
    if host_only {
        suite.step("host tests (cargo test --workspace)", || {
            cargo(&["test", "--workspace", "--exclude", "xtask"])
        })?;
    } else {
        suite.step("prerequisites (Debian packages)", install_debian_packages)?;
        suite.step("formatting (cargo fmt --check)", || {
            cargo(&["fmt", "--all", "--", "--check"])
        })?;
        suite.step("lints, host (cargo clippy -D warnings)", || {
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
        })?;
        for target in DRIVER_TARGETS {
            suite.step(&format!("lints, {target} (kernel crates)"), || {
                let mut args = vec!["clippy", "--target", target];
                for package in kernel_packages()? {
                    args.push("-p");
                    args.push(leak(package));
                }
                args.extend(["--", "-D", "warnings"]);
                cargo(&args)
            })?;
        }
        suite.step("committed bindings (cargo xtask bindgen --check)", || {
            xtask(&["bindgen", "--check"])
        })?;
        suite.step(
            "wsk-sys with the wdk-sys feature and wsk over it, x64 + ARM64, against the stand-in checked against wdk-sys's generation, and the windows-drivers-rs example type-checked (cargo xtask wdk-sys-check)",
            || crate::wdk_sys_check::check(false),
        )?;
        suite.step("tests (cargo test --workspace)", || {
            cargo(&["test", "--workspace"])
        })?;
        suite.step(
            "wsk and the example drivers on a provider that delivers events concurrently and completes inline at PASSIVE_LEVEL (WSK_HOST_MODES)",
            || {
                // Windows delivers event callbacks on several processors at once and runs an
                // inline completion at the caller's IRQL: the suites that exercise the safe
                // layer run again in those provider modes.
                let mut test = cargo_command(&[
                    "test",
                    "-p",
                    "wsk",
                    "-p",
                    "wsk-host-runner",
                    "--tests",
                ]);
                test.env("WSK_HOST_MODES", "concurrent-events,passive-inline");
                run(&mut test)
            },
        )?;
        suite.step(
            "instruction-count benchmarks, reduced run (cargo xtask bench --quick)",
            || {
                // Every operation, both sides, both completion modes under callgrind with
                // a short run; fails if send's or receive's ratio* is above the target
                // (1.05, both completion modes), or if wsk allocates per operation where
                // it is expected not to.
                crate::bench::run_suite(&crate::bench::Options {
                    quick: true,
                    profile: Vec::new(),
                    ..crate::bench::Options::default()
                })
            },
        )?;
        suite.step(
            "unsafe machinery under Miri (Stacked Borrows)",
            crate::miri::run_machinery_tests,
        )?;
        suite.step(
            "example drivers (build x64 + ARM64, check-pe, import table, emulate)",
            || {
                let both = [
                    "--all",
                    "--release",
                    "--target",
                    "x86_64",
                    "--target",
                    "aarch64",
                ];
                xtask(&[&["build-driver"][..], &both].concat())?;
                xtask(&[&["check-pe"][..], &both].concat())?;
                xtask(&["imports", "--check"])?;
                xtask(&["emulate", "--all", "--release"])
            },
        )?;
        suite.step(
            "wine: the release x64 images under Wine's kernel and WSK provider (RUNNING, an echo, loopback peers)",
            crate::wine_suite::step,
        )?;
        suite.step(
            "Python tools on each supported release found (3.11, 3.12, 3.13: locked environment, imports, emulation)",
            || crate::python_env::check_interpreters(std::time::Duration::from_secs(600)),
        )?;
        suite.step(
            "documentation (cargo doc -D warnings, public and private items)",
            || {
                // The internals' documentation first (the lifecycle's states and proofs link to
                // each other: a link that no longer resolves misleads a reviewer); the public
                // documentation, built after, is what stays in `target/doc`.
                let mut private = cargo_command(&[
                    "doc",
                    "--no-deps",
                    "-p",
                    "wsk",
                    "--features",
                    "host",
                    "--document-private-items",
                ]);
                private.env("RUSTDOCFLAGS", "-D warnings");
                run(&mut private)?;
                let mut doc = cargo_command(&["doc", "--workspace", "--no-deps"]);
                doc.env("RUSTDOCFLAGS", "-D warnings");
                run(&mut doc)?;
                let mut windows = cargo_command(&[
                    "doc",
                    "--no-deps",
                    "-p",
                    "wsk-sys",
                    "-p",
                    "wsk",
                    "--target",
                    "x86_64-pc-windows-msvc",
                ]);
                windows.env("RUSTDOCFLAGS", "-D warnings");
                run(&mut windows)
            },
        )?;
        suite.step("workflows (schema check)", check_workflows)?;
        suite.step(
            "minimum supported Rust version (cargo check of the published crates with the workspace's rust-version)",
            check_msrv,
        )?;
        suite.step("packages (cargo publish --dry-run)", || {
            forget_packaged_sources()?;
            // The packages are verified in a target directory of their own, where what an
            // earlier verification built of them is removed first: cargo takes a build of
            // a registry package of the same name and version for up to date whatever its
            // sources, so `wsk-host` would be verified against an older `wsk-sys`.
            let target_dir = workspace_root().join("target").join("publish-verify");
            let target_dir = target_dir.to_str().ok_or("target directory: not UTF-8")?;
            let mut clean = vec!["clean", "--target-dir", target_dir];
            let mut publish = vec![
                "publish",
                "--dry-run",
                "--allow-dirty",
                "--target-dir",
                target_dir,
            ];
            for package in PUBLISHED {
                clean.extend(["-p", package]);
                publish.extend(["-p", package]);
            }
            cargo(&clean)?;
            cargo(&publish)
        })?;
    }
    eprintln!(
        "\nxtask: test suite passed: {} steps in {:.0?}",
        suite.steps,
        started.elapsed()
    );
    Ok(())
}

#[derive(Default)]
struct Suite {
    steps: usize,
}

impl Suite {
    fn step(&mut self, name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("\n=== {name}");
        let started = Instant::now();
        body().map_err(|e| format!("step `{name}` failed: {e}"))?;
        eprintln!("=== {name}: ok ({:.1?})", started.elapsed());
        self.steps += 1;
        Ok(())
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// The crates that are built for Windows kernel mode: the bindings, the safe layer and the
/// example drivers (the `wsk-examples/*` crates other than the host runner).
pub fn kernel_packages() -> Result<Vec<String>> {
    let mut packages = vec!["wsk-sys".to_string(), "wsk".to_string()];
    packages.extend(crate::examples()?.into_iter().map(|e| e.package));
    Ok(packages)
}

fn cargo_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(args).current_dir(workspace_root());
    cmd
}

/// Runs `cargo ARGS` in the workspace.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(&mut cargo_command(args))
}

/// Runs another xtask command (this same binary).
fn xtask(args: &[&str]) -> Result<()> {
    run(Command::new(std::env::current_exe()?)
        .args(args)
        .current_dir(workspace_root()))
}

/// Installs the Debian packages the suite needs when they are missing: with `apt-get` when
/// running as root (CI, containers), else says what to install.
fn install_debian_packages() -> Result<()> {
    let mut missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    // The Python tools' virtual environment: Debian's python3 has no `venv`/`ensurepip`
    // without this package.
    let has_venv = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_venv {
        missing.push("python3-venv");
    }
    if !crate::wine::Wine::installed() {
        missing.push("wine64");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root || !on_path("apt-get") {
        return Err(format!(
            "missing programs; install the Debian packages: {}",
            missing.join(" ")
        )
        .into());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Validates the GitHub workflows against the GitHub Actions workflow schema
/// (`check-jsonschema`, from the project's Python environment: actionlint's packages fetch a
/// binary at install time, which this project's machines cannot).
fn check_workflows() -> Result<()> {
    let env = crate::python_env::PythonEnv::ensure()?;
    let workflows: Vec<_> = std::fs::read_dir(workspace_root().join(".github").join("workflows"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    if workflows.is_empty() {
        return Err("no workflow found under .github/workflows".into());
    }
    run(Command::new(env.tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(&workflows)
        .current_dir(workspace_root()))?;
    // The workflows' local composite actions and the dependabot configuration, against
    // their schemas too.
    let actions: Vec<_> = std::fs::read_dir(workspace_root().join(".github").join("actions"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("action.yml")))
        .filter(|p| p.is_file())
        .collect();
    if !actions.is_empty() {
        run(Command::new(env.tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.github-actions"])
            .args(&actions)
            .current_dir(workspace_root()))?;
    }
    let dependabot = workspace_root().join(".github").join("dependabot.yml");
    if dependabot.is_file() {
        run(Command::new(env.tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.dependabot"])
            .arg(&dependabot)
            .current_dir(workspace_root()))?;
    }
    Ok(())
}

/// Checks the published crates with the workspace's `rust-version` (installed through rustup
/// with the Windows targets, minimal profile): the host build of all of them, and `wsk-sys`
/// and `wsk` for each driver target.
fn check_msrv() -> Result<()> {
    let manifest: toml::Table =
        std::fs::read_to_string(workspace_root().join("Cargo.toml"))?.parse()?;
    let msrv = manifest
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("rust-version"))
        .and_then(|v| v.as_str())
        .ok_or("the workspace declares no rust-version")?
        .to_string();
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", &msrv, "--profile", "minimal"]);
    for target in DRIVER_TARGETS {
        install.args(["--target", target]);
    }
    run(install.current_dir(workspace_root()))?;
    let target_dir = workspace_root().join("target").join("msrv");
    let check = |args: &[&str]| {
        run(Command::new("rustup")
            .args(["run", &msrv, "cargo", "check", "--locked"])
            .args(args)
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(workspace_root())
            // The workspace's toolchain file does not choose for `rustup run`.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("CARGO"))
    };
    let mut host = Vec::new();
    for package in PUBLISHED {
        host.extend(["-p", package]);
    }
    check(&host)?;
    for target in DRIVER_TARGETS {
        check(&["-p", "wsk-sys", "-p", "wsk", "--target", target])?;
    }
    Ok(())
}

/// Removes the sources cargo extracted from the local registry of an earlier
/// `cargo publish --dry-run` of these crates. Cargo verifies each package against the others
/// through that registry, and reuses an extraction of the same name and version (the version
/// does not change between commits): without this, `wsk` would be verified against an older
/// `wsk-sys`.
fn forget_packaged_sources() -> Result<()> {
    let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(
        || {
            std::env::var_os("HOME")
                .map(|home| std::path::PathBuf::from(home).join(".cargo"))
                .unwrap_or_default()
        },
        std::path::PathBuf::from,
    );
    let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join("src")) else {
        return Ok(());
    };
    let manifest: toml::Table =
        std::fs::read_to_string(workspace_root().join("Cargo.toml"))?.parse()?;
    let version = manifest
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(toml::Value::as_str)
        .ok_or("the workspace's Cargo.toml has no [workspace.package] version")?
        .to_string();
    for registry in registries.flatten() {
        // crates.io's extractions are left alone: only local registries hold these crates
        // under their own names.
        if registry.file_name().to_string_lossy().starts_with("index.") {
            continue;
        }
        for package in PUBLISHED {
            let extracted = registry.path().join(format!("{package}-{version}"));
            if extracted.is_dir() {
                std::fs::remove_dir_all(&extracted)?;
            }
        }
    }
    Ok(())
}
