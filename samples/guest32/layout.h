/* samples/guest32/layout.h — guest32's selectors and software-interrupt
 * vectors: guest32.c builds the GDT, LDT and IDT from them, entry.S and
 * ../common/checks.c use them. Only #defines, so .S files can include it. */
#ifndef GUEST32_LAYOUT_H
#define GUEST32_LAYOUT_H

#include "../common/layout_common.h"

/* GDT selectors (index * 8 | RPL). */
#define SEL_KCODE       0x08    /* ring-0 code, flat */
#define SEL_KDATA       0x10    /* ring-0 data, flat */
#define SEL_UCODE       0x1b    /* ring-3 code, flat (0x18 | RPL 3) */
#define SEL_UDATA       0x23    /* ring-3 data, flat (0x20 | RPL 3) */
#define SEL_CONFORMING  0x28    /* ring-0 conforming code, flat */
#define SEL_SMALL       0x30    /* ring-0 data, byte-granular limit 0xff */
#define SEL_NOTPRESENT  0x38    /* ring-0 data with P = 0 */
#define SEL_LDT         0x40    /* the LDT's own descriptor */
#define SEL_TSS         0x48    /* the 32-bit TSS */
#define SEL_CALLGATE    0x50    /* 32-bit call gate to far_target */
#define SEL_EXECONLY    0x58    /* ring-0 code, execute-only */
#define GDT_ENTRIES     12
#define SEL_BEYOND      0x80    /* past the GDT limit (0x5f), and past the
                                   end of Linux's own 16-entry GDT too */
/* The null selector, the LDT's entries and the vectors 0x80-0x82 are
 * common/layout_common.h's. */

#endif
