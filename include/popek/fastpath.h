/* popek — the fast path: patched instructions emulated in place, in the
 * trampoline, against a vcpu page the monitor shares with the guest.
 *
 * A jump-patched site normally stops in the monitor (an INT3 in its
 * trampoline): a ptrace round trip of microseconds. For the instructions a
 * kernel runs most (PUSHF and POPF around every critical section) and the
 * cheap reads of the virtual CPU (SMSW, SGDT, SIDT, SLDT, STR, MOV from a
 * segment register), the trampoline can instead do what the emulation
 * does, with ordinary instructions reading and writing the vcpu page: a
 * few cycles; so for CLI and STI where they are patched. What the block
 * cannot decide alone (a POPF or STI that sets IF while an interrupt
 * waits, a POPF that sets TF; a store the virtual CR4.UMIP forbids, CLI
 * or STI at a CPL above IOPL) goes to the monitor as before, through the
 * slow address.
 *
 * The blocks agree with pk_emulate bit for bit (tests/unit/test_fastpath.c
 * runs both on random states). */
#ifndef POPEK_FASTPATH_H
#define POPEK_FASTPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <Zydis/Zydis.h>

#include "popek/patch.h"
#include "popek/status.h"
#include "popek/vcpu.h"

/* The vcpu page, as the blocks read it: offsets are fixed, since the
 * blocks address the fields directly. The monitor writes it from its
 * pk_vcpu before the guest runs (pk_vcpu_page_store) and reads back what
 * blocks change, the virtual flags, when the guest stops
 * (pk_vcpu_page_load). */
typedef struct pk_vcpu_page {
    uint64_t vflags;        /* 0x00: virtual IF, IOPL, NT and ID */
    uint64_t popf_mask;     /* 0x08: the EFLAGS bits a 32- or 64-bit POPF
                               loads at the virtual CPL and IOPL */
    uint64_t slow;          /* 0x10: PK_VCPU_PAGE_* */
    uint64_t cr0;           /* 0x18: SMSW */
    uint64_t sel[PK_SEG_COUNT]; /* 0x20: selectors, ES .. GS, LDTR, TR */
    uint8_t gdtr[16];       /* 0x60: SGDT's image: limit (2 bytes), base (8) */
    uint8_t idtr[16];       /* 0x70: SIDT's */
} pk_vcpu_page;

enum {
    /* An interrupt waits for IF: a POPF that sets it goes to the monitor. */
    PK_VCPU_PAGE_PENDING = 1 << 0,
    /* SGDT, SIDT, SLDT, STR and SMSW fault (CR4.UMIP at CPL > 0). */
    PK_VCPU_PAGE_UMIP = 1 << 1,
};

/* (A user program's page must hold NT and ID clear: they are real.) */
void pk_vcpu_page_store(pk_vcpu_page *page, const pk_vcpu *vcpu, bool pending);
void pk_vcpu_page_load(const pk_vcpu_page *page, pk_vcpu *vcpu);

/* Blocks for a user program (popek run) differ in two ways: NT and ID
 * are the thread's real flags, not the page's (a page serves every thread
 * of a process), and MOV from a segment register has no block (it reads
 * the thread's own selectors in the monitor). */

/* Whether insn (decoded with operands in bits-bit code) has a fast path. */
bool pk_fastpath_has(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                     unsigned bits, bool user);

/* Emits into buf (NULL: measure) the block that does what insn, decoded at
 * site, does, for code at at, with the vcpu page at page (in 64-bit code
 * within 2 GiB of at) and slow the address that sends the instruction to
 * the monitor (entered with every register as at the block's start). It
 * falls through at its end. Errors: PK_ERR_UNSUPPORTED for an instruction
 * or form without a fast path, or a page or operand out of reach. */
pk_status pk_fastpath_emit(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                           unsigned bits, bool user, uint64_t site, uint64_t at, uint64_t page,
                           uint64_t slow, uint8_t *buf, size_t *len, pk_error *err);

/* Where a fault inside a block leaves the guest's state: its RSP (ESP)
 * is below bytes above the block's; of rax, rcx, rdx and rbx (eax ...),
 * those the block borrowed are saved at RSP + saved[i], the others (-1)
 * are the guest's; its flags are the real ones, or saved at RSP + flags
 * when that is not -1. */
typedef struct pk_fastpath_frame {
    int64_t below;
    int64_t saved[4];
    int64_t flags;
} pk_fastpath_frame;

/* For a fault at rip inside the block pk_fastpath_emit makes of insn (the
 * same site, at and page): the frame that undoes what the block has done,
 * so that the fault is the instruction's at its site. False when rip is the
 * block's first instruction (nothing to undo) or no instruction of it that
 * touches the guest's memory: its stack, the operand, POPF's value. */
bool pk_fastpath_unwind(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                        unsigned bits, bool user, uint64_t site, uint64_t at, uint64_t page,
                        uint64_t rip, pk_fastpath_frame *frame);

/* A fault at regs->rip inside the block of patched site p (the block at
 * block, made with user and page as pk_fastpath_emit was): what the block
 * changed is put back from the stack (read through mem) and rip is the
 * block's INT3 (p->trampoline), where the monitor emulates the instruction,
 * which faults there, or does not, as the instruction itself would (a
 * block's own pushes reach further below RSP than the instruction's).
 * False, changing nothing, when rip is at no instruction of the block that
 * can fault, or the stack cannot be read. */
bool pk_fastpath_undo(const pk_patch *p, unsigned bits, bool user, uint64_t block,
                      uint64_t page, pk_regs *regs, const pk_guest_mem *mem);

#endif
