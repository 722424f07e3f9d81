//! Stand-in for `wdk-build` 0.6: the build-script entry point of windows-drivers-rs drivers,
//! without the WDK discovery (the check only type-checks the driver; nothing is linked).

use std::fmt;

/// What `configure_wdk_binary_build` can fail with.
#[derive(Debug)]
pub enum ConfigError {
    /// The WDK was not found (never returned by the stand-in).
    WdkNotFound,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the WDK was not found")
    }
}

impl std::error::Error for ConfigError {}

/// Gives cargo a driver's link line in the real crate; nothing here.
///
/// # Errors
/// Never, in the stand-in.
pub fn configure_wdk_binary_build() -> Result<(), ConfigError> {
    Ok(())
}
