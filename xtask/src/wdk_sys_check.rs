//! `cargo xtask wdk-sys-check`: compiles `wsk-sys` with its `wdk-sys` feature, and `wsk` over
//! it, for both Windows targets.
//!
//! The crates are built from a scratch workspace (under `target/wdk-sys-check`) whose probe
//! crate depends on `wsk-sys` with the feature and on `wsk` (which the feature then applies to),
//! and glob-imports `wdk_sys` and `wsk_sys` together, naming items both define (a name defined
//! twice would be ambiguous and fail the build).
//!
//! By default `wdk-sys` is the stand-in of `xtask/wdk-sys-stand-in` (see its README), through
//! `[patch.crates-io]`, built `--offline` (`cargo check` needs no WDK and no network) with clippy
//! over every local crate and warnings denied, so the feature's side of `wsk-sys` and `wsk`
//! keeps the default build's lints. Before the build, [`compare_stand_in`] checks that every
//! item of the stand-in is what wdk-sys's generator makes of the same declarations. With
//! `--real` (Windows with the WDK), the probe builds against wdk-sys 0.5 from crates.io
//! instead. Then the windows-drivers-rs example (`wsk-examples/wdk-echo-server`) is
//! type-checked with the stand-ins of `xtask/wdk-stand-ins` in place of wdk-build, wdk,
//! wdk-alloc and wdk-panic (the Windows workflow builds it for real with cargo-wdk).

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
    if !real {
        compare_stand_in()?;
    }
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
            // Clippy over every crate of the build, warnings denied: the feature's side of
            // `wsk-sys` and `wsk` (code no other build compiles) is held to the lints of the
            // default one. Registry crates are capped by cargo as always.
            cargo
                .arg("--offline")
                .env("RUSTC_WRAPPER", clippy_driver()?)
                .env("RUSTFLAGS", "-D warnings");
        }
        cargo.env("CARGO_TARGET_DIR", scratch.join("target"));
        run(&mut cargo)?;
    }
    if !real {
        check_windows_drivers_rs_example(&root)?;
    }
    Ok(())
}

/// The windows-drivers-rs example (`wsk-examples/wdk-echo-server`, a package of its own that
/// the Windows workflow builds with `cargo wdk build`), type-checked for both Windows targets
/// with the stand-ins: a copy of its manifest whose `[patch.crates-io]` puts the wdk-sys
/// stand-in and those of `xtask/wdk-stand-ins` (wdk-build, wdk, wdk-alloc, wdk-panic) in place
/// of the real crates, which need the WDK. Its sources are used where they are.
fn check_windows_drivers_rs_example(root: &Path) -> Result<()> {
    let example = root.join("wsk-examples").join("wdk-echo-server");
    let scratch = root.join("target").join("wdk-example-check");
    fs::create_dir_all(&scratch)?;
    let mut manifest: toml::Table = fs::read_to_string(example.join("Cargo.toml"))?.parse()?;
    let package = manifest
        .get_mut("package")
        .and_then(|p| p.as_table_mut())
        .ok_or("wdk-echo-server: no [package]")?;
    package.insert("build".into(), toml_path(&example.join("build.rs")).into());
    let lib = manifest
        .get_mut("lib")
        .and_then(|l| l.as_table_mut())
        .ok_or("wdk-echo-server: no [lib]")?;
    lib.insert(
        "path".into(),
        toml_path(&example.join("src").join("lib.rs")).into(),
    );
    let wsk = manifest
        .get_mut("dependencies")
        .and_then(|d| d.get_mut("wsk"))
        .and_then(|w| w.as_table_mut())
        .ok_or("wdk-echo-server: no wsk dependency")?;
    wsk.insert("path".into(), toml_path(&root.join("wsk")).into());
    let mut patch = toml::Table::new();
    let stand_in = |dir: PathBuf| -> toml::Value {
        let mut table = toml::Table::new();
        table.insert("path".into(), toml_path(&dir).into());
        table.into()
    };
    patch.insert(
        "wdk-sys".into(),
        stand_in(root.join("xtask/wdk-sys-stand-in")),
    );
    for name in ["wdk-build", "wdk", "wdk-alloc", "wdk-panic"] {
        patch.insert(
            name.into(),
            stand_in(root.join("xtask/wdk-stand-ins").join(name)),
        );
    }
    let mut crates_io = toml::Table::new();
    crates_io.insert("crates-io".into(), patch.into());
    manifest.insert("patch".into(), crates_io.into());
    write_if_changed(&scratch.join("Cargo.toml"), &toml::to_string(&manifest)?)?;
    // Resolved afresh against the stand-ins (a lock from an earlier run may name the real
    // crates' versions, which the patches would then not replace).
    match fs::remove_file(scratch.join("Cargo.lock")) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
        _ => {}
    }
    // The example's own build configuration (`+crt-static`) comes with it.
    fs::create_dir_all(scratch.join(".cargo"))?;
    fs::copy(
        example.join(".cargo").join("config.toml"),
        scratch.join(".cargo").join("config.toml"),
    )?;
    for target in DRIVER_TARGETS {
        let mut cargo =
            std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cargo
            .current_dir(&scratch)
            .args(["check", "--offline", "--target", target])
            .env("CARGO_TARGET_DIR", scratch.join("target"))
            .env("RUSTC_WRAPPER", clippy_driver()?)
            .env("RUSTFLAGS", "-D warnings");
        run(&mut cargo)?;
    }
    eprintln!("xtask: the windows-drivers-rs example type-checks against the stand-ins");
    Ok(())
}

