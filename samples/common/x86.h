/* samples/common/x86.h — the x86 instructions and descriptor layouts that
 * read the same in the 32-bit and the 64-bit sample guests (port I/O,
 * CLI/STI, RDMSR/WRMSR, code and data descriptors). Each mode's own header
 * (guest32/arch.h, guest64/arch64.h) includes this one and adds what
 * differs: PUSHF/POPF widths, control registers, gates, the TSS.
 *
 * Which instructions are privileged (they fault at ring 3 and the monitor
 * emulates them) and which are sensitive but unprivileged (the monitor
 * must patch them) is the subject of REFERENCE.md §1 and §2. */
#ifndef SAMPLES_X86_H
#define SAMPLES_X86_H

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

#define EFLAGS_CF   0x00000001u
#define EFLAGS_TF   0x00000100u
#define EFLAGS_IF   0x00000200u
#define EFLAGS_DF   0x00000400u
#define EFLAGS_OF   0x00000800u
#define EFLAGS_IOPL 0x00003000u
#define EFLAGS_AC   0x00040000u

static inline unsigned flags_if(uint32_t f) { return (f & EFLAGS_IF) ? 1 : 0; }
static inline unsigned flags_iopl(uint32_t f) { return (f >> 12) & 3; }

/* ---- Model-specific registers: privileged -------------------------------- */

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

/* ---- Code and data descriptors (Intel SDM Vol. 3A §3.4.5) -------------- */

typedef struct __attribute__((packed)) {
    uint16_t limit_lo, base_lo;
    uint8_t base_mid, access, flags_limit_hi, base_hi;
} seg_desc;

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
#define TYPE_TSS       0x9     /* available; LTR makes it 0xB (busy) */
#define TYPE_CALL      0xC     /* 32-bit call gate, 64-bit in IA-32e mode */
#define TYPE_INTR      0xE     /* likewise interrupt gate */
#define TYPE_TRAP      0xF     /* likewise trap gate */
/* Flags nibble: G (4 KiB granularity), D/B (32-bit), L (64-bit code). */
#define FLG_G          0x8
#define FLG_DB         0x4
#define FLG_L          0x2

#endif
