//! `wsk_tcp_send_raw.sys`: the raw twin of `wsk_tcp_send.sys` — connects to a TCP server,
//! sends one message, closes — written against `wsk-sys` alone, the way the C of Microsoft's
//! WSK documentation is: one IRP reused for each step, a completion routine that chains the
//! next step and returns `STATUS_MORE_PROCESSING_REQUIRED`, the buffer's MDL built by hand,
//! and an unload routine that cancels and waits.
//!
//! Parameters: as `wsk_tcp_send.sys` (`Server`, `Message`).
//!
//! It exists to be compared with the safe version (the same behaviour in a fraction of the
//! code, with ownership checked by the compiler), and as the baseline of the `wsk` crate's
//! benchmark.
#![no_std]

extern crate alloc;

use core::net::SocketAddr;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use wsk_driver_runtime::{Parameters, export_driver_entry, kprint, pool::POOL_TAG};
use wsk_sys::*;

const DEFAULT_SERVER: &str = "127.0.0.1:7000";
const DEFAULT_MESSAGE: &str = "Hello from a Rust WSK driver\n";

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// Where the exchange is; each completion moves it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Connecting,
    Sending,
    Closing,
}

/// Everything the exchange uses, in one non-paged pool block.
///
/// # Invariants
/// Owned by [`CONTEXT`] from `DriverEntry` to `DriverUnload`. While `irp` is in flight the
/// provider owns it, the MDL and the buffer; the completion routine takes them back. `done`
/// is signalled once, when the last step has completed and nothing is in flight.
struct Context {
    registration: WSK_REGISTRATION,
    provider: WSK_PROVIDER_NPI,
    /// The one IRP of the exchange, reused for each step.
    irp: PIRP,
    step: Step,
    /// The connected socket, once the connect has completed.
    socket: PWSK_SOCKET,
    /// The message: pool memory described by `mdl`.
    data: *mut u8,
    mdl: PMDL,
    length: usize,
    /// Bytes sent so far.
    sent: usize,
    local: SOCKADDR_INET,
    remote: SOCKADDR_INET,
    server: SocketAddr,
    /// The first failure, if any.
    status: NTSTATUS,
    /// Set by `DriverUnload`: no further step may start.
    stopping: AtomicBool,
    done: KEVENT,
}

/// The driver's context between `DriverEntry` and `DriverUnload`.
static CONTEXT: AtomicPtr<Context> = AtomicPtr::new(null_mut());

/// Prepares the IRP for the next step: reused, with the completion routine set again.
///
/// # Safety
/// The IRP is not in flight; `context` is the exchange's context.
unsafe fn rearm(context: *mut Context) {
    // SAFETY: as the caller guarantees.
    unsafe {
        IoReuseIrp((*context).irp, STATUS_UNSUCCESSFUL);
        IoSetCompletionRoutine(
            (*context).irp,
            Some(step_completed),
            context.cast(),
            true,
            true,
            true,
        );
    }
}

/// Issues the send of the rest of the message.
///
/// # Safety
/// The socket is connected; the IRP is rearmed and not in flight.
unsafe fn send_rest(context: *mut Context) {
    // SAFETY: as the caller guarantees; the WSK_BUF is read by the provider during the call.
    unsafe {
        let context = &mut *context;
        context.step = Step::Sending;
        let mut buffer = WSK_BUF {
            Mdl: context.mdl,
            Offset: context.sent as ULONG,
            Length: (context.length - context.sent) as SIZE_T,
        };
        let dispatch = (*context.socket)
            .Dispatch
            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
        ((*dispatch).WskSend.expect("WskSend"))(context.socket, &mut buffer, 0, context.irp);
    }
}

/// Issues the close of the socket, or signals the end when there is none.
///
/// # Safety
/// The IRP is rearmed and not in flight.
unsafe fn close_or_finish(context: *mut Context) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let context = &mut *context;
        if context.socket.is_null() {
            KeSetEvent(&mut context.done, 0, FALSE);
            return;
        }
        context.step = Step::Closing;
        let dispatch = (*context.socket)
            .Dispatch
            .cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        ((*dispatch).WskCloseSocket.expect("WskCloseSocket"))(context.socket, context.irp);
    }
}

