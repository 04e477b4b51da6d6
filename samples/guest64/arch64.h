/* samples/guest64/arch64.h — what the 64-bit guest needs that 32-bit mode
 * does not have or lays out differently: the long-mode MSRs, 16-byte
 * system descriptors and gates, the 64-bit TSS, page-table entries. The
 * instructions that read the same in both modes (with operands as wide as
 * the mode) are in ../common/x86.h.
 *
 * Layouts follow the Intel SDM Vol. 3A: §3.4.5 (code and data descriptors,
 * L bit), §7.2.3 (16-byte system descriptors in IA-32e mode), §6.14.1
 * (64-bit IDT gates), §8.7 (the 64-bit TSS), §2.2.1 (EFER). */
#ifndef GUEST64_ARCH64_H
#define GUEST64_ARCH64_H

#include "../common/x86.h"

/* ---- MSRs of long mode -------------------------------------------------- */

#define MSR_EFER            0xC0000080u
#define MSR_STAR            0xC0000081u
#define MSR_LSTAR           0xC0000082u
#define MSR_FMASK           0xC0000084u
#define MSR_FS_BASE         0xC0000100u
#define MSR_GS_BASE         0xC0000101u
#define MSR_KERNEL_GS_BASE  0xC0000102u
#define EFER_SCE            0x001u       /* SYSCALL/SYSRET enabled */
#define EFER_LME            0x100u
#define EFER_LMA            0x400u

/* ---- System descriptors and gates: 16 bytes in IA-32e mode --------------- */

/* An LDT or TSS descriptor: a code/data-shaped low half, then base 63:32
 * and a reserved dword whose type field must be 0. A GDT selector that
 * names the upper half finds a descriptor of type 0 there. */
typedef struct __attribute__((packed)) {
    seg_desc low;
    uint32_t base_upper, reserved;
} sys_desc64;

/* Interrupt, trap and call gates: offset 15:0, selector, IST (interrupt and
 * trap gates only), P | DPL | type, offset 31:16, offset 63:32. */
typedef struct __attribute__((packed)) {
    uint16_t offset_lo, selector;
    uint8_t ist, access;
    uint16_t offset_mid;
    uint32_t offset_hi, reserved;
} gate64;

/* The 64-bit TSS: no saved registers any more, only the stacks the CPU
 * switches to (RSP0-2 for privilege changes, IST1-7 for gates that name
 * one) and the I/O map base. */
typedef struct __attribute__((packed)) {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
} tss64;

/* Page-table entries (SDM Vol. 3A §4.5): P, R/W, U/S, and PS for a 2 MiB
 * page in a page directory. */
#define PTE_P   0x001u
#define PTE_RW  0x002u
#define PTE_US  0x004u
#define PTE_PS  0x080u

#endif
