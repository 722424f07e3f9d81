//! The example driver crates: `wsk-examples/*` crates whose manifest has a
//! `[package.metadata.wsk-driver]` table (the others, such as the driver runtime and the host
//! runner, are support crates).

use std::path::PathBuf;

use crate::{Result, workspace_root};

/// An example driver crate.
#[derive(Clone, Debug)]
pub struct Example {
    /// Cargo package name (also the `.sys` name).
    pub package: String,
    /// The crate's directory.
    pub dir: PathBuf,
    /// Its version.
    pub version: String,
    /// Its `[package.metadata.wsk-driver]` table.
    pub metadata: toml::Table,
}

impl Example {
    /// The crate's name in Rust (`-` as `_`): the static library's name.
    pub fn crate_name(&self) -> String {
        self.package.replace('-', "_")
    }

    /// The driver's name: its image `NAME.sys` and its service.
    pub fn driver_name(&self) -> String {
        self.crate_name()
    }

    /// The directory name under `wsk-examples/` (`tcp-send`).
    pub fn short_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether `name` names this example: its directory, package or driver name.
    pub fn is_named(&self, name: &str) -> bool {
        name == self.package || name == self.driver_name() || name == self.short_name()
    }
}

/// The examples `names` designates (directory, package or driver names), or all of them.
pub fn select(names: &[String], all: bool) -> Result<Vec<Example>> {
    let every = examples()?;
    if all {
        if every.is_empty() {
            return Err("no example driver under wsk-examples/".into());
        }
        return Ok(every);
    }
    if names.is_empty() {
        return Err("name an example driver, or --all".into());
    }
    names
        .iter()
        .map(|name| {
            every
                .iter()
                .find(|e| e.is_named(name))
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<String> = every.iter().map(Example::short_name).collect();
                    format!("no example driver `{name}` (known: {})", known.join(", ")).into()
                })
        })
        .collect()
}

/// Every example driver, sorted by name.
pub fn examples() -> Result<Vec<Example>> {
    let mut found = Vec::new();
    let root = workspace_root().join("wsk-examples");
    if !root.is_dir() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(&root)? {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let parsed: toml::Table = std::fs::read_to_string(&manifest)?.parse()?;
        let package = parsed.get("package").and_then(|p| p.as_table());
        let metadata = package
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("wsk-driver"))
            .and_then(|d| d.as_table());
        if let (Some(package), Some(metadata)) = (package, metadata) {
            let name = package
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or("package without a name")?;
            let version = package
                .get("version")
                .and_then(|v| v.as_str())
                .unwrap_or("0.0.0")
                .to_string();
            found.push(Example {
                package: name.to_string(),
                version,
                dir,
                metadata: metadata.clone(),
            });
        }
    }
    found.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(found)
}
