//! `cargo xtask check-pe NAME|--all [--release] [--target ARCH]` (or `check-pe FILE.sys`):
//! checks built drivers as PE images — what the kernel's loader and a reviewer of a driver
//! expect:
//! - the machine is the target's (AMD64 or ARM64), PE32+, an executable image that is not
//!   a DLL, for the native subsystem;
//! - every import comes from a kernel module (ntoskrnl.exe, NETIO.SYS, cng.sys) and names one of its
//!   exports (the project's lists, `xtask/kernel-exports/*.def`), by name, and none is newer
//!   than the oldest Windows release the architecture's drivers support (the lists note the
//!   first release of each export; see `import_versions`);
//! - there is a relocation directory (drivers are loaded wherever the kernel puts them);
//! - no section is both writable and executable;
//! - the checksum is set and correct (the loader checks drivers' checksums);
//! - the debug directory has a CodeView (RSDS) record naming, by file name only, the PDB
//!   beside the image (`NAME.pdb`), with that PDB's GUID and age: the symbols WinDbg loads
//!   for it (read with the `object` crate; the PDB's identity from its MSF streams).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::driver_build::{Arch, BuildOptions, def_exports, export_lists, parse_args};

const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
const IMAGE_FILE_MACHINE_ARM64: u16 = 0xAA64;
const IMAGE_FILE_EXECUTABLE_IMAGE: u16 = 0x0002;
const IMAGE_FILE_DLL: u16 = 0x2000;
const PE32_PLUS: u16 = 0x20B;
const IMAGE_SUBSYSTEM_NATIVE: u16 = 1;
const IMAGE_SCN_MEM_EXECUTE: u32 = 0x2000_0000;
const IMAGE_SCN_MEM_WRITE: u32 = 0x8000_0000;
const IMPORT_DIRECTORY: usize = 1;
const RELOCATION_DIRECTORY: usize = 5;

/// `cargo xtask check-pe`.
pub fn command(args: &[String]) -> Result<()> {
    let files: Vec<PathBuf> = if args.iter().any(|a| a.ends_with(".sys")) {
        args.iter().map(PathBuf::from).collect()
    } else {
        let (examples, release, arches) = parse_args(args)?;
        let mut files = Vec::new();
        for arch in arches {
            let dir = BuildOptions { release, arch }.output_dir();
            for example in &examples {
                files.push(dir.join(format!("{}.sys", example.driver_name())));
            }
        }
        files
    };
    let kernel = kernel_exports()?;
    let mut failed = 0;
    for file in &files {
        match check_file(file, &kernel) {
            Ok(summary) => eprintln!("xtask: check-pe {}: ok ({summary})", file.display()),
            Err(problems) => {
                failed += 1;
                eprintln!("xtask: check-pe {}: FAILED", file.display());
                for problem in problems {
                    eprintln!("  - {problem}");
                }
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} image(s) failed the PE checks", files.len()).into());
    }
    Ok(())
}

/// The exports of each kernel module, by lower-case module name.
pub type KernelExports = BTreeMap<String, Vec<String>>;

/// Reads the project's export lists.
pub fn kernel_exports() -> Result<KernelExports> {
    let mut modules = BTreeMap::new();
    for def in export_lists() {
        let (library, exports) = def_exports(&def)?;
        modules.insert(library.to_ascii_lowercase(), exports);
    }
    Ok(modules)
}

/// Checks one file; `Ok` with a one-line summary, or every problem found.
pub fn check_file(path: &Path, kernel: &KernelExports) -> std::result::Result<String, Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| vec![format!("cannot read: {e}")])?;
    let expected = path
        .components()
        .find_map(|c| Arch::parse(&c.as_os_str().to_string_lossy()).ok());
    let checked = check_image(&bytes, expected, kernel);
    let symbols = check_symbols(&bytes, path);
    match (checked, symbols) {
        (Ok(summary), Ok(pdb)) => Ok(format!("{summary}, symbols {pdb}")),
        (Ok(_), Err(problem)) => Err(vec![problem]),
        (Err(mut problems), symbols) => {
            problems.extend(symbols.err());
            Err(problems)
        }
    }
}

