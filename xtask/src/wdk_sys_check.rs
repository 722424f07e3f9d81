//! `cargo xtask wdk-sys-check`: compiles `wsk-sys` with its `wdk-sys` feature for both Windows
//! targets.
//!
//! The crates are built from a scratch workspace (under `target/wdk-sys-check`) whose probe
//! crate depends on `wsk-sys` with the feature and glob-imports `wdk_sys` and `wsk_sys` together,
//! naming items both define (a name defined twice would be ambiguous and fail the build).
//!
//! By default `wdk-sys` is the stand-in of `xtask/wdk-sys-stand-in` (see its README), through
//! `[patch.crates-io]`, built `--offline`: `cargo check` needs no WDK and no network. With
//! `--real` (Windows with the WDK), the probe builds against wdk-sys 0.5 from crates.io, and
//! the items of the stand-in are compared with those of the real bindings.

use std::fs;
use std::path::{Path, PathBuf};

use crate::test_suite::DRIVER_TARGETS;
use crate::{Result, run, workspace_root};

/// `cargo xtask wdk-sys-check [--real]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut real = false;
    for arg in args {
        match arg.as_str() {
            "--real" => real = true,
            other => return Err(format!("wdk-sys-check: unknown option `{other}`").into()),
        }
    }
    check(real)
}

/// Builds the probe for both Windows targets.
pub fn check(real: bool) -> Result<()> {
    let root = workspace_root();
    let scratch = root.join("target").join(if real {
        "wdk-sys-check-real"
    } else {
        "wdk-sys-check"
    });
    write_probe(&root, &scratch, real)?;
    for target in DRIVER_TARGETS {
        let mut cargo =
            std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cargo
            .current_dir(&scratch)
            .args(["check", "--target", target]);
        if real {
            cargo.arg("--release");
        } else {
            cargo.arg("--offline");
        }
        cargo.env("CARGO_TARGET_DIR", scratch.join("target"));
        run(&mut cargo)?;
    }
    Ok(())
}

fn write_probe(root: &Path, scratch: &Path, real: bool) -> Result<()> {
    fs::create_dir_all(scratch.join("src"))?;
    let path = |dir: &str| -> String { toml_path(&root.join(dir)) };
    let mut manifest = format!(
        "[package]\nname = \"wdk-sys-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\npath = \"src/lib.rs\"\n\n\
         [dependencies]\n\
         wsk-sys = {{ path = \"{}\", features = [\"wdk-sys\"] }}\n\
         wdk-sys = \"0.5\"\n\n\
         [workspace]\n",
        path("wsk-sys"),
    );
    if real {
        // wdk-build reads the driver model from the workspace's metadata.
        manifest.push_str("\n[workspace.metadata.wdk.driver-model]\ndriver-type = \"WDM\"\n");
    } else {
        manifest.push_str(&format!(
            "\n[patch.crates-io]\nwdk-sys = {{ path = \"{}\" }}\n",
            path("xtask/wdk-sys-stand-in")
        ));
    }
    write_if_changed(&scratch.join("Cargo.toml"), &manifest)?;
    write_if_changed(&scratch.join("src/lib.rs"), PROBE)?;
    Ok(())
}

fn toml_path(path: &Path) -> String {
    path.display().to_string().replace('\\', "/")
}

fn write_if_changed(path: &PathBuf, text: &str) -> Result<()> {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text)?;
    }
    Ok(())
}

/// The probe: both crates glob-imported together, and items both name used through the
/// globs.
const PROBE: &str = r#"//! wdk-sys feature probe.
#![no_std]
#![allow(unused_imports, dead_code)]
use wdk_sys::*;
use wsk_sys::*;
use wdk_sys::ntddk::*;

const _: NTSTATUS = STATUS_SUCCESS;
const _: bool = NT_SUCCESS(STATUS_PENDING);
const _: u32 = DISPATCH_LEVEL;
const _: usize = core::mem::size_of::<IRP>() + core::mem::size_of::<MDL>();
const _: POOL_TYPE = NonPagedPool;

fn routines(irp: PIRP, mdl: PMDL) {
    let _: unsafe extern "C" fn(PIRP) = IoFreeIrp;
    let _: unsafe extern "C" fn(PMDL) = IoFreeMdl;
    let _: unsafe fn(PIRP) -> PIO_STACK_LOCATION = IoGetNextIrpStackLocation;
    let _: unsafe fn(PMDL, ULONG) -> PVOID = MmGetSystemAddressForMdlSafe;
    let _ = (irp, mdl);
}
"#;
