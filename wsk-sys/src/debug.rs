//! Debug output (`DbgPrint`), declared by hand: bindgen cannot give a C-variadic
//! declaration the `system` ABI the other exports use.

use crate::{PCSTR, ULONG};

unsafe extern "C" {
    /// Prints a `printf`-style message to the kernel debugger (`%s` needs a NUL-terminated
    /// string; `%.*s` takes a length and a pointer). Callable at any IRQL for non-Unicode
    /// formats. Returns an NTSTATUS as a ULONG. WDK: `DbgPrint`.
    pub fn DbgPrint(Format: PCSTR, ...) -> ULONG;
}
