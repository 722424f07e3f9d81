//! Compiles the C shim for `DbgPrint`: a C-variadic function cannot be defined in stable Rust.

fn main() {
    println!("cargo::rerun-if-changed=csrc/dbgprint.c");
    cc::Build::new()
        .file("csrc/dbgprint.c")
        .warnings(true)
        .compile("wsk_host_dbgprint");
}
