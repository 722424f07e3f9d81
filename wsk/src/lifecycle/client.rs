//! [`WskClient`]: registration with the WSK subsystem, the captured provider NPI, the open
//! sockets and client-level requests, and the teardown that ends them all.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::{FALSE, IO_NO_INCREMENT, KernelMode};

use super::completion::BlockPool;
use super::shared::{Shared, Spare};
use super::socket::SocketCore;
use super::spare_sockets::SpareSockets;
use crate::irql::{Irql, require_at_most};
use crate::sync::SpinLock;
use crate::{Error, Result};

/// The client dispatch table given to `WskRegister`: WSK 1.0, no client event callback.
/// It must outlive the registration, hence a static.
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// A capability of the WSK provider that not every Windows release has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `WskGetAddressInfo`, `WskFreeAddressInfo`, `WskGetNameInfo` (Windows 7).
    NameResolution,
    /// `WskSendMessages` (Windows 8).
    SendMessages,
    /// Stream sockets and `WskListen` (Windows 10 1703, build 15063).
    StreamSockets,
    /// `WskConnectEx` of the connection and stream dispatch tables (Windows 10 1703, build
    /// 15063).
    ConnectEx,
    /// `WskSendEx` and `WskReceiveEx` of the connection and stream dispatch tables (Windows 10
    /// 1803, build 17134). The 1703 and 1709 providers end those tables at `WskConnectEx`.
    SendReceiveEx,
}

/// What the provider and the system offer, read when the client registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The WSK version negotiated (`WSK_PROVIDER_DISPATCH::Version`).
    pub version: u16,
    /// Highest WSK version the provider supports (`WskQueryProviderCharacteristics`; 0 unless
    /// [`RegisterOptions::query_provider_characteristics`] asked for it).
    pub highest_version: u16,
    /// Lowest WSK version the provider supports (likewise).
    pub lowest_version: u16,
    /// Windows major version (`RtlGetVersion`).
    pub os_major: u32,
    /// Windows minor version.
    pub os_minor: u32,
    /// Windows build number.
    pub os_build: u32,
}

impl ProviderInfo {
    /// Whether the running system's provider has `feature`. Provider dispatch tables belong
    /// to the provider: members newer than the running system are never read unless this
    /// says they exist.
    #[must_use]
    pub fn supports(&self, feature: Feature) -> bool {
        let at_least = |major: u32, minor: u32, build: u32| {
            (self.os_major, self.os_minor, self.os_build) >= (major, minor, build)
        };
        match feature {
            Feature::NameResolution => at_least(6, 1, 0),
            Feature::SendMessages => at_least(6, 2, 0),
            Feature::StreamSockets | Feature::ConnectEx => at_least(10, 0, 15063),
            Feature::SendReceiveEx => at_least(10, 0, 17134),
        }
    }
}

/// Options of [`WskClient::register_with`].
#[derive(Clone, Copy, Debug)]
pub struct RegisterOptions {
    /// How long `WskCaptureProviderNPI` waits for the WSK subsystem, in milliseconds
    /// ([`WSK_INFINITE_WAIT`] to wait as long as it takes, 0 not to wait).
    pub capture_timeout_ms: u32,
    /// Whether to ask the provider for the range of WSK versions it supports
    /// (`WskQueryProviderCharacteristics`, reported in [`ProviderInfo`]). It is informational
    /// — the version in use is the one the provider's dispatch table carries — so it is off by
    /// default.
    pub query_provider_characteristics: bool,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            capture_timeout_ms: WSK_INFINITE_WAIT,
            query_provider_characteristics: false,
        }
    }
}

/// The calling driver's driver object, as `DriverEntry` received it.
///
/// A [`WskClient`] keeps it to allocate the work item (`IoAllocateWorkItem`) that tears the
/// client down at PASSIVE_LEVEL when it is dropped at a higher IRQL; while that work item is
/// queued or running, the I/O manager keeps the driver loaded.
#[derive(Clone, Copy, Debug)]
pub struct DriverObject {
    ptr: NonNull<DRIVER_OBJECT>,
}

