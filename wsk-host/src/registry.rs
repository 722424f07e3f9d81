//! The registry, in memory: `ZwOpenKey`, `ZwQueryValueKey`, `ZwClose` over values the test
//! harness or the host runner sets ([`set_value`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use wsk_sys::*;

use crate::verifier::{Rule, bug_check, require_irql};

/// A registry value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ`.
    String(String),
    /// `REG_MULTI_SZ`.
    MultiString(Vec<String>),
}

impl RegValue {
    fn kind(&self) -> ULONG {
        match self {
            RegValue::Dword(_) => REG_DWORD,
            RegValue::String(_) => REG_SZ,
            RegValue::MultiString(_) => REG_MULTI_SZ,
        }
    }

    fn data(&self) -> Vec<u8> {
        let utf16 = |text: &str| {
            text.encode_utf16()
                .chain([0])
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        match self {
            RegValue::Dword(value) => value.to_le_bytes().to_vec(),
            RegValue::String(text) => utf16(text),
            RegValue::MultiString(texts) => {
                let mut data: Vec<u8> = texts.iter().flat_map(|t| utf16(t)).collect();
                data.extend([0, 0]);
                data
            }
        }
    }
}

/// Keys (lower-case paths) -> values (lower-case names).
static KEYS: Mutex<BTreeMap<String, BTreeMap<String, RegValue>>> = Mutex::new(BTreeMap::new());

/// Open handles (their key paths, by handle value).
static HANDLES: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// Sets a value (creating the key). Paths are kernel paths such as
/// `\Registry\Machine\System\CurrentControlSet\Services\NAME\Parameters`; names and paths
/// compare case-insensitively.
pub fn set_value(key_path: &str, name: &str, value: RegValue) {
    KEYS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(normalise(key_path))
        .or_default()
        .insert(name.to_lowercase(), value);
}

/// Removes every key and value.
pub fn clear() {
    KEYS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Number of open handles.
pub(crate) fn open_handles() -> usize {
    HANDLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, HashSet::len)
}

pub(crate) fn forget_handles() {
    *HANDLES.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn normalise(path: &str) -> String {
    path.trim_end_matches('\\').to_lowercase()
}

/// # Safety
/// `text` must be null or a valid counted string.
unsafe fn string_of(text: PUNICODE_STRING) -> Option<String> {
    // SAFETY: forwarded from the caller.
    let text = unsafe { text.as_ref()? };
    if text.Buffer.is_null() {
        return Some(String::new());
    }
    // SAFETY: a counted string's buffer holds `Length` bytes.
    let units = unsafe { std::slice::from_raw_parts(text.Buffer, text.Length as usize / 2) };
    Some(String::from_utf16_lossy(units))
}

struct KeyHandle {
    path: String,
}

/// `ZwOpenKey`.
///
/// # Safety
/// `KeyHandle` must be writable and `ObjectAttributes` a valid `OBJECT_ATTRIBUTES` whose
/// name is a valid `UNICODE_STRING`, as the kernel requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwOpenKey(
    KeyHandle: PHANDLE,
    _DesiredAccess: ACCESS_MASK,
    ObjectAttributes: POBJECT_ATTRIBUTES,
) -> NTSTATUS {
    if !require_irql("ZwOpenKey", PASSIVE_LEVEL) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    // SAFETY: the caller gives valid object attributes and a writable handle.
    unsafe {
        let attributes = &*ObjectAttributes;
        let Some(name) = string_of(attributes.ObjectName) else {
            return STATUS_INVALID_PARAMETER;
        };
        let path = match attributes.RootDirectory.cast::<self::KeyHandle>().as_ref() {
            Some(root) => format!("{}\\{}", root.path, normalise(&name)),
            None => normalise(&name),
        };
        if !KEYS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&path)
        {
            return STATUS_OBJECT_NAME_NOT_FOUND;
        }
        let handle = Box::into_raw(Box::new(self::KeyHandle { path })) as usize;
        HANDLES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(handle);
        *KeyHandle = handle as HANDLE;
    }
    STATUS_SUCCESS
}

/// `ZwQueryValueKey` (`KeyValuePartialInformation`).
///
/// # Safety
/// `ValueName` must be a valid `UNICODE_STRING`, `KeyValueInformation` writable for
/// `Length` bytes and `ResultLength` writable, as the kernel requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwQueryValueKey(
    KeyHandle: HANDLE,
    ValueName: PUNICODE_STRING,
    KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
    KeyValueInformation: PVOID,
    Length: ULONG,
    ResultLength: PULONG,
) -> NTSTATUS {
    if !require_irql("ZwQueryValueKey", PASSIVE_LEVEL) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if !HANDLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|h| h.contains(&(KeyHandle as usize)))
    {
        return STATUS_INVALID_HANDLE;
    }
    if KeyValueInformationClass != KeyValuePartialInformation {
        return STATUS_NOT_SUPPORTED;
    }
    // SAFETY: a live handle made by `ZwOpenKey`; the caller gives valid buffers.
    unsafe {
        let path = &(*KeyHandle.cast::<self::KeyHandle>()).path;
        let Some(name) = string_of(ValueName) else {
            return STATUS_INVALID_PARAMETER;
        };
        let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(value) = keys
            .get(path)
            .and_then(|values| values.get(&name.to_lowercase()))
        else {
            return STATUS_OBJECT_NAME_NOT_FOUND;
        };
        let data = value.data();
        let header = std::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);
        let needed = header + data.len();
        if !ResultLength.is_null() {
            *ResultLength = needed as ULONG;
        }
        if (Length as usize) < header {
            return STATUS_BUFFER_TOO_SMALL;
        }
        let info = KeyValueInformation.cast::<KEY_VALUE_PARTIAL_INFORMATION>();
        (*info).TitleIndex = 0;
        (*info).Type = value.kind();
        (*info).DataLength = data.len() as ULONG;
        let room = Length as usize - header;
        let copied = room.min(data.len());
        std::ptr::copy_nonoverlapping(
            data.as_ptr(),
            KeyValueInformation.cast::<u8>().add(header),
            copied,
        );
        if copied < data.len() {
            STATUS_BUFFER_OVERFLOW
        } else {
            STATUS_SUCCESS
        }
    }
}

/// `ZwClose`.
///
/// # Safety
/// Any value may be passed (an unknown handle is reported, as the kernel's verifier does);
/// `unsafe` for the kernel's signature.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwClose(Handle: HANDLE) -> NTSTATUS {
    if !require_irql("ZwClose", PASSIVE_LEVEL) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let removed = HANDLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .is_some_and(|h| h.remove(&(Handle as usize)));
    if !removed {
        bug_check(
            Rule::InvalidParameter,
            format!("ZwClose({Handle:p}): not an open handle"),
        );
        return STATUS_INVALID_HANDLE;
    }
    // SAFETY: made by `ZwOpenKey` with `Box::into_raw`, closed once.
    drop(unsafe { Box::from_raw(Handle.cast::<KeyHandle>()) });
    STATUS_SUCCESS
}
