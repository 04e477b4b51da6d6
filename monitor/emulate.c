/* popek — pk_emulate: one sensitive instruction against the virtual CPU.
 *
 * The pipeline (STYLE.md point 4): the engine fetches and decodes; here
 * the instruction is identified by its catalog row (pk_classify), computed
 * on working copies of the vcpu and registers by the handler of its family,
 * and committed only when it completes; rip then moves past it unless the
 * handler chose another (branches, REP I/O). A virtual fault leaves vcpu
 * and registers as they were, with rip at the instruction.
 *
 * The families and their files:
 *   flags      PUSHF, POPF, CLI, STI, HLT                       (here)
 *   system     SGDT/SIDT/LGDT/LIDT, SMSW/LMSW/CLTS, MOV CR/DR,
 *              RDMSR/WRMSR, INVLPG/INVD/WBINVD, XSETBV, SWAPGS,
 *              STAC/CLAC                                          (system.c)
 *   selectors  LAR/LSL/VERR/VERW, LLDT/LTR/SLDT/STR, MOV/PUSH/POP
 *              Sreg, LDS/LES/LSS/LFS/LGS                          (descriptors.c)
 *   I/O        IN, OUT, INS, OUTS                                 (io.c)
 *   transfers  far JMP/CALL/RET, IRET, INT n/INT3/INTO/INT1,
 *              SYSCALL/SYSRET/SYSENTER/SYSEXIT                    (transfer.c)
 *
 * Every other row returns UNSUPPORTED with nothing changed: CPUID, RDTSC,
 * RDTSCP, RDPID, RDPMC, RDPRU, INVPCID,
 * MONITOR/MWAIT, XSAVES/XRSTORS, XGETBV, RD/WRFSBASE, ENCLS, SEV-SNP,
 * TDCALL, WRUSS. */
#include "internal/emu.h"

/* ---- PUSHF, POPF, CLI, STI, HLT ------------------------------------------ */

/* PUSHF/PUSHFD/PUSHFQ: the image of pk_vcpu_flags, 2, 4 or 8 bytes. */
static pk_emu_status pushf(pk_emu *e)
{
    unsigned size = e->insn->operand_width / 8;
    uint64_t image = pk_vcpu_flags(&e->vcpu, &e->regs);
    PK_EMU_TRY(pk_emu_push(e, image, size, size));
    return pk_emu_effect(e, "pushf 0x%llx", (unsigned long long)(image & (size == 2 ? 0xFFFF : ~0ull)));
}

/* POPF (REFERENCE §5.1) with the virtual CPL and IOPL. */
static pk_emu_status popf(pk_emu *e)
{
    uint64_t v, before = e->vcpu.vflags;
    PK_EMU_TRY(pk_emu_pop(e, e->insn->operand_width / 8, &v));
    pk_emu_flags_load(e, v, e->insn->operand_width, e->vcpu.cpl, false);
    return pk_emu_effect(e, "popf 0x%llx: vIF %d -> %d, IOPL %u -> %u", (unsigned long long)v,
                         !!(before & PK_FLAG_IF), !!(e->vcpu.vflags & PK_FLAG_IF),
                         (unsigned)(before >> 12) & 3, pk_emu_iopl(&e->vcpu));
}

/* CLI/STI: CPL <= IOPL, else #GP(0) (no PVI). STI holds interrupts until
 * the next instruction is done, when it sets IF. */
static pk_emu_status cli_sti(pk_emu *e, bool sti)
{
    bool was = e->vcpu.vflags & PK_FLAG_IF;
    if (e->vcpu.cpl > pk_emu_iopl(&e->vcpu))
        return pk_emu_gp(e, 0);
    if (sti) {
        e->vcpu.vflags |= PK_FLAG_IF;
        if (!was)
            e->vcpu.interrupt_shadow = e->res.interrupt_window = true;
    } else {
        e->vcpu.vflags &= ~(uint64_t)PK_FLAG_IF;
    }
    return pk_emu_effect(e, "vIF %d -> %d", was, sti);
}

static pk_emu_status hlt(pk_emu *e)
{
    if (e->vcpu.cpl)
        return pk_emu_gp(e, 0);
    pk_emu_effect(e, "hlt");
    return PK_EMU_HALT;
}

/* ---- dispatch ------------------------------------------------------------------- */

/* Rows whose handler sets rip itself. */
static bool sets_rip(pk_class_id row)
{
    switch (row) {
    case PK_CLASS_JMP_FAR: case PK_CLASS_CALL_FAR: case PK_CLASS_RET_FAR:
    case PK_CLASS_IRET: case PK_CLASS_INT_N: case PK_CLASS_INT80: case PK_CLASS_INT3:
    case PK_CLASS_INTO: case PK_CLASS_INT1:
    case PK_CLASS_SYSCALL: case PK_CLASS_SYSRET: case PK_CLASS_SYSENTER: case PK_CLASS_SYSEXIT:
    case PK_CLASS_IN: case PK_CLASS_OUT: case PK_CLASS_INS: case PK_CLASS_OUTS:
        return true;
    default:
        return false;
    }
}