// SAFETY: a driver object is a kernel object usable from any thread; this crate only passes
// its address to kernel routines.
unsafe impl Send for DriverObject {}
// SAFETY: as above.
unsafe impl Sync for DriverObject {}

impl DriverObject {
    /// Wraps the driver object `DriverEntry` was given.
    ///
    /// # Safety
    /// `driver` must be the calling driver's own driver object (the one the I/O manager
    /// passed to its `DriverEntry`), which stays valid until the driver unloads.
    pub unsafe fn from_raw(driver: PDRIVER_OBJECT) -> Option<DriverObject> {
        NonNull::new(driver).map(|ptr| DriverObject { ptr })
    }

    /// The driver object.
    #[must_use]
    pub fn as_ptr(&self) -> PDRIVER_OBJECT {
        self.ptr.as_ptr()
    }
}

/// The open sockets of a client, as an intrusive doubly linked list of socket cores, the
/// number of client-level requests in flight, and whether the client is shutting down.
pub(crate) struct SocketList {
    head: *const SocketCore,
    count: usize,
    requests: usize,
    shutting_down: bool,
}

impl SocketList {
    fn quiet(&self) -> bool {
        self.count == 0 && self.requests == 0
    }
}

// SAFETY: the pointers are socket cores kept alive by the provider's reference while linked;
// the list is only touched under the client's spin lock.
unsafe impl Send for SocketList {}

/// The client's shared state: registration, captured NPI, open sockets, client-level
/// requests, and the work item of a teardown deferred to PASSIVE_LEVEL.
///
/// # Invariants
/// - `registration` and `npi` stay in place (the core is heap-allocated and never moved) from
///   `WskRegister` until `WskDeregister`; `npi` is valid from the capture until the release,
///   both done exactly once, by [`ClientCore::teardown`].
/// - `work_item` is the work item allocated at registration until the teardown frees it.
pub(crate) struct ClientCore {
    registration: UnsafeCell<WSK_REGISTRATION>,
    npi: UnsafeCell<WSK_PROVIDER_NPI>,
    info: UnsafeCell<ProviderInfo>,
    sockets: SpinLock<SocketList>,
    all_closed: UnsafeCell<KEVENT>,
    blocks: BlockPool,
    work_item: AtomicPtr<IO_WORKITEM>,
    /// Cores of the client's closed sockets, for its next ones.
    spare_sockets: SpareSockets,
}

// Freed with its last reference.
impl super::shared::LastReference for ClientCore {}

// SAFETY: the WSK structures are used by the provider from any thread; the mutable parts are
// behind the spin lock or written only before the core is shared.
unsafe impl Send for ClientCore {}
// SAFETY: as above.
unsafe impl Sync for ClientCore {}

/// Why a client-level request fails once the client's shutdown has begun.
const SHUTTING_DOWN: Error = Error::from_status(STATUS_DEVICE_NOT_READY);

impl ClientCore {
    /// What the provider and the system offer.
    pub(crate) fn info(&self) -> ProviderInfo {
        // SAFETY: written before the core was shared, read-only afterwards.
        unsafe { *self.info.get() }
    }

    /// The provider NPI captured at registration.
    pub(crate) fn npi(&self) -> &WSK_PROVIDER_NPI {
        // SAFETY: written before the core was shared, read-only afterwards.
        unsafe { &*self.npi.get() }
    }

