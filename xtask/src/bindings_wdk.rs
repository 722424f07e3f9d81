//! `cargo xtask bindgen --wdk` (Windows with a WDK): generates bindings from the installed
//! WDK's own `ntddk.h` and `wsk.h`, with the settings of the committed bindings, and fails when
//! their ABI differs from the committed bindings' (see `abi_compare`).
//!
//! The WDK is located by `wdk-build` (the crate `wdk-sys` builds with), from the
//! `WDKContentRoot` environment variable or the registry.

use crate::Result;
use crate::abi_compare::{AbiModel, differences};
use crate::bindings::{ARCHES, Arch, PARTS, builder_common, output_path};

/// Runs the comparison for every architecture whose WDK headers are installed.
pub fn compare_with_wdk() -> Result<()> {
    let mut problems = Vec::new();
    let mut compared = 0;
    for arch in ARCHES {
        let committed = committed_model(arch)?;
        let generated = match generate_from_wdk(arch) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("xtask: {}: no WDK bindings ({error}); skipped", arch.triple);
                continue;
            }
        };
        compared += 1;
        let wdk = AbiModel::parse(&generated);
        for problem in differences(&committed, &wdk) {
            problems.push(format!("{}: {problem}", arch.triple));
        }
    }
    if compared == 0 {
        return Err("no WDK could be used: install the WDK or set WDKContentRoot".into());
    }
    if !problems.is_empty() {
        return Err(format!(
            "the WDK's ABI differs from the committed bindings:\n{}",
            problems.join("\n")
        )
        .into());
    }
    eprintln!("xtask: the committed bindings match the WDK's layouts, signatures and values");
    Ok(())
}

fn committed_model(arch: Arch) -> Result<AbiModel> {
    let mut text = String::new();
    for part in PARTS {
        text.push_str(&std::fs::read_to_string(output_path(arch, part))?);
        text.push('\n');
    }
    Ok(AbiModel::parse(&text))
}

fn generate_from_wdk(arch: Arch) -> Result<String> {
    // wdk-build reads the target architecture the way a build script sees it.
    // SAFETY: xtask is single-threaded here; nothing reads the environment concurrently.
    unsafe { std::env::set_var("CARGO_CFG_TARGET_ARCH", arch.dir) };
    let config = wdk_build::Config::new();
    let mut builder = builder_common()
        .header_contents("wdk-wsk.h", "#include <ntddk.h>\n#include <wsk.h>\n")
        .clang_arg(format!("--target={}", arch.triple))
        .clang_arg(format!("-D{}", arch.wdk_define));
    for path in config.include_paths()? {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    for (name, value) in config.preprocessor_definitions() {
        builder = builder.clang_arg(match value {
            Some(value) => format!("-D{name}={value}"),
            None => format!("-D{name}"),
        });
    }
    builder = builder.clang_args(wdk_build::Config::wdk_bindgen_compiler_flags());
    // Only the items the committed bindings have: the WDK headers hold thousands more.
    let committed = committed_model(arch)?;
    let names = committed
        .layouts
        .keys()
        .chain(committed.signatures.keys())
        .chain(committed.constants.keys());
    for name in names.chain(committed.aliases.keys()) {
        builder = builder.allowlist_item(format!("^{name}$"));
    }
    let bindings = builder
        .generate()
        .map_err(|e| format!("bindgen on the WDK headers failed: {e}"))?;
    Ok(bindings.to_string())
}
