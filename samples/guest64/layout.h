/* samples/guest64/layout.h — guest64's selectors and software-interrupt
 * vectors: guest64.c builds the GDT, LDT and IDT from them, entry.S and
 * ../common/checks.c use them. Only #defines, so .S files can include it. */
#ifndef GUEST64_LAYOUT_H
#define GUEST64_LAYOUT_H

#include "../common/layout_common.h"

/* GDT selectors (index * 8 | RPL). The order 0x18, 0x20, 0x28 is the one
 * SYSRET needs: STAR[63:48] = 0x18 gives SS = 0x20 | 3 and, for a 64-bit
 * SYSRET, CS = 0x28 | 3 (as Linux). */
#define SEL_KCODE       0x08    /* ring-0 code, 64-bit (L = 1) */
#define SEL_KDATA       0x10    /* ring-0 data, flat */
#define SEL_UCODE32     0x1b    /* ring-3 code, 32-bit (compatibility mode) */
#define SEL_UDATA       0x23    /* ring-3 data, flat */
#define SEL_UCODE       0x2b    /* ring-3 code, 64-bit */
#define SEL_CONFORMING  0x30    /* ring-0 conforming code, 64-bit */
#define SEL_SMALL       0x38    /* ring-0 data, byte-granular limit 0xff */
#define SEL_NOTPRESENT  0x40    /* ring-0 data with P = 0 */
#define SEL_EXECONLY    0x48    /* ring-0 code, execute-only, 64-bit */
#define SEL_LDT         0x50    /* the LDT's descriptor (16 bytes) */
#define SEL_LDT_UPPER   0x58    /* its upper half */
#define SEL_TSS         0x60    /* the 64-bit TSS (16 bytes) */
#define SEL_TSS_UPPER   0x68    /* its upper half */
#define SEL_CALLGATE    0x70    /* a 64-bit call gate (16 bytes), never called */
#define GDT_ENTRIES     16
#define SEL_BEYOND      0x80    /* past the GDT limit (0x7f), and past the
                                   end of Linux's own 16-entry GDT too */
/* The null selector, the LDT's entries and the vectors 0x80-0x82 are
 * common/layout_common.h's. Only guest64 has a gate on an IST stack. */
#define VEC_SOFT_IST    0x83    /* DPL-0 interrupt gate on IST1 */

#endif
