/* samples/guest32/arch.h — the x86 instructions the guest uses, one small
 * inline function each, so that guest32.c reads as a list of checks.
 *
 * Each helper is a single instruction (plus what the compiler needs around
 * it). Which of them are privileged (they fault at ring 3, and the monitor
 * emulates them) and which are sensitive but unprivileged (the monitor must
 * patch them) is the subject of REFERENCE.md §1 and §2. */
#ifndef GUEST32_ARCH_H
#define GUEST32_ARCH_H

#include <stdbool.h>
#include <stdint.h>

/* ---- Port I/O: privileged (IOPL 0), so they trap at ring 3 ------------ */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* ---- Interrupt flag ---------------------------------------------------- */

static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }

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

#define EFLAGS_CF   0x00000001u
#define EFLAGS_IF   0x00000200u
#define EFLAGS_OF   0x00000800u
#define EFLAGS_IOPL 0x00003000u

static inline unsigned flags_if(uint32_t f) { return (f & EFLAGS_IF) ? 1 : 0; }
static inline unsigned flags_iopl(uint32_t f) { return (f >> 12) & 3; }

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

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
                     "d"((uint32_t)(v >> 32)) : "memory");
}

#define MSR_SYSENTER_CS  0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_PAT          0x277

/* ---- Segment registers ------------------------------------------------- */

/* MOV r32, Sreg: not privileged; at ring 3 CS and SS show RPL 3. */
#define READ_SEG(sreg) ({ uint32_t v_; \
    __asm__ volatile("mov %%" #sreg ", %0" : "=r"(v_)); v_; })

/* ---- Descriptors (Intel SDM Vol. 3A §3.4.5, §6.11) ------------------- */

typedef struct __attribute__((packed)) {
    uint16_t limit_lo, base_lo;
    uint8_t base_mid, access, flags_limit_hi, base_hi;
} seg_desc;

typedef struct __attribute__((packed)) {
    uint16_t offset_lo, selector;
    uint8_t zero_or_params, access;
    uint16_t offset_hi;
} gate_desc;

/* Access bytes: P | DPL | S | type. Every code and data type below has its
 * accessed bit (bit 0 of the type) already set: the CPU would otherwise set
 * it in memory on the first load, and LAR would give a different answer
 * before and after. */
#define ACC_P          0x80
#define ACC_DPL(n)     ((n) << 5)
#define ACC_S          0x10
#define TYPE_DATA_RW   0x3     /* read/write, accessed */
#define TYPE_CODE_X    0x9     /* execute-only, accessed */
#define TYPE_CODE_XR   0xB     /* execute/read, accessed */
#define TYPE_CODE_XRC  0xF     /* execute/read, conforming, accessed */
#define TYPE_LDT       0x2
#define TYPE_TSS32     0x9     /* available; LTR makes it 0xB (busy) */
#define TYPE_CALL32    0xC
#define TYPE_INTR32    0xE
#define TYPE_TRAP32    0xF
/* Flags nibble: G (4 KiB granularity) and D/B (32-bit). */
#define FLG_G          0x8
#define FLG_DB         0x4

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