    /// The provider's client-level dispatch table.
    pub(crate) fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: valid while the NPI is captured, which lasts while any socket is open or a
        // client request is open (the teardown releases it only after both are over).
        unsafe { &*self.npi().Dispatch }
    }

    /// A spare socket core to reuse, if the client keeps one. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn take_spare_socket(&self) -> Option<Spare<SocketCore>> {
        self.spare_sockets.take()
    }

    /// Keeps the core of a closed socket, reset for reuse, unless enough are kept; hands it
    /// back then. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn keep_spare_socket(&self, spare: Spare<SocketCore>) -> Option<Spare<SocketCore>> {
        self.spare_sockets.keep(spare)
    }

    /// The completion blocks of client-level requests.
    pub(crate) fn blocks(&self) -> &BlockPool {
        &self.blocks
    }

    /// Opens a client-level request (socket creation, name resolution, collecting a result):
    /// the teardown waits until it is closed with [`ClientCore::end_request`]. Fails once the
    /// shutdown has begun.
    pub(crate) fn begin_request(&self) -> Result<()> {
        let mut list = self.sockets.lock();
        if list.shutting_down {
            return Err(SHUTTING_DOWN);
        }
        list.requests += 1;
        Ok(())
    }

    /// Whether the client's shutdown has begun (taken under the client's lock).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.sockets.lock().shutting_down
    }

    /// Closes a request opened with [`ClientCore::begin_request`].
    pub(crate) fn end_request(&self) {
        let mut list = self.sockets.lock();
        list.requests -= 1;
        if list.quiet() && list.shutting_down {
            // SAFETY: the event lives in the client core, alive while `self` is.
            unsafe { KeSetEvent(self.all_closed.get(), IO_NO_INCREMENT.into(), FALSE) };
        }
    }

    /// Frees a name-resolution result (`WskFreeAddressInfo`).
    ///
    /// # Safety
    /// `list` must be a list from this client's `WskGetAddressInfo`, not yet freed; the caller
    /// runs at PASSIVE_LEVEL with a client request open (so the NPI is captured).
    pub(crate) unsafe fn free_address_list(&self, list: PADDRINFOEXW) {
        if list.is_null() {
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            if let Some(free) = self.dispatch().WskFreeAddressInfo {
                free(self.npi().Client, list);
            }
        }
    }

    /// Frees the result left in `slot` by a resolution nobody collected, if that can be done
    /// now (PASSIVE_LEVEL, client not shutting down); otherwise it stays there for the
    /// shutdown, or the block's next use, to free.
    pub(crate) fn free_address_list_now(&self, slot: &AtomicPtr<ADDRINFOEXW>) {
        if slot.load(Ordering::Relaxed).is_null()
            || Irql::current() > Irql::PASSIVE
            || self.begin_request().is_err()
        {
            return;
        }
        let list = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: the list came from this client's resolution and was taken from its slot
        // once; PASSIVE_LEVEL with a request open.
        unsafe { self.free_address_list(list) };
        self.end_request();
    }

    /// Links a new socket into the list — even during the shutdown, so that the teardown
    /// waits for its close too; returns `false` then (the caller closes the socket at once).
    pub(crate) fn link(&self, core: &SocketCore) -> bool {
        let mut list = self.sockets.lock();
        let this = core.as_ptr();
        // SAFETY: the list and the links of every linked core are guarded by the lock held.
        unsafe {
            let links = &mut *core.links.get();
            links.prev = core::ptr::null();
            links.next = list.head;
            links.linked = true;
            if let Some(head) = list.head.as_ref() {
                (*head.links.get()).prev = this;
            }
        }
        list.head = this;
        list.count += 1;
        !list.shutting_down
    }

    /// Unlinks a socket whose close has completed; signals the shutdown when it was the last.
    pub(crate) fn unlink(&self, core: &SocketCore) {
        let mut list = self.sockets.lock();
        // SAFETY: guarded by the lock held; linked neighbours are alive (linked cores are
        // kept alive by the provider's reference until they unlink here).
        unsafe {
            let links = &mut *core.links.get();
            if !links.linked {
                return;
            }
            links.linked = false;
            match links.prev.as_ref() {
                Some(prev) => (*prev.links.get()).next = links.next,
                None => list.head = links.next,
            }
            if let Some(next) = links.next.as_ref() {
                (*next.links.get()).prev = links.prev;
            }
        }
        list.count -= 1;
        if list.quiet() && list.shutting_down {
            // SAFETY: the event lives in the client core, alive while a socket refers to it.
            unsafe { KeSetEvent(self.all_closed.get(), IO_NO_INCREMENT.into(), FALSE) };
        }
    }

    /// Number of sockets whose close has not completed.
    fn open_sockets(&self) -> usize {
        self.sockets.lock().count
    }

    /// Ends the client: refuses new sockets and requests, cancels the client-level requests
    /// in flight, closes every open socket (which cancels their requests), waits until all of
    /// them are over, frees the name-resolution results nobody collected, releases the NPI,
    /// deregisters, and frees the work item. IRQL == PASSIVE_LEVEL; called once, by the
    /// client's owner (see [`WskClient`]'s drop).
    ///
    /// What it waits for, and why that ends: the cancelled requests complete (WSK completes
    /// every IRP); a socket's close is issued as soon as no provider call is in progress on
    /// it and its retained indications are released — the close revokes them, so this waits
    /// only for a [`RetainedView`](crate::RetainedView) open at that moment, nothing else of
    /// the user's.
    fn teardown(&self) {
        {
            let mut list = self.sockets.lock();
            list.shutting_down = true;
            if list.quiet() {
                // SAFETY: the event lives in the core.
                unsafe { KeSetEvent(self.all_closed.get(), IO_NO_INCREMENT.into(), FALSE) };
            }
        }
        self.blocks.cancel_in_flight();
        // Close every linked socket. A core unlinks itself when its close completes, so each
        // round takes, under the lock, a reference to one linked socket whose close was not
        // requested yet, and requests the close outside the lock.
        loop {
            let next = {
                let list = self.sockets.lock();
                let mut cursor = list.head;
                let mut found = None;
                // SAFETY: linked cores are alive (the provider's reference) and their links
                // are guarded by the lock held; a reference taken here keeps one alive after.
                unsafe {
                    while let Some(socket) = cursor.as_ref() {
                        if !socket.close_requested() {
                            found = Some(socket.to_shared());
                            break;
                        }
                        cursor = (*socket.links.get()).next;
                    }
                }
                found
            };
            match next {
                Some(socket) => socket.request_close(),
                None => break,
            }
        }
        // SAFETY: waiting at PASSIVE_LEVEL (the callers' contract) on the core's event.
        unsafe {
            KeWaitForSingleObject(
                self.all_closed.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                core::ptr::null_mut(),
            );
        }
        // Every request has completed, so no timer of theirs is set (each completion stops
        // its timer or finds it expired); a deadline's or a sleep's DPC may still be running
        // on another processor. Wait for it: nothing of this driver may run after its unload.
        // SAFETY: PASSIVE_LEVEL (the callers' contract).
        unsafe { KeFlushQueuedDpcs() };
        for list in self.blocks.uncollected_address_lists() {
            // SAFETY: a list left by a completed resolution, taken from its slot once; no
            // request is in flight and the NPI is still captured; PASSIVE_LEVEL.
            unsafe { self.free_address_list(list) };
        }
        // SAFETY: every socket is closed and no client request is in flight: the NPI is
        // released once and the client deregistered once.
        unsafe {
            WskReleaseProviderNPI(self.registration.get());
            WskDeregister(self.registration.get());
        }
        let work_item = self.work_item.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !work_item.is_null() {
            // SAFETY: allocated at registration, not queued (the teardown runs once: either
            // here, with the item unused, or from the item's own routine, which may free it).
            unsafe { IoFreeWorkItem(work_item) };
        }
    }
}

