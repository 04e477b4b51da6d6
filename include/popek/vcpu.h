/* popek — the virtual CPU and the emulation of sensitive instructions.
 *
 * Emulation is a pure function: it reads and changes a pk_vcpu (what the
 * guest believes about the processor), a pk_regs (the guest's real general
 * registers and flags) and guest memory through pk_guest_mem. It never calls
 * a device, ptrace or the host; whatever needs the outside world (port I/O,
 * HLT) comes back as an exit for the engine to service. So every emulation is
 * unit-tested with a fake memory.
 *
 * The guest model (DESIGN.md): the guest kernel runs at CPL 3 in a Linux
 * process with flat host segments; guest virtual = host virtual. Segment
 * selectors, descriptor-table registers, control registers, IF and IOPL are
 * virtual and live here; the arithmetic flags are the real ones in pk_regs. */
#ifndef POPEK_VCPU_H
#define POPEK_VCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <Zydis/Zydis.h>

/* General registers in encoding order (rAX = 0 … r15 = 15). */
enum {
    PK_RAX, PK_RCX, PK_RDX, PK_RBX, PK_RSP, PK_RBP, PK_RSI, PK_RDI,
    PK_R8, PK_R9, PK_R10, PK_R11, PK_R12, PK_R13, PK_R14, PK_R15,
    PK_GPR_COUNT
};

/* The guest's real registers, as the engine reads them from the process.
 * rip is the address of the instruction being emulated; rflags holds the
 * real flags (IF is always 1 and IOPL 0 there: the vcpu has the guest's). */
typedef struct pk_regs {
    uint64_t gpr[PK_GPR_COUNT];
    uint64_t rip;
    uint64_t rflags;
    uint64_t fs_base, gs_base;
} pk_regs;

/* EFLAGS bits. */
enum {
    PK_FLAG_CF = 1u << 0, PK_FLAG_PF = 1u << 2, PK_FLAG_AF = 1u << 4,
    PK_FLAG_ZF = 1u << 6, PK_FLAG_SF = 1u << 7, PK_FLAG_TF = 1u << 8,
    PK_FLAG_IF = 1u << 9, PK_FLAG_DF = 1u << 10, PK_FLAG_OF = 1u << 11,
    PK_FLAG_IOPL = 3u << 12, PK_FLAG_NT = 1u << 14, PK_FLAG_RF = 1u << 16,
    PK_FLAG_VM = 1u << 17, PK_FLAG_AC = 1u << 18, PK_FLAG_VIF = 1u << 19,
    PK_FLAG_VIP = 1u << 20, PK_FLAG_ID = 1u << 21,
};

/* Segment registers in encoding order (ES = 0 … GS = 5), then LDTR, TR. */
enum {
    PK_ES, PK_CS, PK_SS, PK_DS, PK_FS, PK_GS, PK_SREG_COUNT,
    PK_LDTR = PK_SREG_COUNT, PK_TR, PK_SEG_COUNT
};

/* A segment register: the selector and the hidden part loaded with it. */
typedef struct pk_segment {
    uint16_t selector;
    uint64_t base;
    uint32_t limit;         /* in bytes, granularity applied */
    uint16_t attributes;    /* descriptor bits 40..55: type, S, DPL, P, AVL, L, D/B, G */
} pk_segment;

/* GDTR or IDTR. */
typedef struct pk_table_register {
    uint64_t base;
    uint16_t limit;
} pk_table_register;

/* Model-specific registers the guest wrote (the table is in monitor/system.c). */
#define PK_VCPU_MSRS 32

typedef struct pk_vcpu {
    unsigned bits;          /* 32 or 64: the mode the guest runs in */
    unsigned cpl;           /* the privilege level the guest believes in */
    uint64_t vflags;        /* virtual IF, IOPL, NT, ID: the bits of EFLAGS
                               the real process cannot hold (AC stays real:
                               see monitor/vcpu.c) */
    pk_segment seg[PK_SEG_COUNT];
    pk_table_register gdtr, idtr;
    uint64_t cr0, cr2, cr3, cr4, cr8;
    uint64_t efer;
    uint64_t dr[8];
    uint64_t xcr0;
    uint64_t kernel_gs_base;
    struct {
        uint32_t index;
        uint64_t value;
    } msrs[PK_VCPU_MSRS];   /* MSRs written or read so far */
    unsigned nmsrs;
    /* Set by STI and MOV SS/POP SS: no interrupt before the next
     * instruction completes. Cleared by the engine after one instruction. */
    bool interrupt_shadow;
} pk_vcpu;

/* Guest memory, by guest virtual address. read and write return false when
 * any byte of the range is outside guest memory (a virtual #PF). */
typedef struct pk_guest_mem {
    void *ctx;
    bool (*read)(void *ctx, uint64_t addr, void *buf, size_t size);
    bool (*write)(void *ctx, uint64_t addr, const void *buf, size_t size);
} pk_guest_mem;

