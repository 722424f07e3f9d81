//! Debug output through `DbgPrint`: [`kprint!`](crate::kprint) formats into a buffer on the
//! stack (no allocation, any IRQL) and prints it with a `"%s"` format, so text containing `%`
//! is printed as is. Output longer than [`LINE_CAPACITY`] bytes is cut, marked with `...`.

use core::fmt::{self, Write};

/// The longest text printed by one [`kprint!`](crate::kprint) call.
pub const LINE_CAPACITY: usize = 255;

/// A fixed buffer that keeps the first [`LINE_CAPACITY`] bytes written to it.
struct Line {
    bytes: [u8; LINE_CAPACITY + 1],
    len: usize,
    cut: bool,
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            // A NUL would end the C string early.
            let byte = if byte == 0 { b'?' } else { byte };
            if self.len == LINE_CAPACITY {
                self.cut = true;
                break;
            }
            self.bytes[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints `args` with `DbgPrint`. Any IRQL (`DbgPrint` may be called at any IRQL for text
/// without `%wZ`-style Unicode conversions, which this never passes).
pub fn print(args: fmt::Arguments<'_>) {
    let mut line = Line {
        bytes: [0; LINE_CAPACITY + 1],
        len: 0,
        cut: false,
    };
    let _ = line.write_fmt(args);
    if line.cut {
        line.bytes[LINE_CAPACITY - 4..LINE_CAPACITY].copy_from_slice(b"...\n");
    }
    line.bytes[line.len] = 0;
    // SAFETY: both strings are NUL-terminated and live for the call; "%s" consumes exactly
    // the one string argument given.
    unsafe { wsk_sys::DbgPrint(c"%s".as_ptr(), line.bytes.as_ptr()) };
}

/// `DbgPrint` with Rust formatting: `kprint!("listening on {}\n", addr)`.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {
        $crate::debug_print::print(core::format_args!($($arg)*))
    };
}
