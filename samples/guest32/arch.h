/* samples/guest32/arch.h — what the 32-bit guest needs that is laid out
 * differently in 64-bit mode: its gates and its TSS (Intel SDM Vol. 3A
 * §6.11, §8.2.1).
 *
 * The instructions themselves, one small inline function each, read the
 * same in both modes and are in ../common/x86.h (port I/O, CLI/STI,
 * PUSHF/POPF, control and debug registers, MSRs, segment registers, code
 * and data descriptors). Which of them are privileged (they fault at ring
 * 3, and the monitor emulates them) and which are sensitive but
 * unprivileged (the monitor must patch them) is the subject of
 * REFERENCE.md §1 and §2. */
#ifndef GUEST32_ARCH_H
#define GUEST32_ARCH_H

#include "../common/x86.h"

/* ---- Gates and the TSS ------------------------------------------------- */

typedef struct __attribute__((packed)) {
    uint16_t offset_lo, selector;
    uint8_t zero_or_params, access;
    uint16_t offset_hi;
} gate_desc;

#define TYPE_TSS32     TYPE_TSS
#define TYPE_CALL32    TYPE_CALL
#define TYPE_INTR32    TYPE_INTR
#define TYPE_TRAP32    TYPE_TRAP

/* The 32-bit TSS (SDM Vol. 3A §8.2.1). Only ss0:esp0 matter here: the CPU
 * takes them when an interrupt moves from ring 3 to ring 0. */
typedef struct __attribute__((packed)) {
    uint32_t prev, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
    uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt;
    uint16_t trap, iomap_base;
} tss32;

#endif
