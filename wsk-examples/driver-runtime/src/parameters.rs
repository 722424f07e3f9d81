//! A driver's configuration: the values of its service's `Parameters` registry key
//! (`HKLM\System\CurrentControlSet\Services\<name>\Parameters`), which the INF's
//! `AddReg` section or `reg add` writes and `DriverEntry` reads through the registry path it
//! is given.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::net::SocketAddr;
use core::ptr::null_mut;

use wsk::{Error, Result};
use wsk_sys::*;

/// The `Parameters` key of a driver's service, opened for reading; a service without one
/// reads as empty (every value missing). PASSIVE_LEVEL only (registry access).
///
/// # Invariants
/// `handle`, when set, is an open kernel handle to the key, closed once, on drop.
#[derive(Debug)]
pub struct Parameters {
    handle: Option<HANDLE>,
}

/// The bytes of `KEY_VALUE_PARTIAL_INFORMATION` before its data.
const HEADER: usize = core::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);

/// The largest value read, in bytes (a driver's settings are short; anything larger is a
/// mistake).
pub const MAX_VALUE: usize = 4096;

fn counted(units: &mut [u16]) -> Result<UNICODE_STRING> {
    let bytes = units.len() * 2;
    if bytes > usize::from(u16::MAX) {
        return Err(Error::from_status(STATUS_INVALID_PARAMETER));
    }
    Ok(UNICODE_STRING {
        Length: bytes as USHORT,
        MaximumLength: bytes as USHORT,
        Buffer: units.as_mut_ptr(),
    })
}

impl Parameters {
    /// Opens `<registry_path>\Parameters` for reading (empty when the key does not exist).
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_STATE` above PASSIVE_LEVEL, or the status of `ZwOpenKey`.
    ///
    /// # Safety
    /// `registry_path` must be the registry path `DriverEntry` was given (or another valid
    /// `UNICODE_STRING`), readable for the duration of the call.
    pub unsafe fn open(registry_path: *const UNICODE_STRING) -> Result<Parameters> {
        if KeGetCurrentIrql() != PASSIVE_LEVEL as KIRQL {
            return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
        }
        // SAFETY: the caller guarantees the string is valid; `Length` counts its bytes.
        let service = unsafe {
            let path = &*registry_path;
            if path.Buffer.is_null() {
                &[][..]
            } else {
                core::slice::from_raw_parts(path.Buffer, usize::from(path.Length) / 2)
            }
        };
        let mut name: Vec<u16> = Vec::new();
        name.try_reserve_exact(service.len() + 11)
            .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
        name.extend_from_slice(service);
        name.extend("\\Parameters".encode_utf16());
        let mut name_string = counted(&mut name)?;
        let mut attributes = OBJECT_ATTRIBUTES::default();
        let mut handle: HANDLE = null_mut();
        // SAFETY: `attributes` and `name_string` (and the units it points to) live across
        // the `ZwOpenKey` call; PASSIVE_LEVEL was checked.
        let status = unsafe {
            InitializeObjectAttributes(
                &raw mut attributes,
                &raw mut name_string,
                OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
                null_mut(),
                null_mut(),
            );
            ZwOpenKey(&raw mut handle, KEY_READ, &raw mut attributes)
        };
        if status == STATUS_OBJECT_NAME_NOT_FOUND {
            return Ok(Parameters { handle: None });
        }
        Error::check(status)?;
        Ok(Parameters {
            handle: Some(handle),
        })
    }

    /// Reads value `name`: its type (`REG_*`) and data. `Ok(None)` when it does not exist.
    fn read(&self, name: &str) -> core::result::Result<Option<(ULONG, Vec<u8>)>, ParameterError> {
        let Some(handle) = self.handle else {
            return Ok(None);
        };
        let error = |problem| ParameterError::new(name, problem);
        let oom = |_| error(Problem::Unreadable(Error::INSUFFICIENT_RESOURCES));
        let mut units: Vec<u16> = Vec::new();
        units.try_reserve_exact(name.len()).map_err(oom)?;
        units.extend(name.encode_utf16());
        let mut value_name = counted(&mut units).map_err(|e| error(Problem::Unreadable(e)))?;
        let mut size = HEADER + 64;
        loop {
            let mut info: Vec<u64> = Vec::new();
            let words = size.div_ceil(8);
            info.try_reserve_exact(words).map_err(oom)?;
            info.resize(words, 0);
            let mut needed: ULONG = 0;
            // SAFETY: the handle is open (invariant); the buffer is `size` writable bytes,
            // 8-aligned; the name lives across the call.
            let status = unsafe {
                ZwQueryValueKey(
                    handle,
                    &raw mut value_name,
                    KeyValuePartialInformation,
                    info.as_mut_ptr().cast(),
                    size as ULONG,
                    &raw mut needed,
                )
            };
            match status {
                STATUS_OBJECT_NAME_NOT_FOUND => return Ok(None),
                STATUS_BUFFER_OVERFLOW | STATUS_BUFFER_TOO_SMALL
                    if (needed as usize) > size && (needed as usize) <= HEADER + MAX_VALUE =>
                {
                    size = needed as usize;
                    continue;
                }
                STATUS_BUFFER_OVERFLOW | STATUS_BUFFER_TOO_SMALL => {
                    return Err(error(Problem::TooLarge {
                        bytes: (needed as usize).saturating_sub(HEADER),
                    }));
                }
                status => Error::check(status).map_err(|e| error(Problem::Unreadable(e)))?,
            }
            // SAFETY: on success the buffer holds a `KEY_VALUE_PARTIAL_INFORMATION` whose
            // `DataLength` bytes of data follow the header, inside the buffer.
            let (kind, data) = unsafe {
                let header = &*info.as_ptr().cast::<KEY_VALUE_PARTIAL_INFORMATION>();
                let length = (header.DataLength as usize).min(size - HEADER);
                let data =
                    core::slice::from_raw_parts(info.as_ptr().cast::<u8>().add(HEADER), length);
                (header.Type, data)
            };
            let mut owned = Vec::new();
            owned.try_reserve_exact(data.len()).map_err(oom)?;
            owned.extend_from_slice(data);
            return Ok(Some((kind, owned)));
        }
    }

    /// Reads the `REG_DWORD` value `name`. `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// A [`ParameterError`] naming the value: not a `REG_DWORD`, over [`MAX_VALUE`] bytes, or
    /// unreadable.
    pub fn dword(&self, name: &str) -> core::result::Result<Option<u32>, ParameterError> {
        match self.read(name)? {
            None => Ok(None),
            Some((REG_DWORD, data)) if data.len() == 4 => Ok(Some(u32::from_le_bytes([
                data[0], data[1], data[2], data[3],
            ]))),
            Some((kind, _)) => Err(ParameterError::new(
                name,
                Problem::WrongType {
                    found: kind,
                    expected: REG_DWORD,
                },
            )),
        }
    }

