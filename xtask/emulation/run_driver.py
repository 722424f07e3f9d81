"""Runs a driver image's DriverEntry in speakeasy's emulated kernel and prints, as JSON, the
entry point's return value and every API call it made (module.function).

Usage: run_driver.py DRIVER.sys [Name=sz:TEXT | Name=dword:N]...

The parameters become values of the service's Parameters registry key, as the driver's INF
would install them.

speakeasy models most of ntoskrnl.exe and NETIO.SYS; the kernel routines the wsk-rs drivers
call that it does not model (and cng.sys's BCryptGenRandom) are given here the behaviour the kernel documents for them, so
that the run continues past them instead of stopping.
"""

import json
import os
import sys

import speakeasy
import speakeasy.binemu

POOL_FLAG_UNINITIALIZED = 0x2
STATUS_SUCCESS = 0
STATUS_NOT_SUPPORTED = 0xC00000BB


def alloc_pool(emu, size, tag):
    """Non-paged pool, zero-filled unless POOL_FLAG_UNINITIALIZED (zero-filled anyway)."""
    address = emu.mem_map(max(size, 1), tag="api.pool.%08x" % (tag & 0xFFFFFFFF))
    emu.mem_write(address, b"\0" * max(size, 1))
    return address


def ex_allocate_pool2(emu, api_name, func, params):
    flags, size, tag = params
    return alloc_pool(emu, size, tag)


def ke_release_spin_lock(emu, api_name, func, params):
    # Writes 0 to the lock (releases it) and restores the IRQL: nothing to restore here.
    emu.mem_write(params[0], b"\0" * 8)
    return 0


def ke_acquire_spin_lock_raise_to_dpc(emu, api_name, func, params):
    emu.mem_write(params[0], (1).to_bytes(8, "little"))
    return 0  # the previous IRQL: PASSIVE_LEVEL


def mm_build_mdl_for_non_paged_pool(emu, api_name, func, params):
    return 0


def io_cancel_irp(emu, api_name, func, params):
    # The IRP is marked cancelled; no cancel routine is set by the emulated provider.
    return 0


def ke_query_performance_counter(emu, api_name, func, params):
    if params[0]:
        emu.mem_write(params[0], (10_000_000).to_bytes(8, "little"))
    return 0


def io_allocate_work_item(emu, api_name, func, params):
    # An opaque work item (the routine only runs when queued, which DriverEntry does not do).
    return alloc_pool(emu, 64, 0x6B724F57)


def io_queue_work_item_ex(emu, api_name, func, params):
    # Queued: a system worker thread would run the routine after DriverEntry returns (a
    # timer's work item, armed by a task's first poll); the emulator runs DriverEntry alone.
    return 0


def io_free_work_item(emu, api_name, func, params):
    return 0


KTIMER_SIZE = 0x40


def ke_initialize_timer_ex(emu, api_name, func, params):
    # A timer, not set. Its DPC would run only after DriverEntry returns (a sleep's or a
    # deadline's timer), which the emulator does not reach.
    emu.mem_write(params[0], b"\0" * KTIMER_SIZE)
    return 0


def ke_flush_queued_dpcs(emu, api_name, func, params):
    # No DPC runs during DriverEntry: none is queued.
    return 0


UNBIASED_INTERRUPT_TIME = [0]


def ke_query_unbiased_interrupt_time(emu, api_name, func, params):
    # 100 ns units since boot: a clock that moves forward 1 ms per call.
    UNBIASED_INTERRUPT_TIME[0] += 10_000
    return UNBIASED_INTERRUPT_TIME[0]


def ps_get_current_thread_id(emu, api_name, func, params):
    # The emulator runs DriverEntry on one thread.
    return 0x1004


def ke_get_current_processor_number_ex(emu, api_name, func, params):
    # The emulator runs DriverEntry on one processor: index 0, group 0, number 0.
    (number,) = params
    if number:
        emu.mem_write(number, (0).to_bytes(4, "little"))
    return 0


