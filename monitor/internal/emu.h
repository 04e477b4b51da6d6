/* popek — emulation internals shared by the monitor/ sources (not part of the API).
 *
 * One emulation is a pk_emu: the decoded instruction, WORKING COPIES of the
 * vcpu and registers, guest memory and the result being built. Helpers
 * return a pk_emu_status where PK_EMU_DONE means "go on"; anything else
 * (FAULT, UNSUPPORTED, IO, HALT) is passed up with PK_EMU_TRY. pk_emulate and
 * pk_deliver copy the working state back only when the instruction
 * completes, so a virtual fault or an UNSUPPORTED leaves the caller's vcpu
 * and registers exactly as they were (faults are precise, as on the CPU).
 * Guest memory cannot be rolled back: every handler finishes its checks
 * before its first store, so a partial store can only be a stack push that
 * faults half-way, which leaves bytes below rSP as the CPU does. */
#ifndef POPEK_MONITOR_INTERNAL_EMU_H
#define POPEK_MONITOR_INTERNAL_EMU_H

#include <stdbool.h>
#include <stdint.h>

#include "popek/catalog.h"
#include "popek/vcpu.h"

typedef struct pk_emu {
    const ZydisDecodedInstruction *insn; /* NULL while delivering an event */
    const ZydisDecodedOperand *ops;
    pk_vcpu vcpu;
    pk_regs regs;
    const pk_guest_mem *mem;
    pk_emu_result res;
} pk_emu;

#define PK_EMU_TRY(expr)                                                       \
    do {                                                                       \
        pk_emu_status pk_emu_try_ = (expr);                                    \
        if (pk_emu_try_ != PK_EMU_DONE)                                        \
            return pk_emu_try_;                                                \
    } while (0)

/* Segment attribute bits (descriptor bits 40..55, see pk_segment). */
enum {
    PK_ATTR_ACCESSED = 1u << 0, PK_ATTR_TYPE = 0xFu, PK_ATTR_S = 1u << 4,
    PK_ATTR_DPL_SHIFT = 5, PK_ATTR_P = 1u << 7, PK_ATTR_L = 1u << 13,
    PK_ATTR_DB = 1u << 14, PK_ATTR_G = 1u << 15,
};

/* Control-register bits the emulation consults. */
enum {
    PK_CR0_PE = 1u << 0, PK_CR0_MP = 1u << 1, PK_CR0_EM = 1u << 2,
    PK_CR0_TS = 1u << 3, PK_CR0_ET = 1u << 4, PK_CR0_NE = 1u << 5,
    PK_CR0_WP = 1u << 16, PK_CR0_AM = 1u << 18, PK_CR0_NW = 1u << 29,
    PK_CR0_CD = 1u << 30, PK_CR0_PG = 1u << 31,
    PK_CR4_DE = 1u << 3, PK_CR4_PAE = 1u << 5, PK_CR4_UMIP = 1u << 11,
    PK_CR4_PCIDE = 1u << 17, PK_CR4_OSXSAVE = 1u << 18,
    PK_EFER_SCE = 1u << 0, PK_EFER_LME = 1u << 8, PK_EFER_LMA = 1u << 10,
    PK_EFER_NXE = 1u << 11,
};

/* The flags the vcpu holds for the guest (pk_vcpu.vflags): the process
 * cannot hold them, since PTRACE_SETREGS drops IF, IOPL, NT and ID
 * (REFERENCE §7). AC stays real: it is in the user-settable mask. */
#define PK_VFLAGS_MASK ((uint64_t)(PK_FLAG_IF | PK_FLAG_IOPL | PK_FLAG_NT | PK_FLAG_ID))

/* ---- results (access.c) ---------------------------------------------------- */

pk_emu_status pk_emu_fault(pk_emu *e, uint8_t vector, bool has_error_code,
                           uint32_t error_code);