    /// Reads the `REG_DWORD` value `name`, `default` when it does not exist, and checks that
    /// it lies in `range`.
    ///
    /// # Errors
    /// As [`dword`](Self::dword), or out of `range`.
    pub fn dword_in(
        &self,
        name: &str,
        default: u32,
        range: core::ops::RangeInclusive<u32>,
    ) -> core::result::Result<u32, ParameterError> {
        let value = self.dword(name)?.unwrap_or(default);
        if !range.contains(&value) {
            return Err(ParameterError::new(
                name,
                Problem::OutOfRange {
                    value,
                    min: *range.start(),
                    max: *range.end(),
                },
            ));
        }
        Ok(value)
    }

    /// Reads the `REG_SZ` value `name`. `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// A [`ParameterError`] naming the value: not a `REG_SZ`, not valid UTF-16, over
    /// [`MAX_VALUE`] bytes, or unreadable.
    pub fn string(&self, name: &str) -> core::result::Result<Option<String>, ParameterError> {
        match self.read(name)? {
            None => Ok(None),
            Some((REG_SZ, data)) => {
                let units = data
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                    .take_while(|&unit| unit != 0);
                char::decode_utf16(units)
                    .collect::<core::result::Result<String, _>>()
                    .map(Some)
                    .map_err(|_| ParameterError::new(name, Problem::NotUtf16))
            }
            Some((kind, _)) => Err(ParameterError::new(
                name,
                Problem::WrongType {
                    found: kind,
                    expected: REG_SZ,
                },
            )),
        }
    }
}

impl Parameters {
    /// Reads the `REG_SZ` value `name` as a comma-separated list of socket addresses
    /// (`127.0.0.1:7007,[::1]:7007`). `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// A [`ParameterError`] naming the value and the item that is not an IP address with a
    /// port (or saying the list is empty), or an error of [`string`](Self::string).
    pub fn socket_addresses(
        &self,
        name: &str,
    ) -> core::result::Result<Option<Vec<SocketAddr>>, ParameterError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        parse_socket_addresses(&text)
            .map(Some)
            .map_err(|problem| ParameterError::new(name, problem))
    }
}