/// The `clippy-driver` of the toolchain that runs xtask (beside its `cargo`).
fn clippy_driver() -> Result<PathBuf> {
    let cargo = PathBuf::from(std::env::var_os("CARGO").ok_or("CARGO is not set")?);
    let driver = cargo.with_file_name(format!("clippy-driver{}", std::env::consts::EXE_SUFFIX));
    if driver.is_file() {
        Ok(driver)
    } else {
        Err(format!(
            "{} not found: install clippy for this toolchain (rustup component add clippy)",
            driver.display()
        )
        .into())
    }
}

fn write_probe(root: &Path, scratch: &Path, real: bool) -> Result<()> {
    fs::create_dir_all(scratch.join("src"))?;
    let path = |dir: &str| -> String { toml_path(&root.join(dir)) };
    let mut manifest = format!(
        "[package]\nname = \"wdk-sys-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\npath = \"src/lib.rs\"\n\n\
         [dependencies]\n\
         wsk-sys = {{ path = \"{}\", features = [\"wdk-sys\"] }}\n\
         wsk = {{ path = \"{}\" }}\n\
         wdk-sys = \"0.5\"\n\n\
         [workspace]\n",
        path("wsk-sys"),
        path("wsk"),
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
/// globs; `wsk` is built as its dependency.
const PROBE: &str = r#"//! wdk-sys feature probe.
#![no_std]
#![allow(unused_imports, dead_code)]
use wsk as _;
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

/// Compares the stand-in's items with what wdk-sys 0.5's generator makes of the same
/// declarations: bindgen with `wdk-build` 0.5's settings (see [`wdk_builder`]) run over
/// `wsk-sys`'s kernel base headers and over `wdk_declarations.h` (the WDK's own form of the
/// values and enumerations those headers declare otherwise), split as `wdk-sys` splits it
/// (types and constants at the root, routines in `ntddk`), for both architectures. Every item
/// the stand-in defines must be
/// one the generation produces — with the same type, signature, ABI and value — or one of the
/// few `wdk-sys` writes by hand ([`HAND_WRITTEN`]) or that mirror bindgen's naming of the
/// WDK's anonymous members (`<tag>__bindgen_ty_N`, whose `<tag>` must be generated).
pub fn compare_stand_in() -> Result<()> {
    let env = crate::python_env::PythonEnv::ensure()?;
    // SAFETY: xtask sets the variable before any thread is spawned; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("LIBCLANG_PATH", env.libclang_dir()?) };
    let path = workspace_root().join(STAND_IN);
    let problems = differences(&generate_all()?, &fs::read_to_string(&path)?)?;
    if !problems.is_empty() {
        return Err(format!(
            "{}: the wdk-sys stand-in differs from what wdk-sys's generator makes of the same \
             declarations:\n  {}",
            path.display(),
            problems.join("\n  ")
        )
        .into());
    }
    eprintln!("xtask: the wdk-sys stand-in matches wdk-sys's generation of the kernel base");
    Ok(())
}

/// The stand-in's source, from the workspace root.
const STAND_IN: &str = "xtask/wdk-sys-stand-in/src/lib.rs";

/// The generation for each architecture.
fn generate_all() -> Result<Vec<(crate::bindings::Arch, Generated)>> {
    crate::bindings::ARCHES
        .into_iter()
        .map(|arch| Ok((arch, Generated::new(arch)?)))
        .collect()
}

/// What differs between the stand-in's source `stand_in` and each generation.
fn differences(
    generations: &[(crate::bindings::Arch, Generated)],
    stand_in: &str,
) -> Result<Vec<String>> {
    let stand_in = syn::parse_file(stand_in)?;
    let mut problems = Vec::new();
    for (arch, generated) in generations {
        for problem in generated.compare(&stand_in) {
            problems.push(format!("{}: {problem}", arch.triple));
        }
    }
    Ok(problems)
}

/// Items of the stand-in that `wdk-sys` 0.5 writes by hand rather than generates: the
/// `STATUS_*` and `POOL_FLAG_*` values typed `NTSTATUS` and `POOL_FLAGS` (its
/// `constants.rs`, as bindgen cannot evaluate their casts and suffixes) and the `NT_*`
/// predicates (its `lib.rs`). Their values are still compared with the headers'.
const HAND_WRITTEN: &[&str] = &["NT_SUCCESS", "NT_INFORMATION", "NT_WARNING", "NT_ERROR"];

/// Structures the WDK defines (`wdm.h`) and `wsk-sys`'s headers leave opaque (nothing of
/// them is read): bindgen gives the WDK's definitions, plain C data, [`PLAIN_DATA`]'s traits.
const COMPLETE_IN_WDK: &[&str] = &["_DEVICE_OBJECT", "_FILE_OBJECT"];

/// The traits bindgen (`derive_default`, its default `derive_copy`) gives a structure of
/// plain C data.
const PLAIN_DATA: &[&str] = &["Clone", "Copy", "Default"];

/// The traits compared: those of [`PLAIN_DATA`], and `Debug` of an opaque structure (bindgen's
/// only derive for it). `Debug` of other structures follows from their members, which the
/// stand-in spells out only in part (and where `wsk-sys`'s headers name the WDK's anonymous
/// members): not compared.
fn compared_traits(
    traits: std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let opaque = traits.len() == 1 && traits.contains("Debug");
    traits
        .into_iter()
        .filter(|t| opaque || PLAIN_DATA.contains(&t.as_str()))
        .collect()
}

/// Items of the stand-in that are its own, not `wdk-sys`'s: the filler of members it does not
/// spell out, and the macro that writes bindgen's zero-filled `Default` impls.
const OWN: &[&str] = &["Filler", "zeroed_default"];

/// bindgen with the settings of `wdk-build` 0.5 (`BuilderExt::wdk_default`, the version
/// `wdk-sys` 0.5 builds with), that decide the items' shapes: `core` types, `Default` for every
/// structure, enumerations as modules of constants, the deprecated pool routines left out,
/// `#[must_use]` on `NTSTATUS`, the `"C"` ABI bindgen gives the WDK's routines (no ABI
/// override), `core::ffi` integer types (no ctypes prefix), Rust 1.85 (`wdk-sys`'s
/// `rust-version`). The clang arguments are `wsk-sys`'s for its own headers, with the
/// Microsoft extensions `wdk-build` also enables.
fn wdk_builder(arch: crate::bindings::Arch, source: Source) -> Result<bindgen::Builder> {
    let include = crate::bindings::include_dir();
    let (header, allowed): (PathBuf, &[&str]) = match source {
        Source::WskSys => (
            include.join("wsk_sys.h"),
            &["km_types.h", "km_ntstatus.h", "km_io.h"],
        ),
        Source::WdkDeclarations => (
            workspace_root().join("xtask/wdk-sys-stand-in/wdk_declarations.h"),
            &["wdk_declarations.h"],
        ),
    };
    let mut builder = bindgen::Builder::default()
        .use_core()
        .derive_default(true)
        .generate_cstr(true)
        .detect_include_paths(false)
        .must_use_type("NTSTATUS")
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .rust_target(bindgen::RustTarget::stable(85, 0).map_err(|e| e.to_string())?)
        .clang_args(crate::bindings::clang_args(arch, &include))
        .header(header.display().to_string());
    for item in [
        "ExAllocatePoolWithTag",
        "ExAllocatePoolWithQuotaTag",
        "ExAllocatePoolWithTagPriority",
        "ExAllocatePool",
    ] {
        builder = builder.blocklist_item(item);
    }
    for header in allowed {
        builder = builder.allowlist_file(format!(".*[/\\\\]{}", header.replace('.', "\\.")));
    }
    Ok(builder)
}

/// What a generation reads.
#[derive(Clone, Copy)]
enum Source {
    /// `wsk-sys`'s kernel base headers (`km_types.h`, `km_ntstatus.h`, `km_io.h`): what
    /// `wsk-sys` takes from `wdk-sys` with the feature.
    WskSys,
    /// `wdk_declarations.h`: the WDK's own form of the items `wsk-sys`'s headers declare
    /// otherwise (`#define` values, enumerations) or not at all.
    WdkDeclarations,
}

/// The generation for one architecture: the root (`types.rs` and `constants.rs`: types and
/// variables) and `ntddk` (everything else: the routines), parsed. `XTASK_WDK_SYS_DUMP=<dir>`
/// writes each generated text there, to read what the stand-in is compared with.
struct Generated {
    root: Vec<syn::Item>,
    ntddk: Vec<syn::Item>,
    /// Values `wdk_declarations.h` and `wsk-sys`'s headers both declare, that differ.
    conflicts: Vec<String>,
}

impl Generated {
    fn new(arch: crate::bindings::Arch) -> Result<Self> {
        use bindgen::CodegenConfig;
        let generate = |source: Source, config: CodegenConfig| -> Result<Vec<syn::Item>> {
            let text = wdk_builder(arch, source)?
                .with_codegen_config(config)
                .generate()
                .map_err(|e| format!("bindgen failed for {}: {e}", arch.triple))?
                .to_string();
            if let Some(dir) = std::env::var_os("XTASK_WDK_SYS_DUMP") {
                let source = match source {
                    Source::WskSys => "wsk-sys",
                    Source::WdkDeclarations => "wdk_declarations",
                };
                let part = if config.contains(CodegenConfig::TYPES) {
                    "root"
                } else {
                    "ntddk"
                };
                let name = format!("{}-{source}-{part}.rs", arch.dir);
                fs::write(Path::new(&dir).join(name), &text)?;
            }
            Ok(syn::parse_file(&text)?.items)
        };
        let root = CodegenConfig::TYPES | CodegenConfig::VARS;
        let (own, wdk) = (
            generate(Source::WskSys, root)?,
            generate(Source::WdkDeclarations, root)?,
        );
        // The WDK's form wins over wsk-sys's for the names it declares.
        let wdk_names: std::collections::HashSet<String> =
            wdk.iter().filter_map(item_name).collect();
        let mut conflicts = Vec::new();
        let own_values = Index::of(&own).values;
        for (name, value) in &Index::of(&wdk).values {
            if let Some(own) = own_values.get(name)
                && own != value
            {
                conflicts.push(format!(
                    "{name}: wdk_declarations.h says {value:?}, wsk-sys's headers {own:?}"
                ));
            }
        }
        let mut root_items: Vec<syn::Item> = own
            .into_iter()
            .filter(|item| item_name(item).is_none_or(|name| !wdk_names.contains(&name)))
            .collect();
        root_items.extend(wdk);
        let mut ntddk = generate(Source::WskSys, root.complement())?;
        ntddk.extend(generate(Source::WdkDeclarations, root.complement())?);
        Ok(Generated {
            root: root_items,
            ntddk,
            conflicts,
        })
    }

    /// What differs between the stand-in and the generation.
    fn compare(&self, stand_in: &syn::File) -> Vec<String> {
        let aliases = Aliases::of(&self.root);
        let generated = Index::of(&self.root);
        let mut problems = self.conflicts.clone();
        for item in &stand_in.items {
            match item {
                syn::Item::Type(alias) => {
                    let name = alias.ident.to_string();
                    match generated.types.get(&name) {
                        Some(theirs) => {
                            let (ours, theirs) =
                                (aliases.resolve(&alias.ty), aliases.resolve(theirs));
                            if ours != theirs {
                                problems
                                    .push(format!("type {name}: `{ours}`, generated `{theirs}`"));
                            }
                        }
                        None => problems.push(format!("type {name}: not generated")),
                    }
                }
                syn::Item::Const(constant) => {
                    let name = constant.ident.to_string();
                    problems.extend(compare_const(&name, constant, &generated, &aliases));
                }
                syn::Item::Mod(module) if module.ident == "ntddk" => {
                    problems.extend(self.compare_routines(module, &aliases));
                }
                syn::Item::Mod(module) => {
                    problems.extend(compare_enum(module, &generated, &aliases));
                }
                syn::Item::Use(item) => {
                    let text = use_text(item);
                    if !generated.uses.contains(&text) {
                        problems.push(format!("`{text}`: not generated"));
                    }
                }
                syn::Item::Struct(syn::ItemStruct { ident, .. })
                | syn::Item::Union(syn::ItemUnion { ident, .. }) => {
                    let name = ident.to_string();
                    if OWN.contains(&name.as_str()) {
                        continue;
                    }
                    let tag = name.split("__bindgen_ty_").next().unwrap_or(&name);
                    let ours = traits(&stand_in.items, &name);
                    match generated.records.get(tag) {
                        None => problems.push(format!("structure {name}: {tag} not generated")),
                        Some(generated_members) if tag == name => {
                            problems.extend(compare_members(
                                &name,
                                item,
                                generated_members,
                                &aliases,
                            ));
                            let theirs = if COMPLETE_IN_WDK.contains(&name.as_str()) {
                                PLAIN_DATA.iter().map(|t| t.to_string()).collect()
                            } else {
                                compared_traits(traits(&self.root, &name))
                            };
                            let ours = compared_traits(ours);
                            if ours != theirs {
                                problems.push(format!(
                                    "structure {name}: implements {ours:?}, generated {theirs:?}"
                                ));
                            }
                        }
                        // An anonymous member's type: plain data, as bindgen makes it.
                        Some(_) => {
                            if !["Copy", "Clone", "Default"]
                                .iter()
                                .all(|t| ours.contains(*t))
                            {
                                problems.push(format!(
                                    "structure {name}: implements {ours:?}, bindgen gives an \
                                     anonymous member's type Copy, Clone and Default"
                                ));
                            }
                        }
                    }
                }
                syn::Item::Fn(function) => {
                    let name = function.sig.ident.to_string();
                    if !HAND_WRITTEN.contains(&name.as_str()) {
                        problems.push(format!("fn {name}: neither generated nor hand-written"));
                    }
                }
                syn::Item::Macro(syn::ItemMacro {
                    ident: Some(ident), ..
                }) if OWN.contains(&ident.to_string().as_str()) => {}
                syn::Item::Macro(_) | syn::Item::Impl(_) => {}
                other => problems.push(format!(
                    "`{}`: an item of a kind the generation does not make",
                    quote::ToTokens::to_token_stream(other)
                )),
            }
        }
        problems
    }

    /// The stand-in's `ntddk` routines against the generated ones: name, parameters, return
    /// type and the ABI of their block.
    fn compare_routines(&self, module: &syn::ItemMod, aliases: &Aliases) -> Vec<String> {
        let mut generated = std::collections::HashMap::new();
        for item in &self.ntddk {
            if let syn::Item::ForeignMod(block) = item {
                for item in &block.items {
                    if let syn::ForeignItem::Fn(function) = item {
                        generated.insert(function.sig.ident.to_string(), (block, function));
                    }
                }
            }
        }
        let mut problems = Vec::new();
        let items = module.content.as_ref().map(|(_, items)| items.as_slice());
        for item in items.unwrap_or_default() {
            let syn::Item::ForeignMod(block) = item else {
                continue;
            };
            for item in &block.items {
                let syn::ForeignItem::Fn(function) = item else {
                    problems.push("ntddk: an extern item other than a routine".into());
                    continue;
                };
                let name = function.sig.ident.to_string();
                let Some((their_block, theirs)) = generated.get(&name) else {
                    problems.push(format!("ntddk::{name}: not generated"));
                    continue;
                };
                let abi = |block: &syn::ItemForeignMod| {
                    quote::ToTokens::to_token_stream(&block.abi).to_string()
                };
                if abi(block) != abi(their_block) {
                    problems.push(format!(
                        "ntddk::{name}: ABI {}, generated {}",
                        abi(block),
                        abi(their_block)
                    ));
                }
                let (ours, theirs) = (
                    aliases.signature(&function.sig),
                    aliases.signature(&theirs.sig),
                );
                if ours != theirs {
                    problems.push(format!("ntddk::{name}: `{ours}`, generated `{theirs}`"));
                }
            }
        }
        problems
    }
}

/// A constant against the generation: its type and value. The `NTSTATUS` and `POOL_FLAGS`
/// values are ones `wdk-sys` writes by hand with those types ([`HAND_WRITTEN`]); their values
/// are still the generated ones.
fn compare_const(
    name: &str,
    constant: &syn::ItemConst,
    generated: &Index,
    aliases: &Aliases,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ours = aliases.resolve(&constant.ty);
    let wanted = if name.starts_with("STATUS_") {
        Some(aliases.resolve(&syn::parse_quote!(NTSTATUS)))
    } else if name.starts_with("POOL_FLAG_") {
        Some(aliases.resolve(&syn::parse_quote!(POOL_FLAGS)))
    } else {
        generated
            .const_types
            .get(name)
            .map(|ty| aliases.resolve(ty))
    };
    if let Some(wanted) = wanted
        && ours != wanted
    {
        problems.push(format!("const {name}: type `{ours}`, generated `{wanted}`"));
    }
    match generated.values.get(name) {
        Some(theirs) if *theirs == literal(&constant.expr) => {}
        Some(theirs) => problems.push(format!(
            "const {name}: value {:?}, generated {theirs:?}",
            literal(&constant.expr)
        )),
        None => problems.push(format!("const {name}: not generated")),
    }
    problems
}

/// An enumeration module (`_POOL_TYPE`) against the generated one: its `Type` and the values
/// of the members the stand-in lists.
fn compare_enum(module: &syn::ItemMod, generated: &Index, aliases: &Aliases) -> Vec<String> {
    let name = module.ident.to_string();
    let Some(theirs) = generated.modules.get(&name) else {
        return vec![format!("mod {name}: not generated")];
    };
    let theirs = Index::of(theirs);
    let mut problems = Vec::new();
    let items = module.content.as_ref().map(|(_, items)| items.as_slice());
    for item in items.unwrap_or_default() {
        match item {
            syn::Item::Type(alias) if alias.ident == "Type" => {
                let ours = aliases.resolve(&alias.ty);
                let generated = theirs.types.get("Type").map(|ty| aliases.resolve(ty));
                if generated.as_deref() != Some(ours.as_str()) {
                    problems.push(format!("{name}::Type: `{ours}`, generated {generated:?}"));
                }
            }
            syn::Item::Const(constant) => {
                let member = constant.ident.to_string();
                if quote::ToTokens::to_token_stream(&constant.ty).to_string() != "Type" {
                    problems.push(format!("{name}::{member}: not of the module's `Type`"));
                }
                let value = literal(&constant.expr);
                let generated = theirs.values.get(&member).copied().flatten();
                if value.is_none() || generated != value {
                    problems.push(format!(
                        "{name}::{member}: value {value:?}, generated {generated:?}"
                    ));
                }
            }
            other => problems.push(format!(
                "{name}: `{}` is not an enumeration member",
                quote::ToTokens::to_token_stream(other)
            )),
        }
    }
    problems
}

/// The traits a list of items gives the structure `name`: derived, implemented, or through
/// the stand-in's `zeroed_default!`.
fn traits(items: &[syn::Item], name: &str) -> std::collections::BTreeSet<String> {
    let mut traits = std::collections::BTreeSet::new();
    for item in items {
        match item {
            syn::Item::Struct(syn::ItemStruct { ident, attrs, .. })
            | syn::Item::Union(syn::ItemUnion { ident, attrs, .. })
                if ident == name =>
            {
                for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
                    let _ = attr.parse_nested_meta(|meta| {
                        if let Some(ident) = meta.path.get_ident() {
                            traits.insert(ident.to_string());
                        }
                        Ok(())
                    });
                }
            }
            syn::Item::Impl(syn::ItemImpl {
                trait_: Some((path, _)),
                self_ty,
                ..
            }) if quote::ToTokens::to_token_stream(self_ty).to_string() == name => {
                if let Some(last) = path.segments.last() {
                    traits.insert(last.ident.to_string());
                }
            }
            syn::Item::Macro(syn::ItemMacro { mac, .. })
                if mac.path.is_ident("zeroed_default")
                    && mac
                        .tokens
                        .clone()
                        .into_iter()
                        .any(|t| t.to_string() == name) =>
            {
                traits.insert("Default".into());
            }
            _ => {}
        }
    }
    traits
}

/// The named members of a structure or union and their types.
fn members<'a>(fields: impl Iterator<Item = &'a syn::Field>) -> Vec<(String, syn::Type)> {
    fields
        .filter_map(|field| Some((field.ident.as_ref()?.to_string(), field.ty.clone())))
        .collect()
}

