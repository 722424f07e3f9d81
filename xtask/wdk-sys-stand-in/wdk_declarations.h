/*
 * The WDK's own form of the kernel base items that wsk-sys's headers (wsk-sys/include) declare
 * in another form or not at all, so that `cargo xtask wdk-sys-check` can generate them as
 * wdk-sys does. wsk-sys declares its integer values as typed constants (`static const KIRQL
 * DISPATCH_LEVEL = 2;`), which bindgen types as declared; the WDK declares them as `#define`
 * (`wdm.h`, `ntdef.h`, `winnt.h`) and enumerations (`MODE`, `MM_PAGE_PRIORITY`), which bindgen
 * types `u32` and modules of `c_int` constants. Names and values are those of Microsoft's
 * reference pages (learn.microsoft.com) for each item; the check compares every value that
 * wsk-sys's headers also declare with theirs.
 *
 * wsk-sys's declarations of the same names are renamed away while its headers are read, so
 * that the WDK's forms below are the only ones.
 */
#ifndef WSK_SYS_WDK_DECLARATIONS_H
#define WSK_SYS_WDK_DECLARATIONS_H

#define KernelMode wsk_sys_KernelMode
#define UserMode wsk_sys_UserMode
#define PASSIVE_LEVEL wsk_sys_PASSIVE_LEVEL
#define APC_LEVEL wsk_sys_APC_LEVEL
#define DISPATCH_LEVEL wsk_sys_DISPATCH_LEVEL
#define TRUE wsk_sys_TRUE
#define FALSE wsk_sys_FALSE
#define IO_NO_INCREMENT wsk_sys_IO_NO_INCREMENT
#define IO_NETWORK_INCREMENT wsk_sys_IO_NETWORK_INCREMENT
#define MDL_MAPPED_TO_SYSTEM_VA wsk_sys_MDL_MAPPED_TO_SYSTEM_VA
#define MDL_PAGES_LOCKED wsk_sys_MDL_PAGES_LOCKED
#define MDL_SOURCE_IS_NONPAGED_POOL wsk_sys_MDL_SOURCE_IS_NONPAGED_POOL
#define MDL_ALLOCATED_FIXED_SIZE wsk_sys_MDL_ALLOCATED_FIXED_SIZE
#define MDL_PARTIAL wsk_sys_MDL_PARTIAL
#define MDL_PARTIAL_HAS_BEEN_MAPPED wsk_sys_MDL_PARTIAL_HAS_BEEN_MAPPED
#define MDL_MAPPING_CAN_FAIL wsk_sys_MDL_MAPPING_CAN_FAIL
#define LowPagePriority wsk_sys_LowPagePriority
#define NormalPagePriority wsk_sys_NormalPagePriority
#define HighPagePriority wsk_sys_HighPagePriority
#define MdlMappingNoExecute wsk_sys_MdlMappingNoExecute
#define SL_PENDING_RETURNED wsk_sys_SL_PENDING_RETURNED
#define SL_ERROR_RETURNED wsk_sys_SL_ERROR_RETURNED
#define SL_INVOKE_ON_CANCEL wsk_sys_SL_INVOKE_ON_CANCEL
#define SL_INVOKE_ON_SUCCESS wsk_sys_SL_INVOKE_ON_SUCCESS
#define SL_INVOKE_ON_ERROR wsk_sys_SL_INVOKE_ON_ERROR
#define OBJ_CASE_INSENSITIVE wsk_sys_OBJ_CASE_INSENSITIVE
#define OBJ_KERNEL_HANDLE wsk_sys_OBJ_KERNEL_HANDLE
#define KEY_QUERY_VALUE wsk_sys_KEY_QUERY_VALUE
#define KEY_READ wsk_sys_KEY_READ
#define REG_SZ wsk_sys_REG_SZ
#define REG_DWORD wsk_sys_REG_DWORD
#define REG_MULTI_SZ wsk_sys_REG_MULTI_SZ

#include "km_types.h"
#include "km_ntstatus.h"
#include "km_io.h"

