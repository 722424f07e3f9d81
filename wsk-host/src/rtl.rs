//! Run-time library routines: `RtlInitUnicodeString`, `RtlGetVersion`.

use wsk_sys::*;

/// `RtlInitUnicodeString`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn RtlInitUnicodeString(
    DestinationString: PUNICODE_STRING,
    SourceString: PCWSTR,
) {
    let mut length = 0usize;
    if !SourceString.is_null() {
        // SAFETY: the caller gives a NUL-terminated string.
        while unsafe { *SourceString.add(length) } != 0 {
            length += 1;
        }
    }
    let bytes = (length * 2).min(0xfffc);
    // SAFETY: the caller gives a writable counted string.
    unsafe {
        (*DestinationString).Length = bytes as USHORT;
        (*DestinationString).MaximumLength = if SourceString.is_null() {
            0
        } else {
            (bytes + 2) as USHORT
        };
        (*DestinationString).Buffer = SourceString.cast_mut();
    }
}

/// `RtlGetVersion`: the system version of the session's provider configuration.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn RtlGetVersion(lpVersionInformation: PRTL_OSVERSIONINFOW) -> NTSTATUS {
    let (major, minor, build) = crate::session::config().os_version;
    // SAFETY: the caller gives a writable structure.
    unsafe {
        let info = &mut *lpVersionInformation;
        if info.dwOSVersionInfoSize as usize != std::mem::size_of::<RTL_OSVERSIONINFOW>() {
            return STATUS_INVALID_PARAMETER;
        }
        info.dwMajorVersion = major;
        info.dwMinorVersion = minor;
        info.dwBuildNumber = build;
        info.dwPlatformId = 2;
        info.szCSDVersion = [0; 128];
    }
    STATUS_SUCCESS
}