/// The members the stand-in spells out against the generated structure's: each must be a
/// generated member of the same name and type. Not compared: the WDK's anonymous members
/// (`__bindgen_anon_N`, which `wsk-sys`'s headers name), members whose type is one of theirs
/// (`<tag>__bindgen_ty_N`), and fillers.
fn compare_members(
    name: &str,
    item: &syn::Item,
    generated: &[(String, syn::Type)],
    aliases: &Aliases,
) -> Vec<String> {
    let ours = match item {
        syn::Item::Struct(record) => members(record.fields.iter()),
        syn::Item::Union(record) => members(record.fields.named.iter()),
        _ => return Vec::new(),
    };
    let mut problems = Vec::new();
    for (member, ty) in ours {
        let spelled = quote::ToTokens::to_token_stream(&ty).to_string();
        if member.starts_with("__bindgen_anon_")
            || spelled.contains("__bindgen_ty_")
            || spelled.starts_with("Filler")
        {
            continue;
        }
        match generated.iter().find(|(theirs, _)| *theirs == member) {
            Some((_, theirs)) => {
                let (ours, theirs) = (aliases.resolve(&ty), aliases.resolve(theirs));
                if ours != theirs {
                    problems.push(format!("{name}::{member}: `{ours}`, generated `{theirs}`"));
                }
            }
            None => problems.push(format!("{name}::{member}: not a generated member")),
        }
    }
    problems
}