/// The work item routine of a teardown deferred by a drop above PASSIVE_LEVEL: runs at
/// PASSIVE_LEVEL in a system worker thread; the I/O manager keeps the driver loaded until it
/// returns.
unsafe extern "system" fn teardown_work_item(
    _io_object: PVOID,
    context: PVOID,
    _work_item: PIO_WORKITEM,
) {
    // SAFETY: the context is the reference the drop gave up with `into_raw`.
    let core = unsafe { Shared::<ClientCore>::from_raw(context.cast::<ClientCore>()) };
    core.teardown();
}

/// A registered WSK client: `WskRegister` plus `WskCaptureProviderNPI`.
///
/// Sockets are created through it and keep a reference to its shared state, so they can be
/// owned anywhere (in tasks, in a device extension). Dropping the client — or
/// [`shutdown`](WskClient::shutdown) — cancels its requests in flight, closes every socket
/// still open (their handles then fail with [`Error::SOCKET_CLOSED`]), waits for the closes
/// to complete, releases the NPI once and deregisters once, so `WskDeregister` cannot hang
/// the driver's unload. Dropped above PASSIVE_LEVEL (for instance by a task that ends in a
/// completion routine), it does the same from a work item at PASSIVE_LEVEL, which keeps the
/// driver loaded until it is done.
///
/// Registration needs IRQL == PASSIVE_LEVEL. The client is `Send + Sync`: sockets may be
/// created from any thread, at IRQL <= DISPATCH_LEVEL.
pub struct WskClient {
    core: Option<Shared<ClientCore>>,
}

