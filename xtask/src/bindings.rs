//! `cargo xtask bindgen`: generates `wsk-sys/src/bindings/<arch>/{base,wsk}.rs` from the
//! headers in `wsk-sys/include` with bindgen, for `x86_64-pc-windows-msvc` and
//! `aarch64-pc-windows-msvc`.
//!
//! The bindings are split in two parts so that the `wdk-sys` feature of `wsk-sys` can swap
//! the kernel base part for `wdk-sys`'s own types:
//! - `base`: `km_types.h`, `km_ntstatus.h`, `km_io.h` (integers, IRP, MDL, events, pool,
//!   registry, the ntoskrnl exports);
//! - `wsk`: `km_net.h`, `wsk.h` (socket addresses and everything of the WDK's `wsk.h`).
//!
//! libclang comes from the pinned `libclang` PyPI package (see `python_env`), so every
//! machine produces byte-identical output and `--check` can compare text.

use std::path::{Path, PathBuf};

use crate::python_env::PythonEnv;
use crate::{Result, workspace_root};

/// A Windows target the bindings are generated for.
#[derive(Clone, Copy)]
pub struct Arch {
    /// Directory name under `wsk-sys/src/bindings`.
    pub dir: &'static str,
    /// Clang target triple.
    pub triple: &'static str,
    /// Architecture macro the WDK headers expect (used by `--wdk`, on Windows).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub wdk_define: &'static str,
}

/// The architectures the committed bindings cover.
pub const ARCHES: [Arch; 2] = [
    Arch {
        dir: "x86_64",
        triple: "x86_64-pc-windows-msvc",
        wdk_define: "_AMD64_",
    },
    Arch {
        dir: "aarch64",
        triple: "aarch64-pc-windows-msvc",
        wdk_define: "_ARM64_",
    },
];

/// One generated file: which headers it holds.
#[derive(Clone, Copy)]
pub struct Part {
    /// File stem under `wsk-sys/src/bindings/<arch>/`.
    pub name: &'static str,
    /// Headers whose items this part holds.
    pub headers: &'static [&'static str],
    /// Headers whose items come from elsewhere (`use super::base::*`).
    pub imports: &'static [&'static str],
}

/// The two parts of the bindings.
pub const PARTS: [Part; 2] = [
    Part {
        name: "base",
        headers: &["km_types.h", "km_ntstatus.h", "km_io.h"],
        imports: &[],
    },
    Part {
        name: "wsk",
        headers: &["km_net.h", "wsk.h"],
        imports: &["km_types.h", "km_ntstatus.h", "km_io.h"],
    },
];

/// `cargo xtask bindgen [--check] [--wdk]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut check = false;
    let mut wdk = false;
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            "--wdk" => wdk = true,
            other => return Err(format!("bindgen: unknown option `{other}`").into()),
        }
    }
    if wdk {
        return compare_with_wdk();
    }
    let env = PythonEnv::ensure()?;
    // clang-sys reads LIBCLANG_PATH when it loads libclang.
    set_libclang_path(&env.libclang_dir()?);
    let mut drift = Vec::new();
    for arch in ARCHES {
        for part in PARTS {
            let text = generate(arch, part)?;
            let path = output_path(arch, part);
            if check {
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                if committed != text {
                    drift.push(describe_drift(&path, &committed, &text));
                }
            } else {
                std::fs::create_dir_all(path.parent().expect("bindings have a parent"))?;
                std::fs::write(&path, text)?;
                eprintln!("xtask: wrote {}", path.display());
            }
        }
    }
    if !drift.is_empty() {
        return Err(format!(
            "the committed bindings differ from what the headers generate \
             (run `cargo xtask bindgen` and commit the result):\n{}",
            drift.join("\n")
        )
        .into());
    }
    if check {
        eprintln!("xtask: committed bindings match the headers");
    }
    Ok(())
}

/// `--wdk`: the WDK's headers need a full clang installation (its resource headers such as
/// `intrin.h`), so this uses the libclang that `LIBCLANG_PATH` points to (an LLVM install),
/// not the project's pinned one.
#[cfg(windows)]
fn compare_with_wdk() -> Result<()> {
    crate::bindings_wdk::compare_with_wdk()
}

#[cfg(not(windows))]
fn compare_with_wdk() -> Result<()> {
    Err("--wdk needs Windows with a WDK installed (the Windows CI job runs it)".into())
}

fn set_libclang_path(dir: &Path) {
    // SAFETY: called before any thread is spawned; nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("LIBCLANG_PATH", dir) };
}

/// The headers directory of `wsk-sys`.
pub fn include_dir() -> PathBuf {
    workspace_root().join("wsk-sys").join("include")
}