/// Checks the image's CodeView record against the PDB beside `path` (in its directory, or
/// the parent's for a test-signed copy in `test-signed/`); the PDB's name, or the problem.
pub fn check_symbols(bytes: &[u8], path: &Path) -> std::result::Result<String, String> {
    use object::read::pe::PeFile64;
    let file = PeFile64::parse(bytes).map_err(|e| format!("unreadable image: {e}"))?;
    let record = object::Object::pdb_info(&file)
        .map_err(|e| format!("unreadable debug directory: {e}"))?
        .ok_or("no CodeView (RSDS) record in the debug directory: linked without /DEBUG")?;
    let name = String::from_utf8_lossy(record.path()).into_owned();
    if name.contains(['/', '\\', ':']) {
        return Err(format!(
            "the CodeView record names {name}, a path: it should name the PDB's file only \
             (/PDBALTPATH:%_PDB%)"
        ));
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if name != format!("{stem}.pdb") {
        return Err(format!("the CodeView record names {name}, not {stem}.pdb"));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let pdb = [dir.join(&name), dir.join("..").join(&name)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} is not beside the image"))?;
    let bytes = std::fs::read(&pdb).map_err(|e| format!("cannot read {name}: {e}"))?;
    let (guid, age) = pdb_identity(&bytes).map_err(|e| format!("{name}: {e}"))?;
    if guid != record.guid() || age != record.age() {
        return Err(format!(
            "{name} is not this image's: its GUID {} age {age}, the image's {} age {}",
            hex(&guid),
            hex(&record.guid()),
            record.age()
        ));
    }
    Ok(format!("{name} (GUID {}, age {age})", hex(&guid)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of a PDB (MSF 7.00): the GUID of its PDB information stream (stream 1) and
/// the age of its DBI stream (stream 3), which a debugger matches against the image's
/// CodeView record.
pub fn pdb_identity(pdb: &[u8]) -> std::result::Result<([u8; 16], u32), String> {
    const MAGIC: &[u8] = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0";
    if !pdb.starts_with(MAGIC) {
        return Err("not an MSF 7.00 file".into());
    }
    let block_size = u32_at(pdb, 32)? as usize;
    let directory_bytes = u32_at(pdb, 44)? as usize;
    let block_map = u32_at(pdb, 52)? as usize;
    if !block_size.is_power_of_two() || block_size < 512 {
        return Err(format!("block size {block_size}"));
    }
    let block = |index: usize| -> std::result::Result<&[u8], String> {
        let start = index
            .checked_mul(block_size)
            .filter(|s| s + block_size <= pdb.len())
            .ok_or_else(|| format!("block {index} is past the end"))?;
        Ok(&pdb[start..start + block_size])
    };
    let read = |blocks: &[usize], size: usize| -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(size);
        for &b in blocks {
            out.extend_from_slice(block(b)?);
        }
        if out.len() < size {
            return Err("a stream is shorter than its size".into());
        }
        out.truncate(size);
        Ok(out)
    };
    let blocks_of = |size: usize| size.div_ceil(block_size);
    let map = block(block_map)?;
    let directory_blocks = (0..blocks_of(directory_bytes))
        .map(|i| u32_at(map, i * 4).map(|b| b as usize))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let directory = read(&directory_blocks, directory_bytes)?;
    let streams = u32_at(&directory, 0)? as usize;
    if streams < 4 {
        return Err(format!("{streams} streams, no DBI stream"));
    }
    let sizes = (0..streams)
        .map(|i| u32_at(&directory, 4 + 4 * i))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let stream = |wanted: usize| -> std::result::Result<Vec<u8>, String> {
        let mut at = 4 + 4 * streams;
        for (index, &size) in sizes.iter().enumerate() {
            let size = if size == u32::MAX { 0 } else { size as usize };
            let blocks = (0..blocks_of(size))
                .map(|i| u32_at(&directory, at + 4 * i).map(|b| b as usize))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if index == wanted {
                return read(&blocks, size);
            }
            at += 4 * blocks.len();
        }
        Err(format!("no stream {wanted}"))
    };
    // PDB information stream: version, signature, age, GUID.
    let info = stream(1)?;
    let guid: [u8; 16] = info
        .get(12..28)
        .and_then(|g| g.try_into().ok())
        .ok_or("the PDB information stream is too short")?;
    // DBI stream: version signature, version header, age.
    let dbi = stream(3)?;
    let age = u32_at(&dbi, 8)?;
    Ok((guid, age))
}

/// A parsed PE32+ image: the parts the checks read.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    /// `IMAGE_FILE_HEADER.Machine`.
    pub machine: u16,
    /// `IMAGE_FILE_HEADER.Characteristics`.
    pub characteristics: u16,
    /// `IMAGE_OPTIONAL_HEADER.Subsystem`.
    pub subsystem: u16,
    /// `IMAGE_OPTIONAL_HEADER.CheckSum`.
    pub checksum: u32,
    /// File offset of the checksum field.
    checksum_offset: usize,
    /// The data directories `(rva, size)`.
    directories: Vec<(u32, u32)>,
    /// The sections: name, virtual address, virtual size, raw offset, raw size,
    /// characteristics.
    pub sections: Vec<Section>,
}

/// A section header.
#[derive(Debug, Clone)]
pub struct Section {
    /// Its name.
    pub name: String,
    virtual_address: u32,
    virtual_size: u32,
    raw_offset: u32,
    raw_size: u32,
    /// Its `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

fn u16_at(bytes: &[u8], offset: usize) -> std::result::Result<u16, String> {
    bytes
        .get(offset..offset + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("truncated at {offset:#x}"))
}

fn u32_at(bytes: &[u8], offset: usize) -> std::result::Result<u32, String> {
    bytes
        .get(offset..offset + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("truncated at {offset:#x}"))
}

fn u64_at(bytes: &[u8], offset: usize) -> std::result::Result<u64, String> {
    Ok(u64::from(u32_at(bytes, offset)?) | (u64::from(u32_at(bytes, offset + 4)?) << 32))
}

impl<'a> Image<'a> {
    /// Parses the headers.
    pub fn parse(bytes: &'a [u8]) -> std::result::Result<Image<'a>, String> {
        if bytes.get(..2) != Some(b"MZ") {
            return Err("no MZ header".into());
        }
        let pe = u32_at(bytes, 0x3C)? as usize;
        if bytes.get(pe..pe + 4) != Some(b"PE\0\0") {
            return Err("no PE signature".into());
        }
        let file = pe + 4;
        let machine = u16_at(bytes, file)?;
        let section_count = usize::from(u16_at(bytes, file + 2)?);
        let optional_size = usize::from(u16_at(bytes, file + 16)?);
        let characteristics = u16_at(bytes, file + 18)?;
        let optional = file + 20;
        let magic = u16_at(bytes, optional)?;
        if magic != PE32_PLUS {
            return Err(format!("optional header magic {magic:#x}, not PE32+"));
        }
        let checksum_offset = optional + 64;
        let checksum = u32_at(bytes, checksum_offset)?;
        let subsystem = u16_at(bytes, optional + 68)?;
        let directory_count = u32_at(bytes, optional + 108)? as usize;
        let mut directories = Vec::new();
        for index in 0..directory_count.min(16) {
            let at = optional + 112 + index * 8;
            directories.push((u32_at(bytes, at)?, u32_at(bytes, at + 4)?));
        }
        let mut sections = Vec::new();
        let table = optional + optional_size;
        for index in 0..section_count {
            let at = table + index * 40;
            let raw_name = bytes.get(at..at + 8).ok_or("truncated section table")?;
            let name = String::from_utf8_lossy(raw_name)
                .trim_end_matches('\0')
                .to_string();
            sections.push(Section {
                name,
                virtual_size: u32_at(bytes, at + 8)?,
                virtual_address: u32_at(bytes, at + 12)?,
                raw_size: u32_at(bytes, at + 16)?,
                raw_offset: u32_at(bytes, at + 20)?,
                characteristics: u32_at(bytes, at + 36)?,
            });
        }
        Ok(Image {
            bytes,
            machine,
            characteristics,
            subsystem,
            checksum,
            checksum_offset,
            directories,
            sections,
        })
    }

    /// The data directory `index`, when present.
    fn directory(&self, index: usize) -> Option<(u32, u32)> {
        self.directories
            .get(index)
            .copied()
            .filter(|&(rva, size)| rva != 0 && size != 0)
    }

    /// The file offset of a relative virtual address.
    fn offset_of(&self, rva: u32) -> std::result::Result<usize, String> {
        self.sections
            .iter()
            .find(|s| {
                rva >= s.virtual_address && rva < s.virtual_address + s.virtual_size.max(s.raw_size)
            })
            .map(|s| (rva - s.virtual_address + s.raw_offset) as usize)
            .ok_or_else(|| format!("RVA {rva:#x} is in no section"))
    }

    fn c_string(&self, rva: u32) -> std::result::Result<String, String> {
        let start = self.offset_of(rva)?;
        let rest = self.bytes.get(start..).ok_or("string out of the file")?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("unterminated string")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    /// The imports: `(module, name)`; an import by ordinal is named `#N`.
    pub fn imports(&self) -> std::result::Result<Vec<(String, String)>, String> {
        let Some((rva, _)) = self.directory(IMPORT_DIRECTORY) else {
            return Ok(Vec::new());
        };
        let mut imports = Vec::new();
        let mut descriptor = self.offset_of(rva)?;
        loop {
            let lookup = u32_at(self.bytes, descriptor)?;
            let name = u32_at(self.bytes, descriptor + 12)?;
            let address = u32_at(self.bytes, descriptor + 16)?;
            if lookup == 0 && name == 0 && address == 0 {
                break;
            }
            let module = self.c_string(name)?;
            let mut thunk = self.offset_of(if lookup != 0 { lookup } else { address })?;
            loop {
                let entry = u64_at(self.bytes, thunk)?;
                if entry == 0 {
                    break;
                }
                let symbol = if entry & (1 << 63) != 0 {
                    format!("#{}", entry & 0xFFFF)
                } else {
                    self.c_string((entry as u32) + 2)?
                };
                imports.push((module.clone(), symbol));
                thunk += 8;
            }
            descriptor += 20;
        }
        Ok(imports)
    }

    /// The PE checksum of the file (the algorithm of `CheckSumMappedFile`).
    pub fn computed_checksum(&self) -> u32 {
        let mut sum: u64 = 0;
        let mut offset = 0;
        while offset < self.bytes.len() {
            if offset == self.checksum_offset {
                offset += 4;
                continue;
            }
            let word = if offset + 4 <= self.bytes.len() {
                u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().expect("4 bytes"))
            } else {
                let mut tail = [0u8; 4];
                tail[..self.bytes.len() - offset].copy_from_slice(&self.bytes[offset..]);
                u32::from_le_bytes(tail)
            };
            sum = (sum & 0xFFFF_FFFF) + u64::from(word) + (sum >> 32);
            offset += 4;
        }
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum += sum >> 16;
        sum &= 0xFFFF;
        (sum + self.bytes.len() as u64) as u32
    }
}

/// Checks an image; `expected` is the architecture it was built for, when known.
pub fn check_image(
    bytes: &[u8],
    expected: Option<Arch>,
    kernel: &KernelExports,
) -> std::result::Result<String, Vec<String>> {
    let image = Image::parse(bytes).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let arch = match image.machine {
        IMAGE_FILE_MACHINE_AMD64 => Some(Arch::X86_64),
        IMAGE_FILE_MACHINE_ARM64 => Some(Arch::Aarch64),
        other => {
            problems.push(format!("machine {other:#06x} is neither AMD64 nor ARM64"));
            None
        }
    };
    if let (Some(arch), Some(expected)) = (arch, expected) {
        if arch != expected {
            problems.push(format!(
                "machine is {arch:?}, the image was built for {expected:?}"
            ));
        }
    }
    if image.characteristics & IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
        problems.push("not marked as an executable image".into());
    }
    if image.characteristics & IMAGE_FILE_DLL != 0 {
        problems.push("marked as a DLL".into());
    }
    if image.subsystem != IMAGE_SUBSYSTEM_NATIVE {
        problems.push(format!("subsystem {} is not NATIVE (1)", image.subsystem));
    }
    let imports = image.imports().unwrap_or_else(|e| {
        problems.push(format!("unreadable import table: {e}"));
        Vec::new()
    });
    for (module, symbol) in &imports {
        match kernel.get(&module.to_ascii_lowercase()) {
            None => problems.push(format!(
                "imports {symbol} from {module}, not a kernel module"
            )),
            Some(exports) if !exports.iter().any(|e| e == symbol) => problems.push(format!(
                "imports {symbol} from {module}, which does not export it"
            )),
            Some(_) => {}
        }
    }
    if let Some(arch) = arch {
        match crate::import_versions::export_releases() {
            Ok(releases) => {
                problems.extend(crate::import_versions::too_new(&imports, arch, &releases))
            }
            Err(e) => problems.push(format!("cannot read the export lists' releases: {e}")),
        }
    }
    if image.directory(RELOCATION_DIRECTORY).is_none() {
        problems.push("no relocation directory: the image cannot be loaded at any address".into());
    }
    for section in &image.sections {
        let flags = section.characteristics;
        if flags & IMAGE_SCN_MEM_WRITE != 0 && flags & IMAGE_SCN_MEM_EXECUTE != 0 {
            problems.push(format!(
                "section {} is writable and executable",
                section.name
            ));
        }
    }
    let computed = image.computed_checksum();
    if image.checksum == 0 {
        problems.push("the checksum is not set (link with /RELEASE)".into());
    } else if image.checksum != computed {
        problems.push(format!(
            "checksum {:#x} is wrong (computed {computed:#x})",
            image.checksum
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let modules: std::collections::BTreeSet<&str> =
        imports.iter().map(|(m, _)| m.as_str()).collect();
    Ok(format!(
        "{:?}, native, {} imports from {}, {} bytes",
        arch.expect("checked"),
        imports.len(),
        modules.into_iter().collect::<Vec<_>>().join(" + "),
        bytes.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver_build::build;
    use crate::examples::select;

    /// Builds the tcp-send driver for `arch` (release) and returns its bytes.
    fn built(arch: Arch) -> Vec<u8> {
        // The tests run in parallel and build into the same file: one at a time.
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        let example = select(&["tcp-send".to_string()], false).unwrap().remove(0);
        let driver = build(
            &example,
            &BuildOptions {
                release: true,
                arch,
            },
        )
        .unwrap();
        std::fs::read(driver.sys).unwrap()
    }

    fn problems(bytes: &[u8], arch: Arch) -> Vec<String> {
        match check_image(bytes, Some(arch), &kernel_exports().unwrap()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    fn rewrite_checksum(bytes: &mut [u8]) {
        let image = Image::parse(bytes).unwrap();
        let (at, sum) = (image.checksum_offset, image.computed_checksum());
        bytes[at..at + 4].copy_from_slice(&sum.to_le_bytes());
    }

    #[test]
    fn built_drivers_pass_for_both_architectures() {
        for arch in Arch::ALL {
            let bytes = built(arch);
            assert_eq!(problems(&bytes, arch), Vec::<String>::new(), "{arch:?}");
            let image = Image::parse(&bytes).unwrap();
            let imports = image.imports().unwrap();
            assert!(imports.contains(&("NETIO.SYS".into(), "WskRegister".into())));
            assert!(imports.contains(&("ntoskrnl.exe".into(), "IoAllocateIrp".into())));
        }
    }

    #[test]
    fn each_rule_fires() {
        let original = built(Arch::X86_64);
        let image = Image::parse(&original).unwrap();
        let pe = u32_at(&original, 0x3C).unwrap() as usize;
        let optional = pe + 24;

        // Wrong subsystem (WINDOWS_GUI), checksum kept consistent.
        let mut bytes = original.clone();
        bytes[optional + 68..optional + 70].copy_from_slice(&2u16.to_le_bytes());
        rewrite_checksum(&mut bytes);
        assert_eq!(
            problems(&bytes, Arch::X86_64),
            ["subsystem 2 is not NATIVE (1)"]
        );

        // Built for the other machine.
        assert_eq!(
            problems(&original, Arch::Aarch64),
            ["machine is X86_64, the image was built for Aarch64"]
        );

        // A DLL.
        let mut bytes = original.clone();
        let flags = image.characteristics | IMAGE_FILE_DLL;
        bytes[pe + 22..pe + 24].copy_from_slice(&flags.to_le_bytes());
        rewrite_checksum(&mut bytes);
        assert_eq!(problems(&bytes, Arch::X86_64), ["marked as a DLL"]);

        // A writable and executable section.
        let mut bytes = original.clone();
        let table = optional + usize::from(u16_at(&original, pe + 20).unwrap());
        let text = image
            .sections
            .iter()
            .position(|s| s.name == ".text")
            .unwrap();
        let at = table + text * 40 + 36;
        let flags = image.sections[text].characteristics | IMAGE_SCN_MEM_WRITE;
        bytes[at..at + 4].copy_from_slice(&flags.to_le_bytes());
        rewrite_checksum(&mut bytes);
        assert_eq!(
            problems(&bytes, Arch::X86_64),
            ["section .text is writable and executable"]
        );

        // A wrong checksum, and none.
        let mut bytes = original.clone();
        let at = image.checksum_offset;
        bytes[at] ^= 1;
        assert!(problems(&bytes, Arch::X86_64)[0].contains("is wrong"));
        bytes[at..at + 4].copy_from_slice(&[0; 4]);
        assert_eq!(
            problems(&bytes, Arch::X86_64),
            ["the checksum is not set (link with /RELEASE)"]
        );

        // An import the kernel does not export, and one from a user-mode DLL: rename
        // `KeSetEvent` to `KeSetEvenX` and `NETIO.SYS` to `NETIO.DLL` in place.
        let mut bytes = original.clone();
        let find = |bytes: &[u8], needle: &[u8]| {
            bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        let at = find(&bytes, b"KeSetEvent\0");
        bytes[at + 9] = b'X';
        let at = find(&bytes, b"NETIO.SYS\0");
        bytes[at + 6..at + 9].copy_from_slice(b"DLL");
        rewrite_checksum(&mut bytes);
        let found = problems(&bytes, Arch::X86_64);
        assert!(
            found.contains(
                &"imports KeSetEvenX from ntoskrnl.exe, which does not export it".to_string()
            ),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("from NETIO.DLL, not a kernel module")),
            "{found:?}"
        );

        // No relocations.
        let mut bytes = original.clone();
        let at = optional + 112 + RELOCATION_DIRECTORY * 8;
        bytes[at..at + 8].copy_from_slice(&[0; 8]);
        rewrite_checksum(&mut bytes);
        assert_eq!(
            problems(&bytes, Arch::X86_64),
            ["no relocation directory: the image cannot be loaded at any address"]
        );
    }

    #[test]
    fn the_codeview_record_names_the_pdb_beside_it() {
        let bytes = built(Arch::X86_64);
        let built_pdb = BuildOptions {
            release: true,
            arch: Arch::X86_64,
        }
        .output_dir()
        .join("wsk_tcp_send.pdb");
        let pdb = std::fs::read(built_pdb).unwrap();
        let dir = std::env::temp_dir().join(format!("wsk-check-pdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sys = dir.join("wsk_tcp_send.sys");
        std::fs::write(&sys, &bytes).unwrap();

        // No PDB beside the image.
        let missing = check_symbols(&bytes, &sys).unwrap_err();
        assert_eq!(missing, "wsk_tcp_send.pdb is not beside the image");

        // The right PDB.
        std::fs::write(dir.join("wsk_tcp_send.pdb"), &pdb).unwrap();
        let found = check_symbols(&bytes, &sys).unwrap();
        assert!(found.starts_with("wsk_tcp_send.pdb (GUID "), "{found}");

        // The image under another name.
        let renamed = dir.join("other.sys");
        assert_eq!(
            check_symbols(&bytes, &renamed).unwrap_err(),
            "the CodeView record names wsk_tcp_send.pdb, not other.pdb"
        );

        // A PDB of another link: its GUID differs.
        let (guid, _) = pdb_identity(&pdb).unwrap();
        let at = pdb.windows(16).position(|w| w == guid).unwrap();
        let mut other = pdb.clone();
        other[at] ^= 0xFF;
        std::fs::write(dir.join("wsk_tcp_send.pdb"), &other).unwrap();
        let wrong = check_symbols(&bytes, &sys).unwrap_err();
        assert!(wrong.contains("is not this image's"), "{wrong}");
        let _ = std::fs::remove_dir_all(&dir);

        // An image linked without /DEBUG: no CodeView record (the debug directory cleared).
        let mut bytes = bytes;
        let pe = u32_at(&bytes, 0x3C).unwrap() as usize;
        let at = pe + 24 + 112 + 6 * 8;
        bytes[at..at + 8].copy_from_slice(&[0; 8]);
        assert!(
            check_symbols(&bytes, &sys)
                .unwrap_err()
                .starts_with("no CodeView (RSDS) record")
        );
    }

    #[test]
    fn the_pdb_identity_matches_the_image_record_read_by_pefile() {
        let bytes = built(Arch::X86_64);
        let env = crate::python_env::PythonEnv::ensure().unwrap();
        let path = std::env::temp_dir().join(format!("wsk-check-rsds-{}.sys", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new(env.python())
            .args([
                "-c",
                "import pefile,sys\n\
                 pe = pefile.PE(sys.argv[1])\n\
                 d = [d.struct for d in pe.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2][0]\n\
                 cv = pe.get_data(d.AddressOfRawData, d.SizeOfData)\n\
                 assert cv[:4] == b'RSDS'\n\
                 print(cv[4:20].hex(), int.from_bytes(cv[20:24], 'little'), \
                 cv[24:].rstrip(b'\\0').decode())",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pdb = BuildOptions {
            release: true,
            arch: Arch::X86_64,
        }
        .output_dir()
        .join("wsk_tcp_send.pdb");
        let (guid, age) = pdb_identity(&std::fs::read(pdb).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{} {age} wsk_tcp_send.pdb", hex(&guid))
        );
    }

    #[test]
    fn the_checksum_matches_pefile() {
        let bytes = built(Arch::X86_64);
        let image = Image::parse(&bytes).unwrap();
        let env = crate::python_env::PythonEnv::ensure().unwrap();
        let path = std::env::temp_dir().join(format!("wsk-check-pe-{}.sys", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new(env.python())
            .args([
                "-c",
                "import pefile,sys; print(pefile.PE(sys.argv[1]).generate_checksum())",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(image.computed_checksum(), theirs);
        assert_eq!(image.checksum, theirs);
    }
}