impl WskClient {
    /// Registers with the WSK subsystem and captures its NPI, waiting as long as needed.
    /// IRQL == PASSIVE_LEVEL.
    pub fn register(driver: DriverObject) -> Result<WskClient> {
        WskClient::register_with(driver, RegisterOptions::default())
    }

    /// Registers with the given options. IRQL == PASSIVE_LEVEL.
    pub fn register_with(driver: DriverObject, options: RegisterOptions) -> Result<WskClient> {
        require_at_most(Irql::PASSIVE)?;
        // Capturing the NPI may wait: not inside a callback or task either.
        super::callback::require_wait_allowed()?;
        // SAFETY: `driver` is the caller's driver object (its constructor's contract);
        // IoAllocateWorkItem accepts a driver object, for use with IoQueueWorkItemEx.
        let work_item = unsafe { IoAllocateWorkItem(driver.as_ptr().cast()) };
        if work_item.is_null() {
            return Err(Error::INSUFFICIENT_RESOURCES);
        }
        let core = match Shared::try_new(ClientCore {
            registration: UnsafeCell::new(WSK_REGISTRATION::default()),
            npi: UnsafeCell::new(WSK_PROVIDER_NPI::default()),
            info: UnsafeCell::new(ProviderInfo {
                version: 0,
                highest_version: 0,
                lowest_version: 0,
                os_major: 0,
                os_minor: 0,
                os_build: 0,
            }),
            sockets: SpinLock::new(SocketList {
                head: core::ptr::null(),
                count: 0,
                requests: 0,
                shutting_down: false,
            }),
            all_closed: UnsafeCell::new(KEVENT::default()),
            blocks: BlockPool::new(),
            work_item: AtomicPtr::new(work_item),
            spare_sockets: SpareSockets::new(),
        }) {
            Ok(core) => core,
            Err(error) => {
                // SAFETY: allocated above, never queued.
                unsafe { IoFreeWorkItem(work_item) };
                return Err(error);
            }
        };
        let free_work_item = |core: &ClientCore| {
            // SAFETY: allocated above, never queued; taken from the core once.
            unsafe { IoFreeWorkItem(core.work_item.swap(core::ptr::null_mut(), Ordering::AcqRel)) };
        };
        let mut client_npi = WSK_CLIENT_NPI {
            ClientContext: core::ptr::null_mut(),
            Dispatch: &raw const CLIENT_DISPATCH,
        };
        // SAFETY: the registration lives in the heap-allocated core until deregistration; the
        // client dispatch table is static; the IRQL is PASSIVE (checked).
        let status = unsafe { WskRegister(&raw mut client_npi, core.registration.get()) };
        if let Err(error) = Error::check(status) {
            free_work_item(&core);
            return Err(error);
        }
        // SAFETY: registered above; the NPI is written into the core before it is shared.
        let status = unsafe {
            WskCaptureProviderNPI(
                core.registration.get(),
                options.capture_timeout_ms,
                core.npi.get(),
            )
        };
        if let Err(error) = Error::check(status) {
            // SAFETY: one deregistration for the registration above, nothing captured.
            unsafe { WskDeregister(core.registration.get()) };
            free_work_item(&core);
            return Err(error);
        }
        let mut info = query_info(&core, options.query_provider_characteristics);
        // SAFETY: the core is not shared yet (only this function holds it): the cells are
        // written before any reader exists. The NPI's dispatch table was just captured.
        unsafe {
            info.version = (*(*core.npi.get()).Dispatch).Version;
            *core.info.get() = info;
            KeInitializeEvent(core.all_closed.get(), NotificationEvent, FALSE);
        }
        Ok(WskClient { core: Some(core) })
    }