/// Where a part of an architecture's bindings is committed.
pub fn output_path(arch: Arch, part: Part) -> PathBuf {
    workspace_root()
        .join("wsk-sys")
        .join("src")
        .join("bindings")
        .join(arch.dir)
        .join(format!("{}.rs", part.name))
}

/// Clang arguments shared by every generation from the project's headers.
pub fn clang_args(arch: Arch, include: &Path) -> Vec<String> {
    vec![
        format!("--target={}", arch.triple),
        "-fms-extensions".into(),
        "-fms-compatibility".into(),
        "-ffreestanding".into(),
        "-nostdinc".into(),
        "-std=c11".into(),
        format!("-I{}", include.display()),
    ]
}

/// The bindgen settings every generation shares (the project's headers and the WDK's).
pub fn builder_common() -> bindgen::Builder {
    bindgen::Builder::default()
        .use_core()
        .ctypes_prefix("crate::ctypes")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .generate_comments(true)
        .override_abi(bindgen::Abi::System, ".*")
        .derive_default(true)
        .layout_tests(true)
        .merge_extern_blocks(true)
        .sort_semantically(false)
        .formatter(bindgen::Formatter::Rustfmt)
}

/// Generates one part for one architecture from the project's headers and returns the Rust
/// text.
pub fn generate(arch: Arch, part: Part) -> Result<String> {
    generate_from(&include_dir(), arch, part)
}

/// Generates one part for one architecture from the headers in `include`.
pub fn generate_from(include: &Path, arch: Arch, part: Part) -> Result<String> {
    let mut builder = builder_common()
        .clang_args(clang_args(arch, include))
        .header(include.join("wsk_sys.h").display().to_string())
        .raw_line(format!(
            "// Generated by `cargo xtask bindgen` from wsk-sys/include ({}) for {}.\n\
             // Do not edit: change the headers and regenerate.",
            part.headers.join(", "),
            arch.triple
        ));
    for header in part.headers {
        builder = builder.allowlist_file(header_regex(header));
    }
    for header in part.imports {
        builder = builder.blocklist_file(header_regex(header));
    }
    if !part.imports.is_empty() {
        builder = builder
            .raw_line("#[allow(unused_imports)]\nuse super::base::*;")
            .parse_callbacks(Box::new(ImportedTypesArePlainData));
    }
    let bindings = builder
        .generate()
        .map_err(|e| format!("bindgen failed for {} {}: {e}", arch.triple, part.name))?;
    Ok(normalise(&bindings.to_string(), include))
}

