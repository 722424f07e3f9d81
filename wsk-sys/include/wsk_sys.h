/*
 * wsk-sys: the header bindgen reads when no WDK is installed.
 *
 * It gathers the project's reconstruction of the kernel base subset a WSK client needs and
 * of the WDK's wsk.h. With a WDK, `cargo xtask bindgen --wdk` reads the WDK's own ntddk.h and
 * wsk.h instead and compares the result with the committed bindings.
 */
#ifndef WSK_SYS_H
#define WSK_SYS_H

#include "km_types.h"
#include "km_ntstatus.h"
#include "km_io.h"
#include "km_net.h"
#include "wsk.h"

#endif /* WSK_SYS_H */