/// Parses a comma-separated list of socket addresses; spaces around items are ignored.
///
/// # Errors
/// [`Problem::Invalid`] naming the item that is not an IP address with a port, or saying the
/// list is empty.
pub fn parse_socket_addresses(text: &str) -> core::result::Result<Vec<SocketAddr>, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::Invalid(String::from(
            "it is empty; expected IP addresses with ports, comma-separated",
        )));
    }
    let mut addresses = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let address = item.parse().map_err(|_| {
            let mut why = String::new();
            let shown = if item.is_empty() { "(empty)" } else { item };
            let _ = write!(
                why,
                "item `{shown}` is not an IP address with a port (like 127.0.0.1:7007 or [::1]:7007)"
            );
            Problem::Invalid(why)
        })?;
        addresses.push(address);
    }
    Ok(addresses)
}

/// What is wrong with a parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Its data is longer than [`MAX_VALUE`] bytes.
    TooLarge {
        /// Its length in bytes.
        bytes: usize,
    },
    /// It has another registry type than the one expected.
    WrongType {
        /// Its type (`REG_*`).
        found: ULONG,
        /// The type expected.
        expected: ULONG,
    },
    /// A `REG_SZ` that is not valid UTF-16.
    NotUtf16,
    /// A number outside the range accepted.
    OutOfRange {
        /// The value.
        value: u32,
        /// The smallest accepted.
        min: u32,
        /// The largest accepted.
        max: u32,
    },
    /// A value that does not mean anything valid: why.
    Invalid(String),
    /// The registry could not be read.
    Unreadable(Error),
}

/// A parameter that cannot be used: its name and why. Its [`Display`](core::fmt::Display)
/// is a sentence for the debug output; [`status`](Self::status) the `DriverEntry` status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterError {
    /// The value's name.
    pub name: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl ParameterError {
    /// `name`'s `problem`.
    #[must_use]
    pub fn new(name: &str, problem: Problem) -> ParameterError {
        ParameterError {
            name: String::from(name),
            problem,
        }
    }

    /// The status `DriverEntry` returns for it: `STATUS_OBJECT_TYPE_MISMATCH` for a wrong
    /// type, the registry's status when it could not be read, `STATUS_INVALID_PARAMETER`
    /// otherwise.
    #[must_use]
    pub fn status(&self) -> NTSTATUS {
        match &self.problem {
            Problem::WrongType { .. } => STATUS_OBJECT_TYPE_MISMATCH,
            Problem::Unreadable(error) => error.status(),
            _ => STATUS_INVALID_PARAMETER,
        }
    }
}

/// The name of a registry type.
fn type_name(kind: ULONG) -> &'static str {
    match kind {
        0 => "REG_NONE",
        REG_SZ => "REG_SZ",
        2 => "REG_EXPAND_SZ",
        3 => "REG_BINARY",
        REG_DWORD => "REG_DWORD",
        5 => "REG_DWORD_BIG_ENDIAN",
        6 => "REG_LINK",
        7 => "REG_MULTI_SZ",
        11 => "REG_QWORD",
        _ => "an unknown registry type",
    }
}

impl core::fmt::Display for ParameterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "parameter {}: ", self.name)?;
        match &self.problem {
            Problem::TooLarge { bytes } => write!(
                f,
                "its value is {bytes} bytes, over the {MAX_VALUE}-byte limit"
            ),
            Problem::WrongType { found, expected } => write!(
                f,
                "it is a {} value, expected a {}",
                type_name(*found),
                type_name(*expected)
            ),
            Problem::NotUtf16 => f.write_str("its text is not valid UTF-16"),
            Problem::OutOfRange { value, min, max } => {
                write!(f, "{value} is out of range (expected {min} to {max})")
            }
            Problem::Invalid(why) => f.write_str(why),
            Problem::Unreadable(error) => write!(f, "cannot be read: {error}"),
        }
    }
}

impl From<ParameterError> for Error {
    fn from(error: ParameterError) -> Error {
        Error::from_status(error.status())
    }
}

impl Drop for Parameters {
    fn drop(&mut self) {
        if let Some(handle) = self.handle {
            // SAFETY: the handle is open and closed only here (invariant).
            unsafe { ZwClose(handle) };
        }
    }
}
