//! NETIO's registration exports: `WskRegister`, `WskCaptureProviderNPI`,
//! `WskReleaseProviderNPI`, `WskDeregister`, `WskQueryProviderCharacteristics`.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use wsk_sys::*;

use crate::provider::{self, HostClient};
use crate::session;
use crate::verifier::{Rule, bug_check, require_irql};

/// Live registrations (their `HostClient` addresses).
static REGISTRATIONS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
/// Signalled when captures are released or sockets closed.
pub(crate) static CHANGED: Condvar = Condvar::new();
pub(crate) static CHANGED_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn notify() {
    let _guard = CHANGED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    CHANGED.notify_all();
}

/// Whether `client` is a live registration's client.
pub(crate) fn is_registered(client: usize) -> bool {
    REGISTRATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|r| r.contains(&client))
}

pub(crate) fn forget() {
    *REGISTRATIONS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A description of registrations still alive, if any.
pub(crate) fn leaked() -> Option<String> {
    let registrations = REGISTRATIONS.lock().unwrap_or_else(|e| e.into_inner());
    let live = registrations.as_ref().filter(|r| !r.is_empty())?;
    let captures: u32 = live
        .iter()
        .map(|&client| {
            // SAFETY: a live registration's client is alive.
            unsafe { (*(client as *const HostClient)).captures() }
        })
        .sum();
    Some(format!(
        "{} client(s) never deregistered ({captures} captured NPI(s) never released)",
        live.len()
    ))
}

/// # Safety
/// `registration` must be a `WSK_REGISTRATION` the caller owns.
unsafe fn client_of<'a>(registration: PWSK_REGISTRATION, routine: &str) -> Option<&'a HostClient> {
    // SAFETY: the registration is the caller's; its context is our client while registered.
    let client = unsafe {
        (*registration)
            .ReservedRegistrationContext
            .cast::<HostClient>()
    };
    let registered = REGISTRATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|r| r.contains(&(client as usize)));
    if !registered {
        bug_check(
            Rule::CaptureReleaseMismatch,
            format!("{routine} on a registration that is not registered"),
        );
        return None;
    }
    // SAFETY: registered clients stay alive until deregistration.
    Some(unsafe { &*client })
}

/// `WskRegister`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskRegister(
    WskClientNpi: PWSK_CLIENT_NPI,
    WskRegistration: PWSK_REGISTRATION,
) -> NTSTATUS {
    if !require_irql("WskRegister", PASSIVE_LEVEL) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    // SAFETY: the caller gives a valid client NPI whose dispatch table outlives the
    // registration, and a writable registration.
    unsafe {
        let npi = &*WskClientNpi;
        if npi.Dispatch.is_null() {
            return STATUS_INVALID_PARAMETER;
        }
        let client = Box::into_raw(Box::new(HostClient::new(npi.ClientContext, npi.Dispatch)));
        (*WskRegistration).ReservedRegistrationContext = client.cast();
        (*WskRegistration).ReservedRegistrationState = 1;
        REGISTRATIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(client as usize);
    }
    STATUS_SUCCESS
}

/// `WskCaptureProviderNPI`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskCaptureProviderNPI(
    WskRegistration: PWSK_REGISTRATION,
    WaitTimeout: ULONG,
    WskProviderNpi: PWSK_PROVIDER_NPI,
) -> NTSTATUS {
    if WaitTimeout != WSK_NO_WAIT
        && !require_irql("WskCaptureProviderNPI (with a wait)", PASSIVE_LEVEL)
    {
        return STATUS_INVALID_DEVICE_STATE;
    }
    // SAFETY: the caller's registration; the provider is always ready here.
    let Some(client) = (unsafe { client_of(WskRegistration, "WskCaptureProviderNPI") }) else {
        return STATUS_INVALID_PARAMETER;
    };
    let config = session::config();
    let wanted = client.requested_version();
    if wanted < config.lowest_version || wanted > config.highest_version {
        return STATUS_NOINTERFACE;
    }
    client.capture();
    // SAFETY: the caller gives a writable NPI.
    unsafe {
        (*WskProviderNpi).Client = std::ptr::from_ref(client).cast_mut().cast();
        (*WskProviderNpi).Dispatch = client.provider_dispatch();
    }
    STATUS_SUCCESS
}

/// `WskReleaseProviderNPI`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskReleaseProviderNPI(WskRegistration: PWSK_REGISTRATION) {
    require_irql("WskReleaseProviderNPI", DISPATCH_LEVEL);
    // SAFETY: the caller's registration.
    if let Some(client) = unsafe { client_of(WskRegistration, "WskReleaseProviderNPI") } {
        if !client.release() {
            bug_check(
                Rule::CaptureReleaseMismatch,
                "WskReleaseProviderNPI without a matching WskCaptureProviderNPI",
            );
        }
        notify();
    }
}

/// `WskDeregister`: waits for every captured NPI to be released and every socket to be
/// closed, as Windows does; reports a wait that lasts.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskDeregister(WskRegistration: PWSK_REGISTRATION) {
    if !require_irql("WskDeregister", PASSIVE_LEVEL) {
        return;
    }
    // SAFETY: the caller's registration.
    let Some(client) = (unsafe { client_of(WskRegistration, "WskDeregister") }) else {
        return;
    };
    let report_after = session::config().deregister_wait_report;
    let started = Instant::now();
    let mut reported = false;
    let mut guard = CHANGED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (captures, sockets) = (client.captures(), provider::sockets_of(client));
        if captures == 0 && sockets == 0 {
            break;
        }
        if !reported && started.elapsed() >= report_after {
            reported = true;
            bug_check(
                Rule::DeregisterWithOpenSockets,
                format!(
                    "WskDeregister has waited {:?} for {sockets} open socket(s) and {captures} captured NPI(s): \
                     close the sockets and release the NPI first, or unload hangs",
                    started.elapsed()
                ),
            );
        }
        guard = CHANGED
            .wait_timeout(guard, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(guard);
    REGISTRATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .remove(&(std::ptr::from_ref(client) as usize));
    // SAFETY: deregistered: nothing refers to the client any more (`client` is not used
    // again); the registration is the caller's and is reset. The client is freed through the
    // pointer the registration kept — the box's own, from `Box::into_raw` — not through one
    // made from the shared reference, which may not free it.
    unsafe {
        let boxed = (*WskRegistration)
            .ReservedRegistrationContext
            .cast::<HostClient>();
        (*WskRegistration).ReservedRegistrationContext = std::ptr::null_mut();
        (*WskRegistration).ReservedRegistrationState = 0;
        drop(Box::from_raw(boxed));
    }
}

/// `WskQueryProviderCharacteristics`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskQueryProviderCharacteristics(
    WskRegistration: PWSK_REGISTRATION,
    WskProviderCharacteristics: PWSK_PROVIDER_CHARACTERISTICS,
) -> NTSTATUS {
    require_irql("WskQueryProviderCharacteristics", PASSIVE_LEVEL);
    // SAFETY: the caller's registration.
    if unsafe { client_of(WskRegistration, "WskQueryProviderCharacteristics") }.is_none() {
        return STATUS_INVALID_PARAMETER;
    }
    let config = session::config();
    // SAFETY: the caller gives a writable structure.
    unsafe {
        (*WskProviderCharacteristics).HighestVersion = config.highest_version;
        (*WskProviderCharacteristics).LowestVersion = config.lowest_version;
    }
    STATUS_SUCCESS
}