pk_emu_status pk_emu_gp(pk_emu *e, uint32_t error_code);
pk_emu_status pk_emu_ud(pk_emu *e);
/* Gives up; why goes to the effect line. */
pk_emu_status pk_emu_unsupported(pk_emu *e, const char *why);
/* Writes the --trace line; returns DONE. */
pk_emu_status pk_emu_effect(pk_emu *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- memory, registers, operands, stack (access.c) ------------------------ */

enum {
    PK_ACC_WRITE = 1 << 0,  /* a store (#PF error code bit 1) */
    PK_ACC_SYS = 1 << 1,    /* implicit supervisor access: tables, TSS */
    PK_ACC_STACK = 1 << 2,  /* through SS: non-canonical gives #SS, not #GP */
};

/* Guest memory; outside it is a virtual #PF, a non-canonical 64-bit address
 * a #GP(0) (#SS(0) for the stack). */
pk_emu_status pk_emu_read(pk_emu *e, uint64_t addr, void *buf, size_t n, unsigned acc);
pk_emu_status pk_emu_write(pk_emu *e, uint64_t addr, const void *buf, size_t n,
                           unsigned acc);
bool pk_emu_canonical(uint64_t addr);

/* A general register by Zydis name (8/16/32/64-bit), and by number with a
 * width: 32-bit writes zero-extend, 8/16-bit writes merge, as the CPU does. */
uint64_t pk_emu_reg_get(const pk_emu *e, ZydisRegister reg);
void pk_emu_reg_set(pk_emu *e, ZydisRegister reg, uint64_t value);
uint64_t pk_emu_gpr_get(const pk_emu *e, unsigned gpr, unsigned bits);
void pk_emu_gpr_set(pk_emu *e, unsigned gpr, unsigned bits, uint64_t value);

/* The linear address of a memory operand (ZydisCalcAbsoluteAddressEx; flat
 * segments, but FS/GS bases apply in 64-bit mode). */
pk_emu_status pk_emu_op_addr(pk_emu *e, const ZydisDecodedOperand *op, uint64_t *addr);
/* A register or memory operand at its own size (op->size). */
pk_emu_status pk_emu_op_read(pk_emu *e, const ZydisDecodedOperand *op, uint64_t *value);
pk_emu_status pk_emu_op_write(pk_emu *e, const ZydisDecodedOperand *op, uint64_t value);

/* 16, 32 or 64: the width of rSP for pushes and pops (SS.B, or 64). */
unsigned pk_emu_stack_bits(const pk_emu *e);
/* Moves rSP down by slot bytes and stores the low store bytes of value
 * there (store < slot only for PUSH Sreg, which writes 16 bits). */
pk_emu_status pk_emu_push(pk_emu *e, uint64_t value, unsigned slot, unsigned store);
pk_emu_status pk_emu_pop(pk_emu *e, unsigned size, uint64_t *value);

/* ---- flags (vcpu.c) --------------------------------------------------------- */

/* Loads value into the guest's EFLAGS as POPF (iret false) or IRET (iret
 * true) does at privilege level cpl, for an operand of bits: IF only when
 * cpl <= IOPL, IOPL only at cpl 0, bits 31:16 only for 32/64-bit operands,
 * RF only by IRET, VM/VIF/VIP never. Sets res.interrupt_window when the
 * virtual IF goes from 0 to 1. */
void pk_emu_flags_load(pk_emu *e, uint64_t value, unsigned bits, unsigned cpl, bool iret);
unsigned pk_emu_iopl(const pk_vcpu *vcpu);

/* ---- descriptors (descriptors.c) ------------------------------------------- */

/* A descriptor as read from the guest's GDT or LDT. */
typedef struct pk_desc {
    uint64_t addr;          /* where it lies in guest memory */
    uint32_t lo, hi;        /* its two dwords */
    uint64_t base;          /* with bits 63:32 for 64-bit system descriptors */
    uint32_t limit;         /* in bytes, granularity applied */
} pk_desc;

static inline unsigned pk_desc_type(const pk_desc *d) { return (d->hi >> 8) & 0xF; }
static inline bool pk_desc_s(const pk_desc *d) { return d->hi & (1u << 12); }
static inline unsigned pk_desc_dpl(const pk_desc *d) { return (d->hi >> 13) & 3; }
static inline bool pk_desc_present(const pk_desc *d) { return d->hi & (1u << 15); }
static inline bool pk_desc_code(const pk_desc *d) { return pk_desc_s(d) && (d->hi & (1u << 11)); }
static inline bool pk_desc_conforming(const pk_desc *d) { return pk_desc_code(d) && (d->hi & (1u << 10)); }
/* Code: readable; data: writable (type bit 1). */
static inline bool pk_desc_rw(const pk_desc *d) { return d->hi & (1u << 9); }
static inline bool pk_desc_long(const pk_desc *d) { return d->hi & (1u << 21); }
static inline bool pk_desc_big(const pk_desc *d) { return d->hi & (1u << 22); }
static inline uint16_t pk_desc_attributes(const pk_desc *d) { return (d->hi >> 8) & 0xF0FF; }

typedef enum pk_desc_lookup {
    PK_DESC_OK,
    PK_DESC_MISSING,    /* beyond the table limit, or TI=1 with no LDT */
    PK_DESC_FAULT,      /* reading the table faulted (res holds the fault) */
} pk_desc_lookup;

/* Reads the descriptor sel names (its TI bit picks GDT or LDT). wide reads
 * the 16-byte form of a system descriptor in 64-bit mode. */
pk_desc_lookup pk_desc_read(pk_emu *e, uint16_t sel, bool wide, pk_desc *d);
/* Sets the accessed bit in guest memory, as a segment load does. */
pk_emu_status pk_desc_set_accessed(pk_emu *e, pk_desc *d);
/* The hidden part of a segment register loaded from d. */
void pk_seg_set(pk_segment *s, uint16_t sel, const pk_desc *d);
/* Loads DS/ES/FS/GS/SS with the protected-mode checks of MOV Sreg against
 * the virtual CPL (SDM vol. 2, MOV; vol. 3A §5.5-5.7). */
pk_emu_status pk_seg_load(pk_emu *e, unsigned sreg, uint16_t sel);
/* Nulls DS/ES/FS/GS whose DPL the new, outer CPL may not use (far RET and
 * IRET to an outer level). */
void pk_seg_null_inaccessible(pk_emu *e);
/* Checks a code segment for a far JMP/CALL/RET/IRET target. for_return:
 * RPL is the new CPL (RET/IRET); otherwise a JMP/CALL at the same level.
 * Faults #GP(sel)/#NP(sel); 16-bit or mode-switching targets UNSUPPORTED. */
pk_emu_status pk_code_seg_check(pk_emu *e, uint16_t sel, bool for_return, pk_desc *d);
/* Checks the SS a far RET or IRET returns to, for the new CPL. */
pk_emu_status pk_stack_seg_check(pk_emu *e, uint16_t sel, unsigned new_cpl, pk_desc *d,
                                 bool *null_ok);
/* Reads len bytes at off in the guest's TSS (#GP(0)... per caller). False
 * when TR is not loaded or the range passes its limit. */
pk_desc_lookup pk_tss_read(pk_emu *e, uint32_t off, void *buf, size_t len);

/* The value of a model-specific register the table in system.c has (as
 * reset or as the guest wrote it); 0 for one it lacks. */
uint64_t pk_emu_msr(const pk_vcpu *vcpu, uint32_t index);

/* ---- instruction families (one file each) ---------------------------------- */

pk_emu_status pk_emu_descriptor_insn(pk_emu *e, pk_class_id row);  /* descriptors.c */
pk_emu_status pk_emu_system_insn(pk_emu *e, pk_class_id row);      /* system.c */
pk_emu_status pk_emu_io_insn(pk_emu *e, pk_class_id row);          /* io.c */
pk_emu_status pk_emu_transfer_insn(pk_emu *e, pk_class_id row);    /* transfer.c */
/* The completion of pk_emulate_io_in (io.c). */
pk_emu_status pk_emu_io_complete(pk_emu *e, const pk_io *io);
/* The rip after the instruction (32-bit wrap outside 64-bit mode). */
uint64_t pk_emu_next_rip(const pk_emu *e);
/* The delivery of pk_deliver, on the working state. */
pk_emu_status pk_emu_deliver(pk_emu *e, uint8_t vector, pk_event_kind kind,
                             uint32_t error_code);

#endif