static pk_emu_status dispatch(pk_emu *e, pk_class_id row)
{
    switch (row) {
    case PK_CLASS_PUSHF: return pushf(e);
    case PK_CLASS_POPF: return popf(e);
    case PK_CLASS_CLI: return cli_sti(e, false);
    case PK_CLASS_STI: return cli_sti(e, true);
    case PK_CLASS_HLT: return hlt(e);
    case PK_CLASS_SGDT: case PK_CLASS_SIDT: case PK_CLASS_LGDT: case PK_CLASS_LIDT:
    case PK_CLASS_SMSW: case PK_CLASS_LMSW: case PK_CLASS_CLTS: case PK_CLASS_MOV_CR:
    case PK_CLASS_MOV_DR: case PK_CLASS_RDMSR: case PK_CLASS_WRMSR: case PK_CLASS_INVLPG:
    case PK_CLASS_INVD: case PK_CLASS_WBINVD: case PK_CLASS_XSETBV: case PK_CLASS_SWAPGS:
    case PK_CLASS_STAC_CLAC:
        return pk_emu_system_insn(e, row);
    case PK_CLASS_LAR: case PK_CLASS_LSL: case PK_CLASS_VERR: case PK_CLASS_VERW:
    case PK_CLASS_SLDT: case PK_CLASS_STR: case PK_CLASS_LLDT: case PK_CLASS_LTR:
    case PK_CLASS_MOV_TO_SREG: case PK_CLASS_MOV_FROM_SREG: case PK_CLASS_PUSH_SREG:
    case PK_CLASS_POP_SREG: case PK_CLASS_LDS_LES: case PK_CLASS_LSS_LFS_LGS:
        return pk_emu_descriptor_insn(e, row);
    case PK_CLASS_IN: case PK_CLASS_OUT: case PK_CLASS_INS: case PK_CLASS_OUTS:
        return pk_emu_io_insn(e, row);
    case PK_CLASS_JMP_FAR: case PK_CLASS_CALL_FAR: case PK_CLASS_RET_FAR: case PK_CLASS_IRET:
    case PK_CLASS_INT_N: case PK_CLASS_INT80: case PK_CLASS_INT3: case PK_CLASS_INTO:
    case PK_CLASS_INT1: case PK_CLASS_SYSCALL: case PK_CLASS_SYSRET: case PK_CLASS_SYSENTER:
    case PK_CLASS_SYSEXIT:
        return pk_emu_transfer_insn(e, row);
    default:
        return pk_emu_unsupported(e, "not emulated");
    }
}

static bool mode_matches(const ZydisDecodedInstruction *insn, const pk_vcpu *vcpu)
{
    return (vcpu->bits == 64) == (insn->machine_mode == ZYDIS_MACHINE_MODE_LONG_64) &&
           (vcpu->bits == 64 || insn->machine_mode == ZYDIS_MACHINE_MODE_LEGACY_32);
}

/* Copies the working state back when the instruction completed. */
static pk_emu_result finish(pk_emu *e, pk_emu_status s, pk_vcpu *vcpu, pk_regs *regs)
{
    e->res.status = s;
    if (s == PK_EMU_DONE || s == PK_EMU_IO || s == PK_EMU_HALT) {
        *vcpu = e->vcpu;
        *regs = e->regs;
    } else {
        e->res.interrupt_window = false;
    }
    return e->res;
}

pk_emu_result pk_emulate(const ZydisDecodedInstruction *insn,
                         const ZydisDecodedOperand *ops, pk_vcpu *vcpu,
                         pk_regs *regs, const pk_guest_mem *mem)
{
    pk_emu e = { .insn = insn, .ops = ops, .vcpu = *vcpu, .regs = *regs, .mem = mem };
    e.res.status = PK_EMU_DONE;
    if (!mode_matches(insn, vcpu))
        return finish(&e, pk_emu_unsupported(&e, "decoded for another mode"), vcpu, regs);
    pk_class_id row = pk_classify(insn);
    pk_emu_status s = dispatch(&e, row);
    if ((s == PK_EMU_DONE || s == PK_EMU_HALT) && !sets_rip(row))
        e.regs.rip = pk_emu_next_rip(&e);
    return finish(&e, s, vcpu, regs);
}

pk_emu_result pk_emulate_io_in(const ZydisDecodedInstruction *insn,
                               const ZydisDecodedOperand *ops, pk_vcpu *vcpu,
                               pk_regs *regs, const pk_guest_mem *mem,
                               const pk_io *io)
{
    pk_emu e = { .insn = insn, .ops = ops, .vcpu = *vcpu, .regs = *regs, .mem = mem };
    e.res.status = PK_EMU_DONE;
    if (!mode_matches(insn, vcpu))
        return finish(&e, pk_emu_unsupported(&e, "decoded for another mode"), vcpu, regs);
    return finish(&e, pk_emu_io_complete(&e, io), vcpu, regs);
}
