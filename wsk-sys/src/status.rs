//! The NTSTATUS classification macros of `ntdef.h`.

use crate::NTSTATUS;

/// Whether a status is a success or informational value (`>= 0`). WDK: `NT_SUCCESS`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

/// Whether a status is informational (severity 1). WDK: `NT_INFORMATION`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn NT_INFORMATION(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 1
}

/// Whether a status is a warning (severity 2). WDK: `NT_WARNING`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn NT_WARNING(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 2
}

/// Whether a status is an error (severity 3). WDK: `NT_ERROR`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn NT_ERROR(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 3
}
