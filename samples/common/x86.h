/* samples/common/x86.h — the x86 instructions and descriptor layouts that
 * read the same in the 32-bit and the 64-bit sample guests (port I/O,
 * CLI/STI, PUSHF/POPF, control and debug registers, RDMSR/WRMSR, segment
 * registers, the descriptor-table registers, code and data descriptors).
 * Where only the operand width differs, the helper works on uintptr_t,
 * which is 32 bits wide in guest32 and 64 in guest64: the assembler picks
 * PUSHFL or PUSHFQ, MOV from CR0 to a 32- or a 64-bit register, from the
 * register the compiler gives it. Each mode's own header (guest32/arch.h,
 * guest64/arch64.h) includes this one and adds what really differs: gates,
 * system descriptors, the TSS.
 *
 * Which instructions are privileged (they fault at ring 3 and the monitor
 * emulates them) and which are sensitive but unprivileged (the monitor
 * must patch them) is the subject of REFERENCE.md §1 and §2. */
#ifndef SAMPLES_X86_H
#define SAMPLES_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- This mode's register width, as the checks' names spell it ---------
 * "e" and "32" in guest32 (EIP, ESP, sldt_r32), "r" and "64" in guest64. */
#ifdef __x86_64__
#define REG_PREFIX "r"
#define REG_BITS   "64"
#else
#define REG_PREFIX "e"
#define REG_BITS   "32"
#endif

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

/* INT n with IF = 1, then IF = 0 again (n is asm text: INT takes an
 * immediate only). */
#define INT_WITH_IF(n) do {                                                 \
        sti();                                                              \
        __asm__ volatile("int $" #n ::: "memory");                          \
        cli();                                                              \
    } while (0)

#define EFLAGS_CF   0x00000001u
#define EFLAGS_TF   0x00000100u
#define EFLAGS_IF   0x00000200u
#define EFLAGS_DF   0x00000400u
#define EFLAGS_OF   0x00000800u
#define EFLAGS_IOPL 0x00003000u
#define EFLAGS_AC   0x00040000u

static inline unsigned flags_if(uint32_t f) { return (f & EFLAGS_IF) ? 1 : 0; }
static inline unsigned flags_iopl(uint32_t f) { return (f >> 12) & 3; }

/* PUSHF: not privileged; at ring 3 it shows the real IF (always 1). */
static inline uintptr_t read_flags(void)
{
    uintptr_t f;
    __asm__ volatile("pushf; pop %0" : "=r"(f) : : "memory");
    return f;
}

/* POPF: not privileged; at ring 3 it silently keeps IF and IOPL. */
static inline void write_flags(uintptr_t f)
{
    __asm__ volatile("push %0; popf" : : "r"(f) : "memory", "cc");
}

/* Linux's local_irq_save/local_irq_restore: PUSHF; CLI ... POPF. */
static inline uintptr_t irq_save(void)
{
    uintptr_t f = read_flags();
    cli();
    return f;
}

static inline void irq_restore(uintptr_t f) { write_flags(f); }

/* ---- Control and debug registers: privileged, as wide as the mode ------ */

#define READ_CR(n) ({ uintptr_t v_; \
    __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_CR(n, v) \
    __asm__ volatile("mov %0, %%cr" #n : : "r"((uintptr_t)(v)) : "memory")
#define READ_DR(n) ({ uintptr_t v_; \
    __asm__ volatile("mov %%db" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_DR(n, v) \
    __asm__ volatile("mov %0, %%db" #n : : "r"((uintptr_t)(v)))

#define CR0_PE   0x00000001u
#define CR0_TS   0x00000008u
#define CR0_PG   0x80000000u
#define CR4_PSE  0x00000010u

/* SMSW m16: not privileged; it reads CR0[15:0] without a trap. */
static inline uint16_t smsw_m16(void)
{
    uint16_t v;
    __asm__ volatile("smsw %0" : "=m"(v));
    return v;
}

/* LMSW: privileged; loads PE, MP, EM and TS (it can set PE, never clear it). */
static inline void lmsw(uint16_t v)
{
    __asm__ volatile("lmsw %0" : : "r"(v) : "memory");
}

/* ---- Segment registers and descriptor-table registers ------------------ */

/* MOV r32, Sreg: not privileged; at ring 3 CS and SS show RPL 3. */
#define READ_SEG(sreg) ({ uint32_t v_; \
    __asm__ volatile("mov %%" #sreg ", %0" : "=r"(v_)); v_; })

/* PUSH Sreg: not privileged. It may write only 16 bits of its 4- or 8-byte
 * slot (SDM), so only those count. */
#define PUSH_SEG(sreg) ({ uintptr_t v_; \
    __asm__ volatile("push %%" #sreg "; pop %0" : "=r"(v_)); v_ & 0xffff; })

/* POP Sreg: loads `sel` into sreg through the stack and reads it back, then
 * loads `after` the same way. */
#define POP_SEG(sreg, sel, after) ({ uintptr_t v_; \
    __asm__ volatile("push %1; pop %%" #sreg "; mov %%" #sreg ", %0; " \
                     "push %2; pop %%" #sreg \
                     : "=r"(v_) : "i"(sel), "i"(after) : "memory"); v_; })

/* MOV to DS, ES, FS, GS and SS after LGDT (MOV SS holds off interrupts for
 * one instruction). */
static inline void load_data_segments(uint16_t sel)
{
    __asm__ volatile("mov %0, %%ds\n\t"
                     "mov %0, %%es\n\t"
                     "mov %0, %%fs\n\t"
                     "mov %0, %%gs\n\t"
                     "mov %0, %%ss"
                     : : "r"((uint32_t)sel) : "memory");
}

/* The operand of LGDT/LIDT/SGDT/SIDT: a limit and a base as wide as the
 * mode (6 bytes, or 10 in 64-bit mode). */
typedef struct __attribute__((packed)) {
    uint16_t limit;
    uintptr_t base;
} table_reg;

static inline void lidt(const void *idt, size_t size)
{
    table_reg r = { (uint16_t)(size - 1), (uintptr_t)idt };
    __asm__ volatile("lidt %0" : : "m"(r) : "memory");
}

/* LLDT and LTR take a GDT selector; LTR marks the TSS busy (type 9 -> 0xB)
 * in the GDT itself. */
static inline void lldt(uint16_t sel)
{
    __asm__ volatile("lldt %w0" : : "r"(sel) : "memory");
}

static inline void ltr(uint16_t sel)
{
    __asm__ volatile("ltr %w0" : : "r"(sel) : "memory");
}

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

static inline void set_segment(seg_desc *d, uint32_t base, uint32_t limit,
                               uint8_t access, uint8_t flags)
{
    d->limit_lo = limit & 0xffff;
    d->base_lo = base & 0xffff;
    d->base_mid = (base >> 16) & 0xff;
    d->access = access;
    d->flags_limit_hi = (uint8_t)(flags << 4) | ((limit >> 16) & 0xf);
    d->base_hi = base >> 24;
}

#endif
