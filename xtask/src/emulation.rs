//! `cargo xtask emulate NAME|--all [--release]`: runs each built x64 driver's `DriverEntry`
//! in a third-party emulated kernel — speakeasy (PyPI `speakeasy-emulator`, in the project's
//! Python environment) — with the default parameters of its manifest as registry values, and
//! checks that it returns `STATUS_SUCCESS` and that its API trace holds the WSK calls the
//! manifest lists (`[package.metadata.wsk-driver] emulate = [...]`).
//!
//! This runs the real image — the machine code, its imports, its relocations — which the host
//! tests (the same source compiled for user mode) cannot. speakeasy emulates x86 and x64
//! only: ARM64 images are checked by `check-pe`, not run.
//!
//! A driver whose `DriverEntry` needs more of the kernel than speakeasy models says why in its
//! manifest (`emulate-excluded = "reason"`) instead of listing calls: it is reported as
//! excluded, with the reason, and not run.

use std::process::Command;

use crate::Result;
use crate::driver_build::{Arch, BuildOptions, parse_args};
use crate::examples::Example;
use crate::python_env::PythonEnv;
use crate::workspace_root;

/// `cargo xtask emulate`.
pub fn command(args: &[String]) -> Result<()> {
    let (examples, release, arches) = parse_args(args)?;
    if arches.contains(&Arch::Aarch64) {
        eprintln!("xtask: emulate: speakeasy runs x64 images only; ARM64 is skipped");
    }
    let env = PythonEnv::ensure()?;
    let options = BuildOptions {
        release,
        arch: Arch::X86_64,
    };
    let mut failures = Vec::new();
    for example in &examples {
        if let Some(reason) = excluded(example) {
            eprintln!(
                "xtask: emulate {}: excluded ({reason})",
                example.driver_name()
            );
            continue;
        }
        match emulate(&env, example, &options) {
            Ok(summary) => eprintln!("xtask: emulate {}: ok ({summary})", example.driver_name()),
            Err(e) => {
                eprintln!("xtask: emulate {}: FAILED: {e}", example.driver_name());
                failures.push(example.driver_name());
            }
        }
    }
    if !failures.is_empty() {
        return Err(format!("emulation failed for {}", failures.join(", ")).into());
    }
    Ok(())
}

/// Why the manifest excludes the driver from emulation, if it does.
fn excluded(example: &Example) -> Option<&str> {
    example
        .metadata
        .get("emulate-excluded")
        .and_then(|reason| reason.as_str())
}

/// The manifest's default parameters as the emulation script takes them.
fn parameters(example: &Example) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(table) = example
        .metadata
        .get("parameters")
        .and_then(|p| p.as_table())
    {
        for (name, value) in table {
            out.push(match value {
                toml::Value::Integer(n) => format!("{name}=dword:{n}"),
                other => format!("{name}=sz:{}", other.as_str().unwrap_or_default()),
            });
        }
    }
    out
}

/// Runs one driver; a summary, or what went wrong.
fn emulate(env: &PythonEnv, example: &Example, options: &BuildOptions) -> Result<String> {
    let sys = options
        .output_dir()
        .join(format!("{}.sys", example.driver_name()));
    if !sys.is_file() {
        return Err(format!("{} is not built (cargo xtask build-driver)", sys.display()).into());
    }
    let output = Command::new(env.python())
        .arg(
            workspace_root()
                .join("xtask")
                .join("emulation")
                .join("run_driver.py"),
        )
        .arg(&sys)
        .args(parameters(example))
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "the emulator failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let entry = report["entry_points"]
        .as_array()
        .and_then(|e| e.first())
        .ok_or("the emulator ran no entry point")?;
    let error = &entry["error"];
    if error.as_object().is_some_and(|e| !e.is_empty()) {
        return Err(format!("DriverEntry faulted in the emulator: {}", error["type"]).into());
    }
    let returned = entry["return"].as_str().unwrap_or("?");
    if returned != "0x0" {
        return Err(format!("DriverEntry returned {returned}, not STATUS_SUCCESS").into());
    }
    let calls: Vec<String> = entry["apis"]
        .as_array()
        .map(|apis| {
            apis.iter()
                .filter_map(|a| a.as_str())
                .map(|a| {
                    let name = a.rsplit('.').next().unwrap_or(a);
                    name.strip_prefix("callback_").unwrap_or(name).to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<&str> = example
        .metadata
        .get("emulate")
        .and_then(|e| e.as_array())
        .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if expected.is_empty() {
        return Err("the manifest lists no WSK calls to expect (emulate = [...])".into());
    }
    // The expected calls, in this order.
    let mut rest = calls.iter();
    for call in &expected {
        if !rest.any(|c| c == call) {
            return Err(format!(
                "the API trace lacks {call} (in the order {expected:?}); it has: {}",
                calls.join(" ")
            )
            .into());
        }
    }
    Ok(format!(
        "DriverEntry -> STATUS_SUCCESS, {} API calls, {} seen in order",
        calls.len(),
        expected.join(" -> ")
    ))
}