#undef KernelMode
#undef UserMode
#undef PASSIVE_LEVEL
#undef APC_LEVEL
#undef DISPATCH_LEVEL
#undef TRUE
#undef FALSE
#undef IO_NO_INCREMENT
#undef IO_NETWORK_INCREMENT
#undef MDL_MAPPED_TO_SYSTEM_VA
#undef MDL_PAGES_LOCKED
#undef MDL_SOURCE_IS_NONPAGED_POOL
#undef MDL_ALLOCATED_FIXED_SIZE
#undef MDL_PARTIAL
#undef MDL_PARTIAL_HAS_BEEN_MAPPED
#undef MDL_MAPPING_CAN_FAIL
#undef LowPagePriority
#undef NormalPagePriority
#undef HighPagePriority
#undef MdlMappingNoExecute
#undef SL_PENDING_RETURNED
#undef SL_ERROR_RETURNED
#undef SL_INVOKE_ON_CANCEL
#undef SL_INVOKE_ON_SUCCESS
#undef SL_INVOKE_ON_ERROR
#undef OBJ_CASE_INSENSITIVE
#undef OBJ_KERNEL_HANDLE
#undef KEY_QUERY_VALUE
#undef KEY_READ
#undef REG_SZ
#undef REG_DWORD
#undef REG_MULTI_SZ

/* wdm.h: IRQLs (x64 and ARM64 values). */
#define PASSIVE_LEVEL 0
#define APC_LEVEL 1
#define DISPATCH_LEVEL 2

/* ntdef.h */
#define TRUE 1
#define FALSE 0

/* wdm.h: priority boosts. */
#define IO_NO_INCREMENT 0
#define IO_NETWORK_INCREMENT 2

/* wdm.h: processor modes. */
typedef enum _MODE {
    KernelMode,
    UserMode,
    MaximumMode
} MODE;

/* wdm.h: pages. */
#define PAGE_SIZE 0x1000
#define PAGE_SHIFT 12L
typedef ULONG_PTR PFN_NUMBER;

/* wdm.h: MDL flags. */
#define MDL_MAPPED_TO_SYSTEM_VA 0x0001
#define MDL_PAGES_LOCKED 0x0002
#define MDL_SOURCE_IS_NONPAGED_POOL 0x0004
#define MDL_ALLOCATED_FIXED_SIZE 0x0008
#define MDL_PARTIAL 0x0010
#define MDL_PARTIAL_HAS_BEEN_MAPPED 0x0020
#define MDL_MAPPING_CAN_FAIL 0x2000

/* wdm.h: mapping priorities, and the flag combined with them. */
typedef enum _MM_PAGE_PRIORITY {
    LowPagePriority,
    NormalPagePriority = 16,
    HighPagePriority = 32
} MM_PAGE_PRIORITY;
#define MdlMappingNoExecute 0x40000000

/* wdm.h: stack location control flags. */
#define SL_PENDING_RETURNED 0x01
#define SL_ERROR_RETURNED 0x02
#define SL_INVOKE_ON_CANCEL 0x20
#define SL_INVOKE_ON_SUCCESS 0x40
#define SL_INVOKE_ON_ERROR 0x80

/* ntdef.h: object attributes. */
#define OBJ_CASE_INSENSITIVE 0x00000040L
#define OBJ_KERNEL_HANDLE 0x00000200L

/* wdm.h: registry access and value types (KEY_READ's expression evaluated: STANDARD_RIGHTS_READ
 * | KEY_QUERY_VALUE | KEY_ENUMERATE_SUB_KEYS | KEY_NOTIFY, without SYNCHRONIZE). */
#define KEY_QUERY_VALUE 0x0001
#define KEY_READ 0x20019
#define REG_SZ 1
#define REG_DWORD 4
#define REG_MULTI_SZ 7

/* ntdef.h: a counted string's buffer. */
typedef WCHAR *PWCH;

/* wdm.h: routines wsk-sys declares in Rust. */
ULONG DbgPrint(PCSTR Format, ...);
SIZE_T MmSizeOfMdl(PVOID Base, SIZE_T Length);

#endif /* WSK_SYS_WDK_DECLARATIONS_H */
