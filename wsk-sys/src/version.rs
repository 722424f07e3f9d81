//! WSK version macros and the WSK NPI identifier (`wsk.h`, `netioddk.h`).

use crate::{GUID, USHORT};

/// Builds a WSK version number: major in the high byte, minor in the low byte. WDK:
/// `MAKE_WSK_VERSION`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn MAKE_WSK_VERSION(major: u8, minor: u8) -> USHORT {
    ((major as USHORT) << 8) | (minor as USHORT)
}

/// The major part of a WSK version number. WDK: `WSK_MAJOR_VERSION`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn WSK_MAJOR_VERSION(version: USHORT) -> u8 {
    (version >> 8) as u8
}

/// The minor part of a WSK version number. WDK: `WSK_MINOR_VERSION`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn WSK_MINOR_VERSION(version: USHORT) -> u8 {
    (version & 0xff) as u8
}

/// Identifier of the WSK network programming interface, the `NpiId` of
/// [`WSK_EVENT_CALLBACK_CONTROL`](crate::WSK_EVENT_CALLBACK_CONTROL):
/// `{2227E803-8D8B-11D4-ABAD-009027719E09}`. WDK: `NPI_WSK_INTERFACE_ID`.
///
/// The WDK declares it as an external variable; the value is all a WSK provider reads, so
/// a constant serves. Take its address through a `static` of your own when the provider
/// needs a pointer that outlives the call.
pub const NPI_WSK_INTERFACE_ID: GUID = GUID {
    Data1: 0x2227_E803,
    Data2: 0x8D8B,
    Data3: 0x11D4,
    Data4: [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09],
};