/// The completion routine of every step: takes the IRP back, starts the next step with it,
/// and tells the I/O manager to stop processing it. IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn step_completed(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    let context = context.cast::<Context>();
    // SAFETY: the context outlives the exchange (invariant); the IRP is back from the
    // provider, so this routine owns it.
    unsafe {
        let status = (*irp).IoStatus.u.Status;
        let information = (*irp).IoStatus.Information as usize;
        let step = (*context).step;
        if !NT_SUCCESS(status) && NT_SUCCESS((*context).status) {
            (*context).status = status;
            if status != STATUS_CANCELLED {
                kprint!(
                    "wsk_tcp_send_raw: {:?} {} failed: {:#010X}\n",
                    step,
                    (*context).server,
                    status as u32
                );
            }
        }
        rearm(context);
        // Read after the IRP is reused: an unload that sets `stopping` later cancels the
        // reused IRP, whose cancel flag it then sets.
        let stopping = (*context).stopping.load(Ordering::SeqCst);
        match step {
            Step::Connecting if NT_SUCCESS(status) => {
                (*context).socket = information as PWSK_SOCKET;
                if stopping {
                    close_or_finish(context);
                } else {
                    send_rest(context);
                }
            }
            Step::Connecting => close_or_finish(context),
            Step::Sending if NT_SUCCESS(status) => {
                (*context).sent += information;
                if (*context).sent < (*context).length && !stopping {
                    send_rest(context);
                } else {
                    if (*context).sent == (*context).length {
                        kprint!(
                            "wsk_tcp_send_raw: sent {} bytes to {}\n",
                            (*context).sent,
                            (*context).server
                        );
                    }
                    close_or_finish(context);
                }
            }
            Step::Sending => close_or_finish(context),
            Step::Closing => {
                (*context).socket = null_mut();
                KeSetEvent(&mut (*context).done, 0, FALSE);
            }
        }
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Frees what `context` holds and the context itself, in the reverse order of `start`.
///
/// # Safety
/// Nothing is in flight; `context` came from `start` and is not used afterwards.
unsafe fn release(context: *mut Context, registered: bool, captured: bool) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let c = &mut *context;
        if !c.irp.is_null() {
            IoFreeIrp(c.irp);
        }
        if !c.mdl.is_null() {
            IoFreeMdl(c.mdl);
        }
        if !c.data.is_null() {
            ExFreePoolWithTag(c.data.cast(), POOL_TAG);
        }
        if captured {
            WskReleaseProviderNPI(&mut c.registration);
        }
        if registered {
            WskDeregister(&mut c.registration);
        }
        ExFreePoolWithTag(context.cast(), POOL_TAG);
    }
}

