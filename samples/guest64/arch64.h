/* samples/guest64/arch64.h — the x86 instructions the 64-bit guest uses
 * that differ from their 32-bit forms, one small inline function or macro
 * each; what reads the same in both modes is in ../common/x86.h.
 *
 * Layouts follow the Intel SDM Vol. 3A: §3.4.5 (code and data descriptors,
 * L bit), §7.2.3 (16-byte system descriptors in IA-32e mode), §6.14.1
 * (64-bit IDT gates), §8.7 (the 64-bit TSS), §2.2.1 (EFER). */
#ifndef GUEST64_ARCH64_H
#define GUEST64_ARCH64_H

#include "../common/x86.h"

/* ---- Flags: PUSHFQ/POPFQ, not privileged ------------------------------ */

static inline uint64_t read_rflags(void)
{
    uint64_t f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f) : : "memory");
    return f;
}

static inline void write_rflags(uint64_t f)
{
    __asm__ volatile("pushq %0; popfq" : : "r"(f) : "memory", "cc");
}

/* ---- Control and debug registers: privileged, 64 bits wide ------------ */

#define READ_CR(n) ({ uint64_t v_; \
    __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_CR(n, v) \
    __asm__ volatile("mov %0, %%cr" #n : : "r"((uint64_t)(v)) : "memory")
#define READ_DR(n) ({ uint64_t v_; \
    __asm__ volatile("mov %%db" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_DR(n, v) \
    __asm__ volatile("mov %0, %%db" #n : : "r"((uint64_t)(v)))

#define CR0_PE   0x00000001u
#define CR0_TS   0x00000008u
#define CR0_PG   0x80000000u
#define CR4_PSE  0x00000010u

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

/* ---- Segment registers -------------------------------------------------- */

/* MOV r32, Sreg: not privileged; at ring 3 CS and SS show RPL 3. */
#define READ_SEG(sreg) ({ uint32_t v_; \
    __asm__ volatile("mov %%" #sreg ", %0" : "=r"(v_)); v_; })

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

/* The operand of LGDT/LIDT/SGDT/SIDT in 64-bit mode: 10 bytes. */
typedef struct __attribute__((packed)) {
    uint16_t limit;
    uint64_t base;
} table_reg64;

/* Page-table entries (SDM Vol. 3A §4.5): P, R/W, U/S, and PS for a 2 MiB
 * page in a page directory. */
#define PTE_P   0x001u
#define PTE_RW  0x002u
#define PTE_US  0x004u
#define PTE_PS  0x080u

#endif
