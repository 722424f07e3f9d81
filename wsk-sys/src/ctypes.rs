//! C types with the widths they have on Windows (LLP64), on every host.
//!
//! `core::ffi::c_long` is 64-bit on Linux and macOS but 32-bit on Windows; the bindings
//! use these aliases instead, so that every structure has its Windows layout wherever the
//! crate is compiled, and the layout assertions of the crate hold on every host.

/// C `char` (signed on MSVC).
pub type c_char = i8;
/// C `signed char`.
pub type c_schar = i8;
/// C `unsigned char`.
pub type c_uchar = u8;
/// C `short`.
pub type c_short = i16;
/// C `unsigned short`.
pub type c_ushort = u16;
/// C `int`.
pub type c_int = i32;
/// C `unsigned int`.
pub type c_uint = u32;
/// C `long`: 32-bit on Windows.
pub type c_long = i32;
/// C `unsigned long`: 32-bit on Windows.
pub type c_ulong = u32;
/// C `long long`.
pub type c_longlong = i64;
/// C `unsigned long long`.
pub type c_ulonglong = u64;
/// C `void`, for pointers.
pub use core::ffi::c_void;