def memcmp(emu, api_name, func, params):
    first, second, count = params
    if count == 0:
        return 0
    a, b = emu.mem_read(first, count), emu.mem_read(second, count)
    for x, y in zip(a, b):
        if x != y:
            return (x - y) & 0xFFFFFFFF
    return 0


WSK_FLAG_DATAGRAM_SOCKET = 0x4
STATUS_PENDING = 0x103


def wsk_socket(emu, api_name, original, params):
    """speakeasy's provider models datagram sockets only; a request for another kind (a
    listening socket) is left pending, as a provider that has not completed it yet would."""
    flags = params[4]
    if flags == WSK_FLAG_DATAGRAM_SOCKET:
        return original(params)
    return STATUS_PENDING


def chkstk(emu, api_name, func, params):
    """The stack probe the compiler calls before a frame over a page (4 KiB): it touches the
    pages between the stack pointer and the frame's end and preserves every register, RAX (the
    frame's size, which the caller subtracts next) included. The emulated stack is mapped
    whole, so there is nothing to touch; the hook's return value is RAX's."""
    return emu.reg_read("rax")


BCRYPT_USE_SYSTEM_PREFERRED_RNG = 0x2
STATUS_INVALID_HANDLE = 0xC0000008


def bcrypt_gen_random(emu, api_name, func, params):
    """cng.sys: the system-preferred generator (NULL handle) fills the buffer."""
    algorithm, buffer, length, flags = params
    if algorithm or not flags & BCRYPT_USE_SYSTEM_PREFERRED_RNG:
        return STATUS_INVALID_HANDLE
    if length:
        emu.mem_write(buffer, os.urandom(length & 0xFFFFFFFF))
    return STATUS_SUCCESS


def wsk_query_provider_characteristics(emu, api_name, func, params):
    """WSK_PROVIDER_CHARACTERISTICS: HighestVersion, LowestVersion (USHORT each): 1.0."""
    registration, characteristics = params
    emu.mem_write(characteristics, (0x0100).to_bytes(2, "little") * 2)
    return STATUS_SUCCESS


HOOKS = [
    ("ntoskrnl", "ExAllocatePool2", 3, ex_allocate_pool2),
    ("ntoskrnl", "KeReleaseSpinLock", 2, ke_release_spin_lock),
    ("ntoskrnl", "KeAcquireSpinLockRaiseToDpc", 1, ke_acquire_spin_lock_raise_to_dpc),
    ("ntoskrnl", "MmBuildMdlForNonPagedPool", 1, mm_build_mdl_for_non_paged_pool),
    ("ntoskrnl", "IoCancelIrp", 1, io_cancel_irp),
    ("ntoskrnl", "KeQueryPerformanceCounter", 1, ke_query_performance_counter),
    ("ntoskrnl", "memcmp", 3, memcmp),
    ("ntoskrnl", "IoAllocateWorkItem", 1, io_allocate_work_item),
    ("ntoskrnl", "IoQueueWorkItemEx", 4, io_queue_work_item_ex),
    ("ntoskrnl", "IoFreeWorkItem", 1, io_free_work_item),
    ("ntoskrnl", "PsGetCurrentThreadId", 0, ps_get_current_thread_id),
    ("ntoskrnl", "KeGetCurrentProcessorNumberEx", 1, ke_get_current_processor_number_ex),
    ("ntoskrnl", "__chkstk", 0, chkstk),
    ("ntoskrnl", "KeInitializeTimerEx", 2, ke_initialize_timer_ex),
    ("ntoskrnl", "KeFlushQueuedDpcs", 0, ke_flush_queued_dpcs),
    ("ntoskrnl", "KeQueryUnbiasedInterruptTime", 0, ke_query_unbiased_interrupt_time),
    ("netio", "WskQueryProviderCharacteristics", 2, wsk_query_provider_characteristics),
    ("cng", "BCryptGenRandom", 4, bcrypt_gen_random),
    ("netio", "callback_WskSocket", 11, wsk_socket),
]


STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_INVALID_PARAMETER = 0xC000000D
REG_SZ = 1
REG_DWORD = 4
KEY_VALUE_PARTIAL_INFORMATION = 2


def parse_parameters(parameters):
    """`Name=sz:TEXT` / `Name=dword:N` -> {lower-case name: (REG_* type, data bytes)}."""
    values = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        kind, _, data = value.partition(":")
        if kind == "dword":
            values[name.lower()] = (REG_DWORD, int(data, 0).to_bytes(4, "little"))
        elif kind == "sz":
            values[name.lower()] = (REG_SZ, (data + "\0").encode("utf-16le"))
        else:
            raise SystemExit("parameter %r: the value is sz:TEXT or dword:N" % parameter)
    return values


def read_unicode_string(emu, address):
    """A UNICODE_STRING's text (x64 layout: Length, MaximumLength, padding, Buffer)."""
    header = emu.mem_read(address, 16)
    length = int.from_bytes(header[0:2], "little")
    buffer = int.from_bytes(header[8:16], "little")
    return emu.mem_read(buffer, length).decode("utf-16le")


def query_value_key(values):
    """ZwQueryValueKey over the Parameters values, KeyValuePartialInformation only, as the
    kernel answers it (speakeasy's own cannot return REG_SZ data)."""

    def hook(emu, api_name, func, params):
        handle, value_name, info_class, info, length, result_length = params
        if info_class != KEY_VALUE_PARTIAL_INFORMATION:
            return STATUS_INVALID_PARAMETER
        name = read_unicode_string(emu, value_name).lower()
        if name not in values:
            return STATUS_OBJECT_NAME_NOT_FOUND
        kind, data = values[name]
        # TitleIndex, Type, DataLength, then the data.
        output = (0).to_bytes(4, "little") + kind.to_bytes(4, "little")
        output += len(data).to_bytes(4, "little") + data
        if result_length:
            emu.mem_write(result_length, len(output).to_bytes(4, "little"))
        if length < 12:
            return STATUS_BUFFER_TOO_SMALL
        if length < len(output):
            emu.mem_write(info, output[:12])
            return STATUS_BUFFER_OVERFLOW
        emu.mem_write(info, output)
        return STATUS_SUCCESS

    return hook


# A driver runs on a kernel stack: KERNEL_STACK_SIZE, 24 KiB on x64. speakeasy sizes the
# emulated stack from the image's SizeOfStackCommit instead (4 KiB by default, a user-mode
# field the kernel ignores), which a DriverEntry that polls a task's first steps outgrows.
KERNEL_STACK_SIZE = 0x6000


def kernel_sized_stacks():
    """Gives every emulated stack at least KERNEL_STACK_SIZE bytes."""
    original = speakeasy.binemu.BinaryEmulator.alloc_stack

    def alloc_stack(self, size):
        return original(self, max(size, KERNEL_STACK_SIZE))

    speakeasy.binemu.BinaryEmulator.alloc_stack = alloc_stack


def main():
    path = sys.argv[1]
    kernel_sized_stacks()
    se = speakeasy.Speakeasy()
    se.add_api_hook(query_value_key(parse_parameters(sys.argv[2:])), "ntoskrnl", "ZwQueryValueKey", argc=6)
    for module, name, argc, hook in HOOKS:
        se.add_api_hook(hook, module, name, argc=argc)
    module = se.load_module(path)
    se.run_module(module, all_entrypoints=False)
    report = se.get_report()
    entry_points = report.get("entry_points", [])
    result = {"entry_points": []}
    for entry in entry_points:
        result["entry_points"].append(
            {
                "type": entry.get("ep_type"),
                "return": entry.get("ret_val"),
                "error": entry.get("error"),
                "apis": [api.get("api_name") for api in entry.get("apis", [])],
            }
        )
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
