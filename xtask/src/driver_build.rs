//! `cargo xtask build-driver NAME|--all [--release] [--target x86_64|aarch64]`: cross-builds
//! example drivers into `.sys` images, with no WDK.
//!
//! The crate is compiled as a static library for `<arch>-pc-windows-msvc` with
//! `panic = "abort"`, then linked by the toolchain's `rust-lld` in lld-link flavour as a
//! native-subsystem driver whose entry point is `DriverEntry`, against import libraries made
//! (by the same `rust-lld`, in lib mode) from the project's lists of ntoskrnl.exe, NETIO.SYS
//! and cng.sys exports (`xtask/kernel-exports/*.def`). Next to the image go an INF that installs
//! it as a demand-start kernel service with its default parameters, and — when
//! `osslsigncode` is installed — a test-signed copy.
//!
//! Output: `target/drivers/<target>/<profile>/NAME.sys`, its symbols `NAME.pdb` (the image's
//! CodeView record names it), `NAME.inf` (its `DriverVer` stamped per build) and
//! `test-signed/NAME.sys`; and the installable package `package/NAME/`: the test-signed
//! image, the INF and the PDB.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::examples::{Example, select};
use crate::{Result, run, workspace_root};

/// A Windows architecture drivers are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    /// x64 (`x86_64-pc-windows-msvc`).
    X86_64,
    /// ARM64 (`aarch64-pc-windows-msvc`).
    Aarch64,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// Parses `x86_64`/`x64`/`amd64` or `aarch64`/`arm64` (or the full target triple).
    pub fn parse(text: &str) -> Result<Arch> {
        match text {
            "x86_64" | "x64" | "amd64" | "x86_64-pc-windows-msvc" => Ok(Arch::X86_64),
            "aarch64" | "arm64" | "aarch64-pc-windows-msvc" => Ok(Arch::Aarch64),
            other => Err(format!("unknown target `{other}` (x86_64 or aarch64)").into()),
        }
    }

    /// The Rust target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-pc-windows-msvc",
            Arch::Aarch64 => "aarch64-pc-windows-msvc",
        }
    }

    /// The linker's `/MACHINE` value.
    fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "X64",
            Arch::Aarch64 => "ARM64",
        }
    }

    /// The INF platform decoration.
    fn inf_platform(self) -> &'static str {
        match self {
            Arch::X86_64 => "NTamd64",
            Arch::Aarch64 => "NTarm64",
        }
    }
}

/// How to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    /// The release profile (else dev).
    pub release: bool,
    /// The architecture.
    pub arch: Arch,
}

impl BuildOptions {
    /// The profile's name as in `target/`.
    pub fn profile(&self) -> &'static str {
        if self.release { "release" } else { "debug" }
    }

    /// Where the built drivers go.
    pub fn output_dir(&self) -> PathBuf {
        workspace_root()
            .join("target")
            .join("drivers")
            .join(self.arch.triple())
            .join(self.profile())
    }
}

/// A built driver.
#[derive(Clone, Debug)]
pub struct BuiltDriver {
    /// The image.
    pub sys: PathBuf,
    /// The test-signed copy, when `osslsigncode` is installed.
    pub signed: Option<PathBuf>,
}

/// Parses `NAME|--all [--release] [--target ARCH]...`: the examples, and the options
/// (several `--target`s build for each).
pub fn parse_args(args: &[String]) -> Result<(Vec<Example>, bool, Vec<Arch>)> {
    let (mut names, mut all, mut release, mut arches) = (Vec::new(), false, false, Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--all" => all = true,
            "--release" => release = true,
            "--target" => {
                let value = args.next().ok_or("--target needs a value")?;
                arches.push(Arch::parse(value)?);
            }
            option if option.starts_with('-') => {
                return Err(format!("unknown option `{option}`").into());
            }
            name => names.push(name.to_string()),
        }
    }
    if arches.is_empty() {
        arches.push(Arch::X86_64);
    }
    Ok((select(&names, all)?, release, arches))
}

