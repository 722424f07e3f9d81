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
    /// Its `[package.metadata.wsk-driver]` table.
    pub metadata: toml::Table,
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
            found.push(Example {
                package: name.to_string(),
                dir,
                metadata: metadata.clone(),
            });
        }
    }
    found.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(found)
}
