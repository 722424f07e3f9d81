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
    object: DriverObject,
}

/// A `DRIVER_OBJECT` as the I/O manager builds one for a driver named `name`: its
/// `DriverName` (`\Driver\<name>`) and the registry path of its service key, owned with it.
/// The object lives at a fixed address until this value is dropped; it is reached only through
/// [`as_ptr`](DriverObject::as_ptr).
#[derive(Debug)]
pub(crate) struct DriverObject {
    object: *mut DRIVER_OBJECT,
    _name_units: Vec<u16>,
    path_units: Vec<u16>,
}

// SAFETY: the object is owned (freed once, on drop) and exposed only as a raw pointer, every
// use of which is unsafe code that takes on the driver's own synchronisation duties.
unsafe impl Send for DriverObject {}
// SAFETY: as above; `&DriverObject` gives nothing but the pointer.
unsafe impl Sync for DriverObject {}

impl DriverObject {
    /// A driver object for `name`, with `entry` as its `DriverInit`.
    pub(crate) fn new(name: &str, entry: PDRIVER_INITIALIZE) -> DriverObject {
        let mut name_units = utf16(&format!("\\Driver\\{name}"));
        let path_units = utf16(&service_key(name));
        let mut object = Box::new(DRIVER_OBJECT::default());
        object.Type = 4;
        object.Size = std::mem::size_of::<DRIVER_OBJECT>() as CSHORT;
        object.DriverName = counted(&mut name_units);
        object.DriverInit = entry;
        DriverObject {
            object: Box::into_raw(object),
            _name_units: name_units,
            path_units,
        }
    }

    /// The object.
    pub(crate) fn as_ptr(&self) -> PDRIVER_OBJECT {
        self.object
    }

    /// The registry path of the driver's service key, as `DriverEntry` receives it.
    fn registry_path(&mut self) -> UNICODE_STRING {
        counted(&mut self.path_units)
    }
}

impl Drop for DriverObject {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::into_raw` in `new`, freed only here.
        drop(unsafe { Box::from_raw(self.object) });
    }
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
    let mut object = DriverObject::new(name, Some(entry));
    let mut path = object.registry_path();
    let previous = crate::irql::set(PASSIVE_LEVEL);
    // SAFETY: the driver object and registry path live as long as the loaded driver; the
    // entry point is the driver's.
    let status = unsafe { entry(object.as_ptr(), &mut path) };
    crate::irql::set(previous);
    if !NT_SUCCESS(status) {
        return Err(status);
    }
    Ok(LoadedDriver {
        name: name.to_string(),
        object,
    })
}

impl LoadedDriver {
    /// Whether the driver set an unload routine (a driver without one cannot be unloaded).
    #[must_use]
    pub fn can_unload(&self) -> bool {
        // SAFETY: the driver object lives as long as `self`.
        unsafe { (*self.object.as_ptr()).DriverUnload.is_some() }
    }

    /// The driver object `DriverEntry` received.
    #[must_use]
    pub fn driver_object(&self) -> PDRIVER_OBJECT {
        self.object.as_ptr()
    }

    /// Runs `DriverUnload` at PASSIVE_LEVEL, then — as the I/O manager's reference on the
    /// IO object of a queued or running work item keeps a driver loaded — waits until no work
    /// item is queued or running. A wait longer than
    /// [`ProviderConfig::work_item_wait_report`](crate::ProviderConfig::work_item_wait_report)
    /// is reported ([`Rule::WorkItemStillRunning`](crate::Rule::WorkItemStillRunning)), and
    /// the driver object is then kept for the routines still using it. Returns `false` when
    /// the driver has no unload routine (it is not unloaded).
    pub fn unload(self) -> bool {
        // SAFETY: the driver object lives as long as `self`.
        let Some(unload) = (unsafe { (*self.object.as_ptr()).DriverUnload }) else {
            return false;
        };
        let previous = crate::irql::set(PASSIVE_LEVEL);
        // SAFETY: the driver's unload routine with its own driver object.
        unsafe { unload(self.object.as_ptr()) };
        crate::irql::set(previous);
        // Nothing keeps a driver loaded for its timers or DPCs: its unload routine must have
        // cancelled and flushed them.
        crate::timer::report_pending("the return of the driver's unload routine");
        let wait = crate::session::config().work_item_wait_report;
        if !crate::workitem::wait_idle(wait)
            && crate::workitem::report_still_running("unloading the driver", wait)
        {
            std::mem::forget(self);
        }
        true
    }
}