/// `cargo xtask build-driver`.
pub fn command(args: &[String]) -> Result<()> {
    let (examples, release, arches) = parse_args(args)?;
    for arch in arches {
        let options = BuildOptions { release, arch };
        for example in &examples {
            let started = std::time::Instant::now();
            let built = build(example, &options)?;
            let size = std::fs::metadata(&built.sys)?.len();
            eprintln!(
                "xtask: built {} ({size} bytes, {:.1?}){}",
                built.sys.display(),
                started.elapsed(),
                built
                    .signed
                    .as_ref()
                    .map(|s| format!(", test-signed copy {}", s.display()))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Builds one example driver.
pub fn build(example: &Example, options: &BuildOptions) -> Result<BuiltDriver> {
    let arch = options.arch;
    crate::toolchain::ensure_driver_targets()?;
    // Cargo's own progress (not --quiet): the first build compiles every dependency for the
    // target, which takes a while.
    eprintln!(
        "xtask: compiling {} for {} ({})",
        example.package,
        arch.triple(),
        options.profile()
    );
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace_root())
        .args(["rustc", "--lib", "--crate-type", "staticlib"])
        .args(["-p", &example.package, "--target", arch.triple()])
        // No unwinding in a driver: a panic bug-checks (the runtime's panic handler).
        .env("CARGO_PROFILE_DEV_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        // Line tables and function names for the PDB in release builds too (the debug
        // information goes into the PDB, not the image): WinDbg symbolizes a crash in them.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "limited")
        // The driver's own flags only: a RUSTFLAGS from the caller's environment would
        // apply to the kernel build too.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if options.release {
        cargo.arg("--release");
    }
    run(&mut cargo)?;
    let library = workspace_root()
        .join("target")
        .join(arch.triple())
        .join(options.profile())
        .join(format!("{}.lib", example.crate_name()));
    if !library.is_file() {
        return Err(format!("cargo did not produce {}", library.display()).into());
    }

    // XTASK_IMPORT_LIBS: a directory holding other `ntoskrnl.lib`, `netio.lib` and `cng.lib`
    // (the WDK's `km\<arch>`, on the Windows CI job) to link against instead of the project's, into
    // the `wdk-libs` subdirectory: the image to compare with the one linked against the
    // project's export lists.
    let (import_dir, out_dir) = match std::env::var_os("XTASK_IMPORT_LIBS") {
        Some(dir) => (PathBuf::from(dir), options.output_dir().join("wdk-libs")),
        None => (import_libraries(arch)?, options.output_dir()),
    };
    std::fs::create_dir_all(&out_dir)?;
    let sys = out_dir.join(format!("{}.sys", example.driver_name()));
    let pdb = out_dir.join(format!("{}.pdb", example.driver_name()));
    let mut link = Command::new(rust_lld()?);
    link.args(["-flavor", "link"])
        .args([
            "/NOLOGO",
            "/DRIVER",
            "/SUBSYSTEM:NATIVE",
            "/ENTRY:DriverEntry",
            "/NODEFAULTLIB",
            "/RELEASE",
            "/DYNAMICBASE",
            "/NXCOMPAT",
            "/OPT:REF",
            "/OPT:ICF",
        ])
        .arg(format!("/MACHINE:{}", arch.machine()))
        .arg(format!("/LIBPATH:{}", import_dir.display()))
        .arg(format!("/OUT:{}", sys.display()))
        // The symbols, beside the image: the image's debug directory gets a CodeView (RSDS)
        // record with the PDB's GUID and age, naming the PDB by its file name only
        // (`/PDBALTPATH:%_PDB%`: no build machine path in the image). check-pe verifies it.
        .arg("/DEBUG")
        .arg(format!("/PDB:{}", pdb.display()))
        .arg("/PDBALTPATH:%_PDB%")
        // Reproducible: the time stamp and the PDB's GUID are hashes of the content.
        .arg("/Brepro")
        .arg(&library)
        .args(["ntoskrnl.lib", "netio.lib", "cng.lib"]);
    run(&mut link)?;

    let inf_path = out_dir.join(format!("{}.inf", example.driver_name()));
    std::fs::write(
        &inf_path,
        inf(example, arch, &driver_ver(&example.version)?),
    )?;
    let signed = test_sign(&sys)?;
    if let Some(signed) = &signed {
        package(signed, &inf_path, &pdb)?;
    }
    Ok(BuiltDriver { sys, signed })
}

/// The toolchain's `rust-lld`.
fn rust_lld() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = |args: &[&str]| -> Result<String> {
        let out = Command::new(&rustc)
            .args(args)
            .current_dir(workspace_root())
            .output()?;
        if !out.status.success() {
            return Err(format!("rustc {args:?} failed").into());
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    let sysroot = output(&["--print", "sysroot"])?;
    let host = output(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or("rustc -vV names no host")?;
    let lld = Path::new(sysroot.trim())
        .join("lib")
        .join("rustlib")
        .join(host)
        .join("bin")
        .join(if cfg!(windows) {
            "rust-lld.exe"
        } else {
            "rust-lld"
        });
    if !lld.is_file() {
        return Err(format!("the toolchain has no rust-lld at {}", lld.display()).into());
    }
    Ok(lld)
}

/// The project's export lists (`.def` files), one per kernel module.
pub fn export_lists() -> Vec<PathBuf> {
    let dir = workspace_root().join("xtask").join("kernel-exports");
    ["ntoskrnl", "netio", "cng"]
        .iter()
        .map(|stem| dir.join(format!("{stem}.def")))
        .collect()
}

/// Makes `ntoskrnl.lib`, `netio.lib` and `cng.lib` for `arch` from the export lists (when they
/// changed).
fn import_libraries(arch: Arch) -> Result<PathBuf> {
    let dir = workspace_root()
        .join("target")
        .join("drivers")
        .join("import-libs")
        .join(arch.triple());
    std::fs::create_dir_all(&dir)?;
    let lld = rust_lld()?;
    for def in export_lists() {
        let stem = def
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("bad .def name")?;
        let lib = dir.join(format!("{stem}.lib"));
        let fresh = match (std::fs::metadata(&lib), std::fs::metadata(&def)) {
            (Ok(l), Ok(d)) => l.modified()? >= d.modified()?,
            _ => false,
        };
        if fresh {
            continue;
        }
        run(Command::new(&lld)
            .args(["-flavor", "link", "/lib", "/NOLOGO"])
            .arg(format!("/MACHINE:{}", arch.machine()))
            .arg(format!("/DEF:{}", def.display()))
            .arg(format!("/OUT:{}", lib.display())))?;
    }
    Ok(dir)
}

/// The export names of a `.def` list.
pub fn def_exports(def: &Path) -> Result<(String, Vec<String>)> {
    let text = std::fs::read_to_string(def)?;
    let mut library = None;
    let mut exports = Vec::new();
    let mut in_exports = false;
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("LIBRARY") {
            library = Some(name.trim().to_string());
        } else if line == "EXPORTS" {
            in_exports = true;
        } else if in_exports {
            exports.push(line.split_whitespace().next().unwrap_or(line).to_string());
        }
    }
    let library = library.ok_or_else(|| format!("{} has no LIBRARY line", def.display()))?;
    Ok((library, exports))
}

/// The INF that installs the driver as a demand-start kernel service, with the default
/// parameters of its manifest in the service's `Parameters` key.
fn inf(example: &Example, arch: Arch, driver_ver: &str) -> String {
    let name = example.driver_name();
    let platform = arch.inf_platform();
    let description = example
        .metadata
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("wsk-rs example driver");
    let mut parameters = String::new();
    if let Some(table) = example
        .metadata
        .get("parameters")
        .and_then(|p| p.as_table())
    {
        for (key, value) in table {
            let line = match value {
                toml::Value::Integer(n) => {
                    format!("HKR,Parameters,{key},0x00010001,{n}\n")
                }
                other => format!(
                    "HKR,Parameters,{key},0x00000000,\"{}\"\n",
                    inf_escape(other.as_str().unwrap_or_default())
                ),
            };
            parameters.push_str(&line);
        }
    }
    format!(
        "; {name}.inf: installs {name}.sys as a demand-start kernel service.\n\
         ; Generated by `cargo xtask build-driver`. No catalog (.cat) is made on Linux, so the\n\
         ; INF names none: install the test-signed package (package\\{name}\\, on a machine in\n\
         ; test-signing mode that trusts the test certificate) as a legacy service, with\n\
         ;   rundll32 setupapi.dll,InstallHinfSection DefaultInstall.{platform} 132 .\\{name}.inf\n\
         ; (it copies {name}.sys to System32\\drivers; or copy it there and\n\
         ; sc create {name} type= kernel start= demand binPath= System32\\drivers\\{name}.sys),\n\
         ; then `sc start {name}`. pnputil /add-driver needs a signed catalog.\n\
         \n\
         [Version]\n\
         Signature   = \"$WINDOWS NT$\"\n\
         Class       = System\n\
         ClassGuid   = {{4d36e97d-e325-11ce-bfc1-08002be10318}}\n\
         Provider    = %Provider%\n\
         DriverVer   = {driver_ver}\n\
         PnpLockdown = 1\n\
         \n\
         [DestinationDirs]\n\
         DefaultDestDir = 12 ; System32\\drivers (a legacy install: no driver store)\n\
         \n\
         [SourceDisksNames]\n\
         1 = %DiskName%\n\
         \n\
         [SourceDisksFiles]\n\
         {name}.sys = 1\n\
         \n\
         [DefaultInstall.{platform}]\n\
         CopyFiles = Driver.Files\n\
         \n\
         [DefaultInstall.{platform}.Services]\n\
         AddService = {name},,Service.Install\n\
         \n\
         [DefaultUninstall.{platform}]\n\
         LegacyUninstall = 1\n\
         \n\
         [DefaultUninstall.{platform}.Services]\n\
         DelService = {name},0x200\n\
         \n\
         [Driver.Files]\n\
         {name}.sys\n\
         \n\
         [Service.Install]\n\
         DisplayName   = %ServiceName%\n\
         ServiceType   = 1 ; SERVICE_KERNEL_DRIVER\n\
         StartType     = 3 ; SERVICE_DEMAND_START\n\
         ErrorControl  = 1 ; SERVICE_ERROR_NORMAL\n\
         ServiceBinary = %12%\\{name}.sys\n\
         AddReg        = Service.Parameters\n\
         \n\
         [Service.Parameters]\n\
         {parameters}\
         \n\
         [Strings]\n\
         Provider    = \"wsk-rs\"\n\
         DiskName    = \"{name} installation disk\"\n\
         ServiceName = \"{description}\"\n",
        description = inf_escape(description),
    )
}

/// A string for a quoted INF value: `"` and `%` (which starts a string substitution)
/// doubled.
fn inf_escape(text: &str) -> String {
    text.replace('"', "\"\"").replace('%', "%%")
}

/// The INF's `DriverVer`: the build's date (UTC; `SOURCE_DATE_EPOCH` when set) and the crate's
/// version with a fourth part that grows through the day (seconds since midnight / 2), so that
/// a rebuilt package outranks the one installed before it.
fn driver_ver(version: &str) -> Result<String> {
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("SOURCE_DATE_EPOCH: {e}"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    };
    let (year, month, day) = civil_date(seconds / 86_400);
    let mut parts: Vec<u32> = version
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().map_err(|e| format!("version {version}: {e}")))
        .collect::<std::result::Result<_, String>>()?;
    parts.resize(3, 0);
    Ok(format!(
        "{month:02}/{day:02}/{year},{}.{}.{}.{}",
        parts[0],
        parts[1],
        parts[2],
        seconds % 86_400 / 2
    ))
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's days-to-civil algorithm, for days on or after the epoch.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The installable package of a driver, `package/NAME/` beside the image: the test-signed
/// image, its INF and its PDB.
fn package(signed: &Path, inf: &Path, pdb: &Path) -> Result<PathBuf> {
    let out_dir = inf.parent().ok_or("no parent")?;
    let name = inf.file_stem().ok_or("no file name")?;
    let dir = out_dir.join("package").join(name);
    std::fs::create_dir_all(&dir)?;
    for file in [signed, inf, pdb] {
        std::fs::copy(file, dir.join(file.file_name().ok_or("no file name")?))?;
    }
    Ok(dir)
}

/// Test-signs a copy of `sys` into `test-signed/` with a self-signed certificate made once
/// under `target/drivers/test-certificate/` (for machines in test-signing mode). Skipped,
/// with a note, when `osslsigncode` is not installed.
fn test_sign(sys: &Path) -> Result<Option<PathBuf>> {
    if !crate::on_path("osslsigncode") {
        eprintln!("xtask: osslsigncode is not installed: no test-signed copy");
        return Ok(None);
    }
    let cert_dir = workspace_root()
        .join("target")
        .join("drivers")
        .join("test-certificate");
    let (cert, key) = (cert_dir.join("cert.pem"), cert_dir.join("key.pem"));
    if !cert.is_file() || !key.is_file() {
        std::fs::create_dir_all(&cert_dir)?;
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            ])
            .args(["-subj", "/CN=wsk-rs test signing"])
            .args(["-addext", "extendedKeyUsage=codeSigning"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null()))?;
    }
    let dir = sys.parent().ok_or("no parent")?.join("test-signed");
    std::fs::create_dir_all(&dir)?;
    let signed = dir.join(sys.file_name().ok_or("no file name")?);
    let _ = std::fs::remove_file(&signed);
    run(Command::new("osslsigncode")
        .args(["sign", "-h", "sha256", "-n", "wsk-rs example driver"])
        .arg("-certs")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-in")
        .arg(sys)
        .arg("-out")
        .arg(&signed)
        .stdout(std::process::Stdio::null()))?;
    Ok(Some(signed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_calendar_s() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_454), (2026, 1, 1));
    }

    #[test]
    fn driver_ver_is_the_date_and_a_four_part_version() {
        // SAFETY: the only test that reads or writes SOURCE_DATE_EPOCH.
        unsafe { std::env::set_var("SOURCE_DATE_EPOCH", "1767229322") };
        let stamped = driver_ver("0.1.0");
        // SAFETY: as above.
        unsafe { std::env::remove_var("SOURCE_DATE_EPOCH") };
        // 2026-01-01 01:02:02 UTC: 3722 s into the day.
        assert_eq!(stamped.unwrap(), "01/01/2026,0.1.0.1861");
    }

    #[test]
    fn inf_strings_are_escaped() {
        assert_eq!(inf_escape(r#"100% "echo""#), r#"100%% ""echo"""#);
    }
}
