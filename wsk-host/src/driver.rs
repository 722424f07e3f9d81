//! Loading a driver: runs its `DriverEntry` with a `DRIVER_OBJECT` and a registry path whose
//! `Parameters` key holds the values given, and its `DriverUnload` afterwards — the way the
//! example drivers' tests and the host runner run a driver in user mode.

use wsk_sys::*;

use crate::registry::{self, RegValue};

/// The registry path of a driver's service key.
#[must_use]
pub fn service_key(name: &str) -> String {
    format!("\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{name}")
}

/// A driver whose `DriverEntry` succeeded.
pub struct LoadedDriver {
    name: String,
    object: Box<DRIVER_OBJECT>,
    _name_units: Vec<u16>,
    _path_units: Vec<u16>,
}

impl std::fmt::Debug for LoadedDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedDriver")
            .field("name", &self.name)
            .finish()
    }
}

fn counted(units: &mut [u16]) -> UNICODE_STRING {
    let bytes = ((units.len() - 1) * 2) as USHORT;
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes + 2,
        Buffer: units.as_mut_ptr(),
    }
}

fn utf16(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

/// Runs a driver's `DriverEntry` at PASSIVE_LEVEL, with `params` as the values of its
/// `<service key>\Parameters` registry key. Returns the loaded driver, or the status
/// `DriverEntry` failed with.
pub fn load(
    name: &str,
    entry: PDRIVER_INITIALIZE,
    params: &[(&str, RegValue)],
) -> Result<LoadedDriver, NTSTATUS> {
    let entry = entry.ok_or(STATUS_INVALID_PARAMETER)?;
    let key = service_key(name);
    let parameters = format!("{key}\\Parameters");
    // The Parameters key exists even when empty, as an installed service's would.
    registry::set_value(&parameters, "", RegValue::Dword(0));
    for (value, data) in params {
        registry::set_value(&parameters, value, data.clone());
    }
    let mut name_units = utf16(&format!("\\Driver\\{name}"));
    let mut path_units = utf16(&key);
    let mut object = Box::new(DRIVER_OBJECT::default());
    object.Type = 4;
    object.Size = std::mem::size_of::<DRIVER_OBJECT>() as CSHORT;
    object.DriverName = counted(&mut name_units);
    object.DriverInit = Some(entry);
    let mut path = counted(&mut path_units);
    let previous = crate::irql::set(PASSIVE_LEVEL);
    // SAFETY: the driver object and registry path live as long as the loaded driver; the
    // entry point is the driver's.
    let status = unsafe { entry(&mut *object, &mut path) };
    crate::irql::set(previous);
    if !NT_SUCCESS(status) {
        return Err(status);
    }
    Ok(LoadedDriver {
        name: name.to_string(),
        object,
        _name_units: name_units,
        _path_units: path_units,
    })
}

impl LoadedDriver {
    /// Whether the driver set an unload routine (a driver without one cannot be unloaded).
    #[must_use]
    pub fn can_unload(&self) -> bool {
        self.object.DriverUnload.is_some()
    }

    /// Runs `DriverUnload` at PASSIVE_LEVEL. Returns `false` when the driver has none.
    pub fn unload(mut self) -> bool {
        let Some(unload) = self.object.DriverUnload else {
            return false;
        };
        let previous = crate::irql::set(PASSIVE_LEVEL);
        // SAFETY: the driver's unload routine with its own driver object.
        unsafe { unload(&mut *self.object) };
        crate::irql::set(previous);
        true
    }
}