/// The name an item defines, if it is one the root indexes.
fn item_name(item: &syn::Item) -> Option<String> {
    match item {
        syn::Item::Type(alias) => Some(alias.ident.to_string()),
        syn::Item::Const(constant) => Some(constant.ident.to_string()),
        syn::Item::Struct(record) => Some(record.ident.to_string()),
        syn::Item::Union(record) => Some(record.ident.to_string()),
        syn::Item::Mod(module) => Some(module.ident.to_string()),
        _ => None,
    }
}

/// A `use` item as text, without its attributes (bindgen copies the enumeration's comment).
fn use_text(item: &syn::ItemUse) -> String {
    let mut item = item.clone();
    item.attrs.clear();
    quote::ToTokens::to_token_stream(&item).to_string()
}

/// A constant's value as an integer, whatever its literal's suffix or sign.
fn literal(expr: &syn::Expr) -> Option<i128> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => int.base10_parse::<i128>().ok(),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => literal(expr).map(|value| -value),
        syn::Expr::Paren(syn::ExprParen { expr, .. }) => literal(expr),
        _ => None,
    }
}

/// The names a list of items defines, by kind.
#[derive(Default)]
struct Index {
    types: std::collections::HashMap<String, syn::Type>,
    values: std::collections::HashMap<String, Option<i128>>,
    const_types: std::collections::HashMap<String, syn::Type>,
    /// Structures and unions, with their named members and types.
    records: std::collections::HashMap<String, Vec<(String, syn::Type)>>,
    modules: std::collections::HashMap<String, Vec<syn::Item>>,
    uses: std::collections::HashSet<String>,
}