/* Exception vectors. */
enum {
    PK_VEC_DE = 0, PK_VEC_DB = 1, PK_VEC_NMI = 2, PK_VEC_BP = 3,
    PK_VEC_OF = 4, PK_VEC_BR = 5, PK_VEC_UD = 6, PK_VEC_NM = 7,
    PK_VEC_DF = 8, PK_VEC_TS = 10, PK_VEC_NP = 11, PK_VEC_SS = 12,
    PK_VEC_GP = 13, PK_VEC_PF = 14, PK_VEC_MF = 16, PK_VEC_AC = 17,
};

typedef enum pk_emu_status {
    PK_EMU_DONE,        /* regs and vcpu updated; rip at the next instruction */
    PK_EMU_FAULT,       /* deliver fault.vector (rip still at the instruction) */
    PK_EMU_IO,          /* port I/O for the engine: see pk_emu_result.io */
    PK_EMU_HALT,        /* HLT: rip past it; wait for an interrupt */
    PK_EMU_UNSUPPORTED, /* the monitor cannot emulate this; nothing changed */
} pk_emu_status;

/* A port access (like KVM_EXIT_IO). OUT and OUTS are complete when
 * pk_emulate returns (data holds what was written, rip is past the
 * instruction); the engine hands the data to the device. IN and INS are
 * not: the engine fills data from the device and calls pk_emulate_io_in. */
#define PK_IO_MAX_DATA 4096

typedef struct pk_io {
    uint16_t port;
    uint8_t size;           /* 1, 2 or 4 bytes per element */
    bool in;
    uint32_t count;         /* elements (more than 1 only for REP INS/OUTS) */
    uint8_t data[PK_IO_MAX_DATA];
} pk_io;

typedef struct pk_emu_result {
    pk_emu_status status;
    struct {
        uint8_t vector;
        bool has_error_code;
        uint32_t error_code;
        uint64_t address;   /* for #PF: the faulting address (CR2) */
    } fault;
    pk_io io;
    /* DONE or HALT: virtual IF went from 0 to 1 (STI, POPF, IRET): an
     * interrupt held back may be delivered now. */
    bool interrupt_window;
    /* What the instruction did, one short line for --trace, e.g.
     * "vIF 1 -> 0" or "CR0 <- 0x80000011". */
    char effect[96];
} pk_emu_result;

/* Sets vcpu to the state a guest is entered in: bits 32 as Multiboot
 * leaves a protected-mode kernel (CR0 = PE|ET, flat 4 GiB CS/DS, IF 0),
 * bits 64 as DESIGN.md's 64-bit boot contract (CR0 = PE|ET|PG, CR4 = PAE,
 * EFER = LME|LMA, IF 0, CPL 0). */
void pk_vcpu_reset(pk_vcpu *vcpu, unsigned bits);

/* The EFLAGS image the guest sees: the real arithmetic and control flags of
 * regs (AC included) with the vcpu's IF, IOPL, NT and ID; RF, VM, VIF and
 * VIP as 0. */
uint64_t pk_vcpu_flags(const pk_vcpu *vcpu, const pk_regs *regs);

/* Emulates the instruction at regs->rip, which insn/ops decode (decoded in
 * vcpu->bits mode with operands). */
pk_emu_result pk_emulate(const ZydisDecodedInstruction *insn,
                         const ZydisDecodedOperand *ops, pk_vcpu *vcpu,
                         pk_regs *regs, const pk_guest_mem *mem);

/* Completes an IN or INS whose data the engine filled in io: writes it to
 * rAX or memory, steps rSI/rDI/rCX, and moves rip past the instruction when
 * the last element is done. */
pk_emu_result pk_emulate_io_in(const ZydisDecodedInstruction *insn,
                               const ZydisDecodedOperand *ops, pk_vcpu *vcpu,
                               pk_regs *regs, const pk_guest_mem *mem,
                               const pk_io *io);

/* How an event enters the guest through its IDT. */
typedef enum pk_event_kind {
    PK_EVENT_EXCEPTION, /* a fault or trap raised by an instruction */
    PK_EVENT_SOFTWARE,  /* INT n, INT3, INTO: gate DPL checked against CPL */
    PK_EVENT_EXTERNAL,  /* an interrupt from the PIC */
} pk_event_kind;

/* Delivers vector through the guest's IDT as the CPU would: reads the gate,
 * checks it, switches stacks through the guest TSS on a privilege change,
 * pushes the frame (with the error code where the vector has one) built
 * from pk_vcpu_flags, clears virtual IF for interrupt gates, and enters the
 * handler. regs->rip must be the return address the frame records. Returns
 * DONE, or FAULT with the fault the delivery itself raised (the caller
 * escalates: a fault while delivering a fault is #DF, then triple fault),
 * leaving vcpu and regs unchanged; UNSUPPORTED for task gates, 16-bit
 * gates or TSSs, or when has_error_code disagrees with the vector (only
 * exceptions 8, 10-14 and 17 push one). */
pk_emu_result pk_deliver(pk_vcpu *vcpu, pk_regs *regs,
                         const pk_guest_mem *mem, uint8_t vector,
                         pk_event_kind kind, bool has_error_code,
                         uint32_t error_code);

#endif
