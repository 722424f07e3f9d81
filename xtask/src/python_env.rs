//! The project's Python virtual environment: libclang for bindgen and the third-party
//! checkers (the driver emulator), installed from PyPI at the versions pinned in
//! `xtask/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, run, workspace_root};

/// A virtual environment under `target/xtask-venv`, created and filled on first use.
pub struct PythonEnv {
    root: PathBuf,
}

impl PythonEnv {
    /// Returns the environment, creating it and installing the pinned requirements when
    /// they are missing or changed.
    pub fn ensure() -> Result<Self> {
        let root = workspace_root().join("target").join("xtask-venv");
        let env = PythonEnv { root };
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
                "xtask: creating the Python environment {}",
                env.root.display()
            );
            run(Command::new(host_python())
                .args(["-m", "venv"])
                .arg(&env.root))?;
        }
        eprintln!("xtask: installing {}", requirements.display());
        run(Command::new(env.python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
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

    /// The environment's root directory.
    #[allow(dead_code)]
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn host_python() -> &'static str {
    if cfg!(windows) { "python" } else { "python3" }
}
