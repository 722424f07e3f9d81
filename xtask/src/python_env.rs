//! The project's Python virtual environment: libclang for bindgen and the third-party
//! checkers (the driver emulator, the workflow schema checker), installed from PyPI as locked
//! in `xtask/requirements.txt` (every transitive dependency, with its hashes; the lock of
//! `xtask/requirements.in`).
//!
//! The tools work on Python 3.11, 3.12 and 3.13: the suite builds the environment with each
//! of those it finds ([`interpreters`]) and runs the emulator in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, run, workspace_root};

/// The Python releases the tools support.
pub const SUPPORTED: &[&str] = &["3.11", "3.12", "3.13"];

/// A virtual environment, created and filled on first use.
pub struct PythonEnv {
    root: PathBuf,
}

impl PythonEnv {
    /// The project's environment, `target/xtask-venv`, made with the host's `python3`
    /// (`python` on Windows): returns it, creating it and installing the locked requirements
    /// when they are missing or changed. `XTASK_PYTHON` names another interpreter and
    /// `XTASK_VENV` another directory (the suite's run on each supported release).
    pub fn ensure() -> Result<Self> {
        let python = std::env::var_os("XTASK_PYTHON").unwrap_or_else(|| host_python().into());
        let root = std::env::var_os("XTASK_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target").join("xtask-venv"));
        Self::ensure_at(Path::new(&python), &root)
    }

    /// The environment at `root`, made with the interpreter `python`: created and filled
    /// with the locked requirements when they are missing or changed.
    pub fn ensure_at(python: &Path, root: &Path) -> Result<Self> {
        let env = PythonEnv {
            root: root.to_path_buf(),
        };
        let requirements = workspace_root().join("xtask").join("requirements.txt");
        let wanted = std::fs::read_to_string(&requirements)?;
        let stamp = env.root.join("requirements.installed");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
            && env.python().exists()
        {
            return Ok(env);
        }
        if !env.python().exists() {
            eprintln!(
                "xtask: creating the Python environment {} with {}",
                env.root.display(),
                python.display()
            );
            run(Command::new(python).args(["-m", "venv"]).arg(&env.root)).map_err(|e| {
                format!(
                    "{e} (on Debian and Ubuntu, `venv` is the package python3-venv: \
                     apt-get install python3-venv)"
                )
            })?;
        }
        eprintln!("xtask: installing {}", requirements.display());
        run(Command::new(env.python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--require-hashes",
                "-r",
            ])
            .arg(&requirements))?;
        std::fs::write(&stamp, wanted)?;
        Ok(env)
    }

    /// The environment's Python interpreter.
    pub fn python(&self) -> PathBuf {
        if cfg!(windows) {
            self.root.join("Scripts").join("python.exe")
        } else {
            self.root.join("bin").join("python")
        }
    }

    /// A console program the environment's packages installed (for example `check-jsonschema`).
    pub fn tool(&self, name: &str) -> PathBuf {
        if cfg!(windows) {
            self.root.join("Scripts").join(format!("{name}.exe"))
        } else {
            self.root.join("bin").join(name)
        }
    }

    /// The directory holding the libclang shared library of the `libclang` package.
    pub fn libclang_dir(&self) -> Result<PathBuf> {
        let out = Command::new(self.python())
            .args([
                "-c",
                "import clang, os; print(os.path.join(os.path.dirname(clang.__file__), 'native'))",
            ])
            .output()?;
        if !out.status.success() {
            return Err("the libclang Python package is not importable".into());
        }
        let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        if !dir.is_dir() {
            return Err(format!("libclang directory {} is missing", dir.display()).into());
        }
        Ok(dir)
    }

    /// Imports every tool's package and loads libclang: fails on an interpreter the tools do
    /// not work on (for example unicorn's `distutils` import on 3.12 without setuptools).
    pub fn smoke_test(&self) -> Result<()> {
        run(Command::new(self.python()).args([
            "-c",
            "import clang.cindex, speakeasy, unicorn, pefile, check_jsonschema; \
             clang.cindex.Index.create()",
        ]))
    }

    /// The environment's root directory.
    #[allow(dead_code)]
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn host_python() -> &'static str {
    if cfg!(windows) { "python" } else { "python3" }
}

/// The `major.minor` release of an interpreter, when it runs.
fn release_of(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The interpreters of the [`SUPPORTED`] releases on this machine: `python3.X` on `PATH`,
/// else pyenv's installed versions. Returns `(release, interpreter)` for each release
/// found.
pub fn interpreters() -> Vec<(&'static str, PathBuf)> {
    let pyenv_versions = Command::new("pyenv")
        .arg("root")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("versions"));
    let mut found = Vec::new();
    for &release in SUPPORTED {
        let program = format!("python{release}");
        let mut candidates = vec![PathBuf::from(&program)];
        if let Some(dir) = &pyenv_versions {
            let mut versions: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{release}.")))
                })
                .collect();
            versions.sort();
            candidates.extend(
                versions
                    .into_iter()
                    .rev()
                    .map(|v| v.join("bin").join(&program)),
            );
        }
        if let Some(python) = candidates
            .into_iter()
            .find(|p| release_of(p).as_deref() == Some(release))
        {
            found.push((release, python));
        }
    }
    found
}

/// `cargo xtask test`'s check of the Python tools on each supported release this machine has
/// (see [`interpreters`]): the environment built with it from the lock, under
/// `target/python-envs/<release>`, every tool imported, and the emulator run on the x64
/// release drivers (built before) — each release within `limit`. Says which supported
/// releases it did not find.
pub fn check_interpreters(limit: Duration) -> Result<()> {
    let found = interpreters();
    if found.is_empty() {
        return Err(format!("no Python interpreter of {} found", SUPPORTED.join(", ")).into());
    }
    for &release in SUPPORTED {
        if !found.iter().any(|(r, _)| *r == release) {
            eprintln!("xtask: Python {release} is not installed here: not checked");
        }
    }
    for (release, python) in &found {
        eprintln!("xtask: Python {release} ({})", python.display());
        let root = workspace_root()
            .join("target")
            .join("python-envs")
            .join(release);
        let exe = std::env::current_exe()?;
        run_bounded(
            Command::new(&exe)
                .args(["emulate", "--all", "--release"])
                .env("XTASK_PYTHON", python)
                .env("XTASK_VENV", &root)
                .current_dir(workspace_root()),
            limit,
        )
        .map_err(|e| format!("Python {release}: {e}"))?;
        PythonEnv::ensure_at(python, &root)?
            .smoke_test()
            .map_err(|e| format!("Python {release}: {e}"))?;
    }
    Ok(())
}

/// Runs `cmd`, killing it when it outlives `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<()> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                return Err(format!("{cmd:?} failed: {status}").into());
            }
            return Ok(());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