impl Index {
    fn of(items: &[syn::Item]) -> Self {
        let mut index = Index::default();
        for item in items {
            match item {
                syn::Item::Type(alias) => {
                    index
                        .types
                        .insert(alias.ident.to_string(), (*alias.ty).clone());
                }
                syn::Item::Const(constant) => {
                    index
                        .values
                        .insert(constant.ident.to_string(), literal(&constant.expr));
                    index
                        .const_types
                        .insert(constant.ident.to_string(), (*constant.ty).clone());
                }
                syn::Item::Struct(syn::ItemStruct { ident, fields, .. }) => {
                    index
                        .records
                        .insert(ident.to_string(), members(fields.iter()));
                }
                syn::Item::Union(syn::ItemUnion { ident, fields, .. }) => {
                    index
                        .records
                        .insert(ident.to_string(), members(fields.named.iter()));
                }
                syn::Item::Mod(module) => {
                    let items = module.content.as_ref().map(|(_, items)| items.clone());
                    index
                        .modules
                        .insert(module.ident.to_string(), items.unwrap_or_default());
                }
                syn::Item::Use(item) => {
                    index.uses.insert(use_text(item));
                }
                _ => {}
            }
        }
        index
    }
}

/// The generated type aliases, to compare types by what they are rather than how they are
/// spelled (`PDEVICE_OBJECT` and `*mut _DEVICE_OBJECT` are one type).
struct Aliases(std::collections::HashMap<String, syn::Type>);

