//! The pinned toolchain's Windows targets (`rust-toolchain.toml`): added through rustup when
//! they are missing — a toolchain installed without them, or a rustup that does not install
//! what `rust-toolchain.toml` lists (`RUSTUP_AUTO_INSTALL=0`, older releases).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::test_suite::DRIVER_TARGETS;
use crate::{Result, on_path, run, workspace_root};

/// Makes sure the toolchain has the standard library of every driver target, adding the
/// missing ones with `rustup target add` (once per xtask run).
pub fn ensure_driver_targets() -> Result<()> {
    static CHECKED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| add_missing_targets().map_err(|e| e.to_string()))
        .clone()
        .map_err(Into::into)
}

/// The targets of `DRIVER_TARGETS` whose standard library is not in the toolchain.
pub fn missing_targets() -> Result<Vec<&'static str>> {
    let sysroot = rustc_sysroot()?;
    Ok(DRIVER_TARGETS
        .iter()
        .copied()
        .filter(|target| {
            !sysroot
                .join("lib")
                .join("rustlib")
                .join(target)
                .join("lib")
                .is_dir()
        })
        .collect())
}

fn add_missing_targets() -> Result<()> {
    let missing = missing_targets()?;
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path(if cfg!(windows) {
        "rustup.exe"
    } else {
        "rustup"
    }) {
        return Err(format!(
            "the toolchain lacks the targets {}; install them (rustup target add {})",
            missing.join(", "),
            missing.join(" ")
        )
        .into());
    }
    eprintln!(
        "xtask: the toolchain lacks {}: rustup target add {}",
        missing.join(", "),
        missing.join(" ")
    );
    // In the workspace, rustup acts on the toolchain rust-toolchain.toml pins.
    run(Command::new("rustup")
        .args(["target", "add"])
        .args(&missing)
        .current_dir(workspace_root()))?;
    let still = missing_targets()?;
    if !still.is_empty() {
        return Err(format!("rustup did not add {}", still.join(", ")).into());
    }
    Ok(())
}

/// The sysroot of the workspace's toolchain.
fn rustc_sysroot() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustc --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_targets_are_present_or_added() {
        ensure_driver_targets().unwrap();
        assert_eq!(missing_targets().unwrap(), Vec::<&str>::new());
    }
}
