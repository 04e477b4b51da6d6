/* samples/common/layout_common.h — the numbers guest32 and guest64 give
 * alike, included by each guest's layout.h: the null selector, the LDT's
 * two entries (common/checks.c loads and asks about them) and the vectors
 * of the software interrupts. Only #defines, so .S files can include it. */
#ifndef SAMPLES_LAYOUT_COMMON_H
#define SAMPLES_LAYOUT_COMMON_H

#define SEL_NULL        0x00

/* LDT selectors: TI (bit 2) = 1. */
#define SEL_LDT_KDATA   0x04    /* LDT entry 0: ring-0 data, flat */
#define SEL_LDT_UDATA   0x0f    /* LDT entry 1 | RPL 3: ring-3 data, limit 0xfff */
#define LDT_ENTRIES     2

/* Vectors: exceptions 0-31, the PIC's IRQs at 0x20-0x2f (timer.h), then
 * the software interrupts of the checks. */
#define VEC_SYSCALL     0x80    /* DPL-3 trap gate: ring 3 calls ring 0 */
#define VEC_SOFT_TRAP   0x81    /* DPL-0 trap gate */
#define VEC_SOFT_INTR   0x82    /* DPL-0 interrupt gate */

#endif