impl Aliases {
    fn of(root: &[syn::Item]) -> Self {
        Aliases(Index::of(root).types)
    }

    /// `ty` with every alias replaced by what it stands for, as text.
    fn resolve(&self, ty: &syn::Type) -> String {
        let mut ty = ty.clone();
        syn::visit_mut::VisitMut::visit_type_mut(&mut Resolver(&self.0, 0), &mut ty);
        normalise(&quote::ToTokens::to_token_stream(&ty).to_string())
    }

    /// A routine's parameter names and resolved types, and its resolved return type.
    fn signature(&self, sig: &syn::Signature) -> String {
        let mut sig = sig.clone();
        syn::visit_mut::VisitMut::visit_signature_mut(&mut Resolver(&self.0, 0), &mut sig);
        for input in &mut sig.inputs {
            if let syn::FnArg::Typed(pat) = input {
                pat.attrs.clear();
            }
        }
        normalise(&quote::ToTokens::to_token_stream(&sig).to_string())
    }
}

/// Replaces aliases by their definitions, to a bounded depth (the WDK's aliases are not
/// recursive, but a pointer to a structure names the structure, which is no alias).
struct Resolver<'a>(&'a std::collections::HashMap<String, syn::Type>, usize);

impl syn::visit_mut::VisitMut for Resolver<'_> {
    fn visit_type_mut(&mut self, ty: &mut syn::Type) {
        if let syn::Type::Path(path) = ty
            && path.qself.is_none()
            && path.path.segments.len() == 1
            && let Some(definition) = self.0.get(&path.path.segments[0].ident.to_string())
            && self.1 < 16
        {
            *ty = definition.clone();
            self.1 += 1;
            self.visit_type_mut(ty);
            self.1 -= 1;
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// Token text without spacing, and with paths spelled one way (`::core::ffi::c_ulong` and
/// `core::ffi::c_ulong`, `::core::option::Option` and `Option`).
fn normalise(text: &str) -> String {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    text.replace(",>", ">")
        .replace(",)", ")")
        .replace("::core::option::Option", "Option")
        .replace("core::option::Option", "Option")
        .replace("::core::", "core::")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check passes on the stand-in as committed, and reports each way an item can differ
    /// from what wdk-sys's generator makes: a type, an ABI, a parameter, a value, an item or a
    /// member it does not make, a member's type, a missing trait.
    #[test]
    fn the_stand_in_matches_and_every_kind_of_difference_is_reported() {
        crate::bindings::prepare_libclang().unwrap();
        let generations = generate_all().unwrap();
        let committed = fs::read_to_string(workspace_root().join(STAND_IN)).unwrap();
        let problems = differences(&generations, &committed).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");

        let mutations: &[(&str, &str, &str)] = &[
            (
                "pub const DISPATCH_LEVEL: u32 = 2;",
                "pub const DISPATCH_LEVEL: KIRQL = 2;",
                "const DISPATCH_LEVEL: type `core::ffi::c_uchar`, generated `u32`",
            ),
            (
                "pub const STATUS_PENDING: NTSTATUS = 259_i32;",
                "pub const STATUS_PENDING: NTSTATUS = 258_i32;",
                "const STATUS_PENDING: value",
            ),
            (
                "    pub const UserMode: Type = 1;",
                "    pub const UserMode: Type = 2;",
                "_MODE::UserMode: value Some(2), generated Some(1)",
            ),
            (
                "unsafe extern \"C\" {",
                "unsafe extern \"system\" {",
                "ntddk::IoFreeIrp: ABI extern \"system\", generated extern \"C\"",
            ),
            (
                "pub fn IoFreeMdl(Mdl: PMDL);",
                "pub fn IoFreeMdl(Mdl: PIRP);",
                "ntddk::IoFreeMdl: `fnIoFreeMdl(Mdl:*mut_IRP)`",
            ),
            (
                "pub fn IoFreeMdl(Mdl: PMDL);",
                "pub fn IoFreeMdl(Mdl: PMDL);\n        pub fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;",
                "ntddk::ExAllocatePoolWithTag: not generated",
            ),
            (
                "unsafe extern \"C\" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP, Context: PVOID)",
                "unsafe extern \"system\" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP, Context: PVOID)",
                "type PIO_COMPLETION_ROUTINE",
            ),
            (
                "pub type KIRQL = UCHAR;",
                "pub type KIRQL = UCHAR;\npub const NOT_IN_THE_WDK: u32 = 1;",
                "const NOT_IN_THE_WDK: not generated",
            ),
            (
                "    pub ByteCount: ULONG,",
                "    pub ByteCount: USHORT,",
                "_MDL::ByteCount: `core::ffi::c_ushort`, generated `core::ffi::c_ulong`",
            ),
            (
                "    pub MappedSystemVa: PVOID,",
                "    pub MappedVa: PVOID,",
                "_MDL::MappedVa: not a generated member",
            ),
            (
                "    _KEVENT,\n",
                "",
                "structure _KEVENT: implements {\"Clone\", \"Copy\"}",
            ),
        ];
        for (from, to, expected) in mutations {
            assert!(
                committed.contains(from),
                "the stand-in no longer has `{from}`"
            );
            let mutated = committed.replacen(from, to, 1);
            let problems = differences(&generations, &mutated).unwrap();
            assert!(
                problems.iter().any(|problem| problem.contains(expected)),
                "`{from}` -> `{to}`: expected a difference containing `{expected}`, got \
                 {problems:#?}"
            );
        }
    }
}
