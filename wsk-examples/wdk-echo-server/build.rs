//! wdk-build reads the WDK the build runs in (eWDK prompt, or the installed kit) and gives
//! cargo the driver's link line: the kernel import libraries, `/DRIVER`, the entry point.

fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}
