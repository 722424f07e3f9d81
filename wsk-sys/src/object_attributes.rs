//! The `InitializeObjectAttributes` macro of `wdm.h`.

use crate::{HANDLE, OBJECT_ATTRIBUTES, PSECURITY_DESCRIPTOR, PUNICODE_STRING, ULONG};

/// Fills an [`OBJECT_ATTRIBUTES`] for opening a named object. WDK:
/// `InitializeObjectAttributes`.
///
/// # Safety
/// `attributes` must be valid for writes. `name` (and `security_descriptor`, when not null)
/// must stay valid for as long as `attributes` is used.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn InitializeObjectAttributes(
    attributes: *mut OBJECT_ATTRIBUTES,
    name: PUNICODE_STRING,
    flags: ULONG,
    root_directory: HANDLE,
    security_descriptor: PSECURITY_DESCRIPTOR,
) {
    // SAFETY: the caller guarantees `attributes` is valid for writes.
    unsafe {
        attributes.write(OBJECT_ATTRIBUTES {
            Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as ULONG,
            RootDirectory: root_directory,
            ObjectName: name,
            Attributes: flags,
            SecurityDescriptor: security_descriptor.cast(),
            SecurityQualityOfService: core::ptr::null_mut(),
        });
    }
}