/// Makes the output independent of the machine: no absolute paths, stable line endings.
fn normalise(text: &str, include: &Path) -> String {
    let include = include.display().to_string();
    let mut out = text
        .replace("\r\n", "\n")
        .replace(&include, "wsk-sys/include");
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn header_regex(header: &str) -> String {
    format!(".*[/\\\\]{}", regex_escape(header))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A short description of how two versions of a file differ: the first differing line.
fn describe_drift(path: &Path, committed: &str, generated: &str) -> String {
    if committed.is_empty() {
        return format!("  {}: missing", path.display());
    }
    let line = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    let show = |text: &str| {
        text.lines()
            .nth(line)
            .unwrap_or("<end of file>")
            .to_string()
    };
    format!(
        "  {} differs from line {}:\n    committed: {}\n    generated: {}",
        path.display(),
        line + 1,
        show(committed),
        show(generated)
    )
}

/// Tells bindgen that the types a part imports from the base part are plain C data: they
/// implement `Copy`, `Clone`, `Debug` and `Default` (pointers excepted for `Default`, which
/// bindgen handles by zeroing). Without it bindgen cannot prove that a union of imported
/// types is `Copy` and falls back to its `__BindgenUnionField` emulation.
#[derive(Debug)]
struct ImportedTypesArePlainData;

impl bindgen::callbacks::ParseCallbacks for ImportedTypesArePlainData {
    fn blocklisted_type_implements_trait(
        &self,
        _name: &str,
        derive_trait: bindgen::callbacks::DeriveTrait,
    ) -> Option<bindgen::callbacks::ImplementsTrait> {
        use bindgen::callbacks::{DeriveTrait, ImplementsTrait};
        match derive_trait {
            DeriveTrait::Copy | DeriveTrait::Debug => Some(ImplementsTrait::Yes),
            DeriveTrait::Default => Some(ImplementsTrait::Manually),
            _ => Some(ImplementsTrait::No),
        }
    }
}

/// Prepares bindgen (the pinned libclang) for generation outside `command`.
#[cfg(test)]
pub fn prepare_libclang() -> Result<()> {
    let env = PythonEnv::ensure()?;
    set_libclang_path(&env.libclang_dir()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Copies wsk-sys into a scratch workspace with `edit` applied to its `wsk.h`, regenerates
    /// the copy's bindings from the edited header, and builds it for `target` (the host when
    /// `None`). Returns whether the build succeeded and its diagnostics.
    fn build_with_edited_header(
        name: &str,
        edit: impl Fn(&str) -> String,
        target: Option<&str>,
    ) -> (bool, String) {
        prepare_libclang().unwrap();
        let root = workspace_root()
            .join("target")
            .join("abi-mutation")
            .join(name);
        let _ = std::fs::remove_dir_all(&root);
        let crate_dir = root.join("wsk-sys");
        copy_dir(&workspace_root().join("wsk-sys"), &crate_dir, &["target"]);
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"wsk-sys\"]\nresolver = \"3\"\n\n[workspace.package]\nversion = \"0.0.0\"\n\
             edition = \"2024\"\nrust-version = \"1.85\"\nlicense = \"MIT OR Apache-2.0\"\n\
             repository = \"https://example.invalid\"\nhomepage = \"https://example.invalid\"\nauthors = []\n\n\
             [workspace.lints.rust]\nunsafe_op_in_unsafe_fn = \"deny\"\nmissing_docs = \"deny\"\n",
        )
        .unwrap();
        let header = crate_dir.join("include").join("wsk.h");
        let original = std::fs::read_to_string(&header).unwrap();
        let edited = edit(&original);
        assert_ne!(edited, original, "the edit must change the header");
        std::fs::write(&header, edited).unwrap();
        let include = crate_dir.join("include");
        for arch in ARCHES {
            for part in PARTS {
                let text = generate_from(&include, arch, part).unwrap();
                let path = crate_dir
                    .join("src")
                    .join("bindings")
                    .join(arch.dir)
                    .join(format!("{}.rs", part.name));
                std::fs::write(path, text).unwrap();
            }
        }
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .arg("build")
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"));
        cargo.arg("--target-dir").arg(
            workspace_root()
                .join("target")
                .join("abi-mutation")
                .join("target"),
        );
        if let Some(target) = target {
            cargo.args(["--target", target]);
        }
        let output = cargo.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            let (source, dest) = (entry.path(), to.join(&name));
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&source, &dest, skip);
            } else {
                std::fs::copy(&source, &dest).unwrap();
            }
        }
    }

    #[test]
    fn removing_a_dispatch_member_from_the_header_breaks_the_build() {
        let (ok, diagnostics) = build_with_edited_header(
            "removed-member",
            |header| {
                // Drop `WskSendEx` from WSK_PROVIDER_CONNECTION_DISPATCH (its first occurrence).
                header.replacen("    PFN_WSK_SEND_EX WskSendEx;\n", "", 1)
            },
            None,
        );
        assert!(!ok, "the mutated header must not build");
        assert!(
            diagnostics.contains("WskSendEx"),
            "unexpected diagnostics:\n{diagnostics}"
        );
    }

    #[test]
    fn reordered_dispatch_members_break_the_aarch64_build() {
        let (ok, diagnostics) = build_with_edited_header(
            "reordered-members",
            |header| {
                // Swap WskSend and WskReceive in WSK_PROVIDER_CONNECTION_DISPATCH: the same
                // names and size, a different layout.
                header.replacen(
                    "    PFN_WSK_SEND WskSend;\n    /** WDK: `WskReceive`. */\n    PFN_WSK_RECEIVE WskReceive;",
                    "    PFN_WSK_RECEIVE WskReceive;\n    /** WDK: `WskSend`. */\n    PFN_WSK_SEND WskSend;",
                    1,
                )
            },
            Some("aarch64-pc-windows-msvc"),
        );
        assert!(!ok, "the mutated header must not build");
        assert!(
            diagnostics.contains("WSK_PROVIDER_CONNECTION_DISPATCH")
                && diagnostics.contains("is not at its WDK offset"),
            "unexpected diagnostics:\n{diagnostics}"
        );
    }

    #[test]
    fn a_wrong_signature_in_the_header_breaks_the_windows_build() {
        let (ok, diagnostics) = build_with_edited_header(
            "wrong-signature",
            |header| {
                header.replacen(
                    "(PWSK_SOCKET Socket, PWSK_BUF Buffer, ULONG Flags,\n                                           PIRP Irp);",
                    "(PWSK_SOCKET Socket, PWSK_BUF Buffer, PIRP Irp);",
                    1,
                )
            },
            Some("x86_64-pc-windows-msvc"),
        );
        assert!(!ok, "the mutated header must not build");
        assert!(
            diagnostics.contains("mismatched types") || diagnostics.contains("E0308"),
            "{diagnostics}"
        );
    }
}
