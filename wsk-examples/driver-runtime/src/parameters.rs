//! A driver's configuration: the values of its service's `Parameters` registry key
//! (`HKLM\System\CurrentControlSet\Services\<name>\Parameters`), which the INF's
//! `AddReg` section or `reg add` writes and `DriverEntry` reads through the registry path it
//! is given.

use alloc::string::String;
use alloc::vec::Vec;
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

/// The largest value read (a driver's settings are short; anything larger is a mistake).
const MAX_VALUE: usize = 4096;

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
    fn read(&self, name: &str) -> Result<Option<(ULONG, Vec<u8>)>> {
        let Some(handle) = self.handle else {
            return Ok(None);
        };
        let mut units: Vec<u16> = Vec::new();
        units
            .try_reserve_exact(name.len())
            .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
        units.extend(name.encode_utf16());
        let mut value_name = counted(&mut units)?;
        let mut size = HEADER + 64;
        loop {
            let mut info: Vec<u64> = Vec::new();
            let words = size.div_ceil(8);
            info.try_reserve_exact(words)
                .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
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
                    return Err(Error::from_status(STATUS_BUFFER_OVERFLOW));
                }
                status => Error::check(status)?,
            }
            // SAFETY: on success the buffer holds a `KEY_VALUE_PARTIAL_INFORMATION` whose
            // `DataLength` bytes of data follow the header, inside the buffer.
            let (kind, data) = unsafe {
                let header = &*info.as_ptr().cast::<KEY_VALUE_PARTIAL_INFORMATION>();
                let length = (header.DataLength as usize).min(size - HEADER);
                let data =
                    core::slice::from_raw_parts(info.as_ptr().cast::<u8>().add(HEADER), length);
                (header.Type, data.to_vec())
            };
            return Ok(Some((kind, data)));
        }
    }

    /// Reads the `REG_DWORD` value `name`. `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `STATUS_OBJECT_TYPE_MISMATCH` when the value is not a `REG_DWORD`, or the status of
    /// `ZwQueryValueKey`.
    pub fn dword(&self, name: &str) -> Result<Option<u32>> {
        match self.read(name)? {
            None => Ok(None),
            Some((REG_DWORD, data)) if data.len() == 4 => Ok(Some(u32::from_le_bytes([
                data[0], data[1], data[2], data[3],
            ]))),
            Some(_) => Err(Error::from_status(STATUS_OBJECT_TYPE_MISMATCH)),
        }
    }

    /// Reads the `REG_SZ` value `name`. `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `STATUS_OBJECT_TYPE_MISMATCH` when the value is not a `REG_SZ`,
    /// `STATUS_INVALID_PARAMETER` when it is not valid UTF-16, or the status of
    /// `ZwQueryValueKey`.
    pub fn string(&self, name: &str) -> Result<Option<String>> {
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
                    .map_err(|_| Error::from_status(STATUS_INVALID_PARAMETER))
            }
            Some(_) => Err(Error::from_status(STATUS_OBJECT_TYPE_MISMATCH)),
        }
    }
}

impl Parameters {
    /// Reads the `REG_SZ` value `name` as a comma-separated list of socket addresses
    /// (`127.0.0.1:7007,[::1]:7007`). `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER` when an item is not an IP address with a port (or the list
    /// is empty), or an error of [`string`](Self::string).
    pub fn socket_addresses(&self, name: &str) -> Result<Option<Vec<SocketAddr>>> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        parse_socket_addresses(&text).map(Some)
    }
}

/// Parses a comma-separated list of socket addresses; spaces around items are ignored.
///
/// # Errors
/// `STATUS_INVALID_PARAMETER` when an item is not an IP address with a port, or the list is
/// empty.
pub fn parse_socket_addresses(text: &str) -> Result<Vec<SocketAddr>> {
    let addresses: Vec<SocketAddr> = text
        .split(',')
        .map(|item| item.trim().parse().map_err(|_| Error::INVALID_PARAMETER))
        .collect::<Result<_>>()?;
    if addresses.is_empty() {
        return Err(Error::INVALID_PARAMETER);
    }
    Ok(addresses)
}

impl Drop for Parameters {
    fn drop(&mut self) {
        if let Some(handle) = self.handle {
            // SAFETY: the handle is open and closed only here (invariant).
            unsafe { ZwClose(handle) };
        }
    }
}