    fn shared(&self) -> &Shared<ClientCore> {
        self.core
            .as_ref()
            .expect("a client has its core until dropped")
    }

    /// What the provider and the system offer.
    #[must_use]
    pub fn info(&self) -> ProviderInfo {
        self.shared().info()
    }

    /// Whether the provider has `feature` (see [`ProviderInfo::supports`]).
    #[must_use]
    pub fn supports(&self, feature: Feature) -> bool {
        self.shared().info().supports(feature)
    }

    /// Number of sockets of this client whose close has not completed.
    #[must_use]
    pub fn open_sockets(&self) -> usize {
        self.shared().open_sockets()
    }

    /// Cancels the client's requests, closes every open socket, waits for the closes,
    /// releases the provider NPI and deregisters. IRQL == PASSIVE_LEVEL: above it, this fails
    /// with [`Error::IRQL_TOO_HIGH`] and the same teardown runs in a work item at
    /// PASSIVE_LEVEL, as for a drop.
    pub fn shutdown(mut self) -> Result<()> {
        let core = self
            .core
            .take()
            .expect("a client has its core until dropped");
        end(core)
    }

    pub(crate) fn core(&self) -> &Shared<ClientCore> {
        self.shared()
    }
}

impl Drop for WskClient {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            // Above PASSIVE_LEVEL the teardown is queued to a work item: nothing to report.
            let _ = end(core);
        }
    }
}

/// Tears the client down now (PASSIVE_LEVEL) or from its work item (above).
fn end(core: Shared<ClientCore>) -> Result<()> {
    if Irql::current() == Irql::PASSIVE && super::callback::require_wait_allowed().is_ok() {
        core.teardown();
        return Ok(());
    }
    let work_item = core.work_item.load(Ordering::Acquire);
    // SAFETY: the work item was allocated at registration for this client and is queued
    // once (the core is ended once, by its only `WskClient`); its routine takes back the
    // reference given up here and runs the teardown at PASSIVE_LEVEL.
    unsafe {
        IoQueueWorkItemEx(
            work_item,
            wsk_sys::io_workitem_routine_ex!(teardown_work_item),
            DelayedWorkQueue,
            core.into_raw().cast_mut().cast(),
        );
    }
    Err(Error::IRQL_TOO_HIGH)
}

impl core::fmt::Debug for WskClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WskClient")
            .field("info", &self.info())
            .finish()
    }
}

/// Reads the provider's version range and the system's version.
fn query_info(core: &ClientCore, query_characteristics: bool) -> ProviderInfo {
    let mut characteristics = WSK_PROVIDER_CHARACTERISTICS::default();
    if query_characteristics {
        // SAFETY: the client is registered; PASSIVE_LEVEL (checked by the caller).
        let status = unsafe {
            WskQueryProviderCharacteristics(core.registration.get(), &raw mut characteristics)
        };
        if !NT_SUCCESS(status) {
            characteristics = WSK_PROVIDER_CHARACTERISTICS::default();
        }
    }
    let mut version = RTL_OSVERSIONINFOW {
        dwOSVersionInfoSize: core::mem::size_of::<RTL_OSVERSIONINFOW>() as ULONG,
        ..Default::default()
    };
    // SAFETY: the structure is initialised with its size; PASSIVE_LEVEL.
    let status = unsafe { RtlGetVersion(&raw mut version) };
    if !NT_SUCCESS(status) {
        version = RTL_OSVERSIONINFOW::default();
    }
    ProviderInfo {
        version: 0,
        highest_version: characteristics.HighestVersion,
        lowest_version: characteristics.LowestVersion,
        os_major: version.dwMajorVersion,
        os_minor: version.dwMinorVersion,
        os_build: version.dwBuildNumber,
    }
}