/// Reads the configuration, registers, allocates, and issues the connect.
fn start(registry_path: PUNICODE_STRING) -> Result<(), NTSTATUS> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }.map_err(|e| e.status())?;
    let server = parameters
        .string("Server")
        .map_err(|e| e.status())?
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let Ok(server) = server.trim().parse::<SocketAddr>() else {
        kprint!("wsk_tcp_send_raw: Server `{server}` is not an IP address and port\n");
        return Err(STATUS_INVALID_PARAMETER);
    };
    let message = parameters
        .string("Message")
        .map_err(|e| e.status())?
        .unwrap_or_else(|| DEFAULT_MESSAGE.into());
    if message.is_empty() || message.len() > u32::MAX as usize {
        return Err(STATUS_INVALID_PARAMETER);
    }
    drop(parameters);

    // SAFETY: every pointer below is checked before use; on each failure what was made is
    // released in reverse order; the context is published only once the connect is issued.
    unsafe {
        // Non-paged pool on every release from Windows 7 (`ExAllocatePool2` where the system
        // exports it, looked up at run time, not imported).
        let context = pool::allocate_non_paged_zeroed(size_of::<Context>() as SIZE_T, POOL_TAG)
            .cast::<Context>();
        if context.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let unspecified: SocketAddr = if server.is_ipv4() {
            SocketAddr::from(([0u8; 4], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        context.write(Context {
            registration: WSK_REGISTRATION::default(),
            provider: WSK_PROVIDER_NPI::default(),
            irp: null_mut(),
            step: Step::Connecting,
            socket: null_mut(),
            data: null_mut(),
            mdl: null_mut(),
            length: message.len(),
            sent: 0,
            local: SOCKADDR_INET::from(unspecified),
            remote: SOCKADDR_INET::from(server),
            server,
            status: STATUS_SUCCESS,
            stopping: AtomicBool::new(false),
            done: KEVENT::default(),
        });
        let c = &mut *context;
        KeInitializeEvent(&mut c.done, NotificationEvent, FALSE);

        let mut npi = WSK_CLIENT_NPI {
            ClientContext: null_mut(),
            Dispatch: &CLIENT_DISPATCH,
        };
        let status = WskRegister(&mut npi, &mut c.registration);
        if !NT_SUCCESS(status) {
            release(context, false, false);
            return Err(status);
        }
        let status = WskCaptureProviderNPI(&mut c.registration, WSK_INFINITE_WAIT, &mut c.provider);
        if !NT_SUCCESS(status) {
            release(context, true, false);
            return Err(status);
        }
        c.data = pool::allocate_non_paged_zeroed(message.len() as SIZE_T, POOL_TAG).cast();
        c.irp = IoAllocateIrp(1, FALSE);
        if !c.data.is_null() {
            core::ptr::copy_nonoverlapping(message.as_ptr(), c.data, message.len());
            c.mdl = IoAllocateMdl(
                c.data.cast(),
                message.len() as ULONG,
                FALSE,
                FALSE,
                null_mut(),
            );
        }
        if c.data.is_null() || c.irp.is_null() || c.mdl.is_null() {
            release(context, true, true);
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        MmBuildMdlForNonPagedPool(c.mdl);

        CONTEXT.store(context, Ordering::SeqCst);
        IoSetCompletionRoutine(
            c.irp,
            Some(step_completed),
            context.cast(),
            true,
            true,
            true,
        );
        // The completion routine runs whatever this returns (also on inline completion).
        ((*c.provider.Dispatch)
            .WskSocketConnect
            .expect("WskSocketConnect"))(
            c.provider.Client,
            SOCK_STREAM,
            IPPROTO_TCP,
            (&raw mut c.local).cast(),
            (&raw mut c.remote).cast(),
            0,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            c.irp,
        );
    }
    Ok(())
}

/// The driver's entry point (exported as `DriverEntry` in the image). PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager (or the host runner) with a valid driver object and registry
/// path.
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    match start(registry_path) {
        Ok(()) => {
            // SAFETY: the driver object is valid for the driver's lifetime.
            unsafe { (*driver).DriverUnload = Some(driver_unload) };
            STATUS_SUCCESS
        }
        Err(status) => {
            kprint!("wsk_tcp_send_raw: not started: {:#010X}\n", status as u32);
            status
        }
    }
}

/// Stops the exchange (cancelling the step in flight), waits for its end, releases
/// everything. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    let context = CONTEXT.swap(null_mut(), Ordering::SeqCst);
    if context.is_null() {
        return;
    }
    // SAFETY: the context lives until `release` below; the IRP is freed only after `done`,
    // so cancelling it is safe whatever step it is in.
    unsafe {
        (*context).stopping.store(true, Ordering::SeqCst);
        if KeReadStateEvent(&mut (*context).done) == 0 {
            IoCancelIrp((*context).irp);
        }
        KeWaitForSingleObject(
            (&raw mut (*context).done).cast(),
            Executive,
            KernelMode,
            FALSE,
            null_mut(),
        );
        release(context, true, true);
    }
    kprint!("wsk_tcp_send_raw: unloaded\n");
}

export_driver_entry!(driver_entry);
