//! Stand-in for `wdk` 0.5: its `println!`, type-checked like the real one (format arguments).
#![no_std]

/// Prints through `DbgPrint` in the real crate; formats and discards here.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print_arguments(::core::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::print_arguments(::core::format_args!($($arg)*))
    };
}

/// What `println!` expands to.
#[doc(hidden)]
pub fn print_arguments(arguments: core::fmt::Arguments<'_>) {
    let _ = arguments;
}
