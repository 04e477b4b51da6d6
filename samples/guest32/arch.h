/* samples/guest32/arch.h — the x86 instructions the guest uses, one small
 * inline function each, so that guest32.c reads as a list of checks.
 *
 * Each helper is a single instruction (plus what the compiler needs around
 * it); those that read the same in 64-bit mode (port I/O, CLI/STI,
 * RDMSR/WRMSR, code and data descriptors) are in ../common/x86.h. Which
 * of them are privileged (they fault at ring 3, and the monitor emulates
 * them) and which are sensitive but unprivileged (the monitor must patch
 * them) is the subject of REFERENCE.md §1 and §2. */
#ifndef GUEST32_ARCH_H
#define GUEST32_ARCH_H

#include "../common/x86.h"

/* ---- Flags ------------------------------------------------------------- */

/* PUSHF: not privileged; at ring 3 it shows the real IF (always 1). */
static inline uint32_t read_eflags(void)
{
    uint32_t f;
    __asm__ volatile("pushfl; popl %0" : "=r"(f) : : "memory");
    return f;
}

/* POPF: not privileged; at ring 3 it silently keeps IF and IOPL. */
static inline void write_eflags(uint32_t f)
{
    __asm__ volatile("pushl %0; popfl" : : "r"(f) : "memory", "cc");
}

/* ---- Control and debug registers: privileged ------------------------- */

#define READ_CR(n) ({ uint32_t v_; \
    __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_CR(n, v) \
    __asm__ volatile("mov %0, %%cr" #n : : "r"((uint32_t)(v)) : "memory")
#define READ_DR(n) ({ uint32_t v_; \
    __asm__ volatile("mov %%db" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_DR(n, v) \
    __asm__ volatile("mov %0, %%db" #n : : "r"((uint32_t)(v)))

#define CR0_PE 0x00000001u
#define CR0_TS 0x00000008u
#define CR4_PSE 0x00000010u

/* ---- Segment registers ------------------------------------------------- */

/* MOV r32, Sreg: not privileged; at ring 3 CS and SS show RPL 3. */
#define READ_SEG(sreg) ({ uint32_t v_; \
    __asm__ volatile("mov %%" #sreg ", %0" : "=r"(v_)); v_; })

/* ---- Gates and the TSS (Intel SDM Vol. 3A §6.11, §8.2.1) ------------- */

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

typedef struct __attribute__((packed)) {
    uint16_t limit;
    uint32_t base;
} table_reg;

#endif
