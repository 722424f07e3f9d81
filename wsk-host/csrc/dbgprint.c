/*
 * DbgPrint for wsk-host: formats like the kernel's DbgPrint (printf-style) and hands the
 * text to Rust, which records and prints it. Rust cannot define C-variadic functions on
 * stable, hence this shim.
 */
#include <stdarg.h>
#include <stdio.h>

extern void wsk_host_debug_output(const char *text, unsigned long long length);

unsigned long DbgPrint(const char *format, ...)
{
    char text[1024];
    va_list args;
    int length;

    va_start(args, format);
    length = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (length < 0) {
        return 0xC0000001UL; /* STATUS_UNSUCCESSFUL */
    }
    if ((unsigned long long)length >= sizeof text) {
        length = (int)(sizeof text - 1);
    }
    wsk_host_debug_output(text, (unsigned long long)length);
    return 0; /* STATUS_SUCCESS */
}
