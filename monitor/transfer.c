/* popek — control transfers across segments and privilege levels: far
 * JMP/CALL/RET, IRET, INT n/INT3/INTO/INT1, and event delivery through the
 * guest's IDT (pk_deliver).
 *
 * Emulated (SDM vol. 2 pages of each instruction; vol. 3A §5.8 and §6.12,
 * §6.14 for delivery): direct and indirect far JMP/CALL to a code segment
 * at the same privilege or to conforming code; far RET (with imm16) to the
 * same or an outer level, popping SS:rSP and nulling data segments the
 * outer level may not use; IRET/IRETD/IRETQ likewise, with the IF/IOPL
 * rules of POPF applied with the virtual CPL; INT n through 32-bit
 * interrupt/trap gates (8-byte) or 64-bit gates (16-byte, IST included),
 * switching to the stack the guest TSS names when the handler is more
 * privileged.
 *
 * Far JMP/CALL through 32-bit call gates, with the stack switch and the
 * parameter copy of a CALL to a more privileged level.
 *
 * SYSCALL/SYSRET (64-bit mode; #UD elsewhere, as on Intel) and
 * SYSENTER/SYSEXIT, against the virtual MSRs.
 *
 * Returns UNSUPPORTED, changing nothing: far JMP/CALL through 64-bit call
 * gates, task gates or TSSs (task switches), IRET with NT=1 (task return) and IRET
 * to virtual-8086 mode, 16-bit interrupt/trap gates and task gates in the
 * IDT, 16-bit TSSs, transfers to 16-bit code or, in 64-bit mode, to
 * compatibility-mode code: the guest's real code runs in one mode only.
 *
 * Pushed segment selectors (CS, SS) fill their slot zero-extended. */
#include "internal/emu.h"

#include <inttypes.h>

uint64_t pk_emu_next_rip(const pk_emu *e)
{
    uint64_t rip = e->regs.rip + e->insn->length;
    return e->vcpu.bits == 64 ? rip : (uint32_t)rip;
}

/* A new rip must lie in the code segment's limit (32-bit) or be canonical
 * (64-bit): #GP(ec) otherwise. */
static pk_emu_status rip_check(pk_emu *e, const pk_desc *cs, uint64_t rip, uint32_t ec)
{
    if (e->vcpu.bits == 64 ? !pk_emu_canonical(rip) : rip > cs->limit)
        return pk_emu_gp(e, ec);
    return PK_EMU_DONE;
}

/* Loads CS from a checked descriptor with RPL = the CPL it runs at. */
static pk_emu_status enter_code(pk_emu *e, uint16_t sel, pk_desc *d, unsigned cpl, uint64_t rip)
{
    PK_EMU_TRY(pk_desc_set_accessed(e, d));
    pk_seg_set(&e->vcpu.seg[PK_CS], (uint16_t)((sel & ~3u) | cpl), d);
    e->vcpu.cpl = cpl;
    e->regs.rip = rip;
    return PK_EMU_DONE;
}

/* Loads SS:rSP after a stack switch or a return to another level. */
static void enter_stack(pk_emu *e, uint16_t sel, const pk_desc *d, bool null, uint64_t sp)
{
    if (null)
        e->vcpu.seg[PK_SS] = (pk_segment){ .selector = sel };
    else
        pk_seg_set(&e->vcpu.seg[PK_SS], sel, d);
    pk_emu_gpr_set(e, PK_RSP, pk_emu_stack_bits(e), sp);
}

/* ---- far JMP, far CALL ------------------------------------------------------ */

/* ptr16:16/32 (EA, 9A) or m16:16/32/64 (FF /5, FF /3): offset, then selector. */
static pk_emu_status far_target(pk_emu *e, uint16_t *sel, uint64_t *off)
{
    const ZydisDecodedOperand *op = &e->ops[0];
    unsigned size = e->insn->operand_width / 8;
    uint64_t addr, o = 0;
    if (op->type == ZYDIS_OPERAND_TYPE_POINTER) {
        *sel = op->ptr.segment;
        *off = op->ptr.offset;
        return PK_EMU_DONE;
    }
    PK_EMU_TRY(pk_emu_op_addr(e, op, &addr));
    PK_EMU_TRY(pk_emu_read(e, addr, &o, size, 0));
    PK_EMU_TRY(pk_emu_read(e, addr + size, sel, 2, 0));
    *off = o;
    return PK_EMU_DONE;
}

static pk_emu_status through_call_gate(pk_emu *e, uint16_t gate_sel, const pk_desc *gate,
                                       bool call);

/* A 32-bit call gate (type 0xC) where a far JMP or CALL names a selector. */
static bool is_call_gate(pk_emu *e, uint16_t sel, pk_desc *d)
{
    return e->vcpu.bits == 32 && (sel & 0xFFFC) && pk_desc_read(e, sel, false, d) == PK_DESC_OK &&
           !pk_desc_s(d) && pk_desc_type(d) == 0xC;
}

static pk_emu_status far_jmp_call(pk_emu *e, bool call)
{
    unsigned size = e->insn->operand_width / 8;
    uint16_t sel = 0;
    uint64_t off;
    pk_desc d = { 0 };
    PK_EMU_TRY(far_target(e, &sel, &off));
    if (is_call_gate(e, sel, &d))
        return through_call_gate(e, sel, &d, call);
    PK_EMU_TRY(pk_code_seg_check(e, sel, false, &d));
    if (size == 2)
        off &= 0xFFFF;
    PK_EMU_TRY(rip_check(e, &d, off, 0));
    if (call) {
        PK_EMU_TRY(pk_emu_push(e, e->vcpu.seg[PK_CS].selector, size, size));
        PK_EMU_TRY(pk_emu_push(e, pk_emu_next_rip(e), size, size));
    }
    PK_EMU_TRY(enter_code(e, sel, &d, e->vcpu.cpl, off));
    return pk_emu_effect(e, "far %s 0x%x:0x%" PRIx64, call ? "call" : "jmp", sel, off);
}

/* ---- far RET, IRET -------------------------------------------------------------- */

static uint16_t ret_imm(const pk_emu *e)
{
    for (unsigned i = 0; i < e->insn->operand_count_visible; i++)
        if (e->ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
            return (uint16_t)e->ops[i].imm.value.u;
    return 0;
}

static void release(pk_emu *e, uint16_t bytes)
{
    unsigned sb = pk_emu_stack_bits(e);
    pk_emu_gpr_set(e, PK_RSP, sb, pk_emu_gpr_get(e, PK_RSP, sb) + bytes);
}

/* The outer stack a return pops: SS:rSP, checked for the new CPL. */
static pk_emu_status pop_outer_stack(pk_emu *e, unsigned size, unsigned new_cpl, uint16_t *ss,
                                     uint64_t *sp, pk_desc *d, bool *null)
{
    uint64_t v;
    PK_EMU_TRY(pk_emu_pop(e, size, sp));
    PK_EMU_TRY(pk_emu_pop(e, size, &v));
    *ss = (uint16_t)v;
    return pk_stack_seg_check(e, *ss, new_cpl, d, null);
}

static pk_emu_status far_ret(pk_emu *e)
{
    unsigned size = e->insn->operand_width / 8, cpl = e->vcpu.cpl;
    uint16_t imm = ret_imm(e), ss = 0;
    uint64_t ip, cs, sp = 0;
    pk_desc d = { 0 }, sd = { 0 };
    bool null = false;

    PK_EMU_TRY(pk_emu_pop(e, size, &ip));
    PK_EMU_TRY(pk_emu_pop(e, size, &cs));
    PK_EMU_TRY(pk_code_seg_check(e, (uint16_t)cs, true, &d));
    unsigned new_cpl = cs & 3;
    PK_EMU_TRY(rip_check(e, &d, ip, 0));
    release(e, imm);
    if (new_cpl > cpl)
        PK_EMU_TRY(pop_outer_stack(e, size, new_cpl, &ss, &sp, &sd, &null));
    PK_EMU_TRY(enter_code(e, (uint16_t)cs, &d, new_cpl, ip));
    if (new_cpl > cpl) {
        enter_stack(e, ss, &sd, null, sp);
        release(e, imm); /* the parameters on the caller's stack too */
        pk_seg_null_inaccessible(e);
    }
    return pk_emu_effect(e, "far ret to 0x%x:0x%" PRIx64 " (CPL %u -> %u)", (unsigned)cs, ip,
                         cpl, new_cpl);
}

/* IRET (SDM vol. 2): protected-mode return to the same or an outer level;
 * in 64-bit mode SS:RSP is always popped. The flags are loaded with the
 * rules of the CPL the IRET runs at. */
static pk_emu_status iret(pk_emu *e)
{
    unsigned ow = e->insn->operand_width, size = ow / 8, cpl = e->vcpu.cpl;
    uint64_t ip, cs, flags, sp = 0;
    uint16_t ss = 0;
    pk_desc d = { 0 }, sd = { 0 };
    bool null = false;

    if (e->vcpu.vflags & PK_FLAG_NT)
        return e->vcpu.bits == 64 ? pk_emu_gp(e, 0)
                                  : pk_emu_unsupported(e, "IRET with NT=1 (task return)");
    PK_EMU_TRY(pk_emu_pop(e, size, &ip));
    PK_EMU_TRY(pk_emu_pop(e, size, &cs));
    PK_EMU_TRY(pk_emu_pop(e, size, &flags));
    if (e->vcpu.bits == 32 && ow == 32 && (flags & PK_FLAG_VM) && cpl == 0)
        return pk_emu_unsupported(e, "IRET to virtual-8086 mode");
    PK_EMU_TRY(pk_code_seg_check(e, (uint16_t)cs, true, &d));
    unsigned new_cpl = cs & 3;
    bool pop_stack = e->vcpu.bits == 64 || new_cpl > cpl;
    if (ow == 16)
        ip &= 0xFFFF;
    if (pop_stack)
        PK_EMU_TRY(pop_outer_stack(e, size, new_cpl, &ss, &sp, &sd, &null));
    PK_EMU_TRY(rip_check(e, &d, ip, 0));
    pk_emu_flags_load(e, flags, ow, cpl, true);
    PK_EMU_TRY(enter_code(e, (uint16_t)cs, &d, new_cpl, ip));
    if (pop_stack)
        enter_stack(e, ss, &sd, null, sp);
    if (new_cpl > cpl)
        pk_seg_null_inaccessible(e);
    return pk_emu_effect(e, "iret to 0x%x:0x%" PRIx64 " (CPL %u -> %u, vIF %d)", (unsigned)cs,
                         ip, cpl, new_cpl, !!(e->vcpu.vflags & PK_FLAG_IF));
}

/* ---- INT n, INT3, INTO, INT1 ---------------------------------------------------------- */

/* The frame records the address after the instruction (a trap). INT1
 * (ICEBP) is delivered like a hardware #DB: no gate DPL check. */
static pk_emu_status software_interrupt(pk_emu *e, pk_class_id row)
{
    uint8_t vector = row == PK_CLASS_INT3 ? 3 : row == PK_CLASS_INTO ? 4 : row == PK_CLASS_INT1 ? 1
                   : (uint8_t)e->insn->raw.imm[0].value.u;
    if (row == PK_CLASS_INTO && !(e->regs.rflags & PK_FLAG_OF)) {
        e->regs.rip = pk_emu_next_rip(e);
        return pk_emu_effect(e, "into: OF=0");
    }
    e->regs.rip = pk_emu_next_rip(e);
    return pk_emu_deliver(e, vector, row == PK_CLASS_INT1 ? PK_EVENT_EXCEPTION : PK_EVENT_SOFTWARE, 0);
}

/* ---- SYSCALL, SYSRET, SYSENTER, SYSEXIT ------------------------------------------------ */

enum {
    MSR_SYSENTER_CS = 0x174, MSR_SYSENTER_ESP = 0x175, MSR_SYSENTER_EIP = 0x176,
    MSR_STAR = 0xC0000081, MSR_LSTAR = 0xC0000082, MSR_FMASK = 0xC0000084,
};

/* The flat segments the fast system calls load without reading the GDT
 * (SDM vol. 2, SYSCALL: "the descriptors are not loaded from the GDT"). */
static void load_flat(pk_emu *e, uint16_t cs, uint16_t ss, unsigned cpl, bool code64)
{
    uint16_t dpl = (uint16_t)(cpl << PK_ATTR_DPL_SHIFT);
    e->vcpu.seg[PK_CS] = (pk_segment){ cs, 0, 0xFFFFFFFF,
                                       (uint16_t)((code64 ? 0xA09B : 0xC09B) | dpl) };
    e->vcpu.seg[PK_SS] = (pk_segment){ ss, 0, 0xFFFFFFFF, (uint16_t)(0xC093 | dpl) };
    e->vcpu.cpl = cpl;
}

/* SYSCALL exists in 64-bit mode with EFER.SCE; elsewhere it is #UD, as on
 * Intel CPUs (AMD's also run it from 32-bit code; the virtual CPU follows
 * Intel's SDM throughout). */
static pk_emu_status syscall_insn(pk_emu *e)
{
    if (e->vcpu.bits != 64 || !(e->vcpu.efer & PK_EFER_SCE))
        return pk_emu_ud(e);
    uint64_t star = pk_emu_msr(&e->vcpu, MSR_STAR), fmask = pk_emu_msr(&e->vcpu, MSR_FMASK);
    uint16_t star_cs = (uint16_t)(star >> 32), cs = star_cs & 0xFFFC;
    uint64_t flags = pk_vcpu_flags(&e->vcpu, &e->regs);
    e->regs.gpr[PK_RCX] = pk_emu_next_rip(e);
    e->regs.gpr[PK_R11] = flags;
    pk_emu_flags_load(e, flags & ~fmask & ~(uint64_t)PK_FLAG_RF, 64, 0, true);
    load_flat(e, cs, (uint16_t)(star_cs + 8), 0, true); /* SS: STAR[47:32] + 8, unmasked */
    e->regs.rip = pk_emu_msr(&e->vcpu, MSR_LSTAR);
    return pk_emu_effect(e, "syscall to 0x%x:0x%" PRIx64, cs, e->regs.rip);
}

/* SYSRET with REX.W returns to 64-bit code at CPL 3; without it, to
 * compatibility mode, which the guest's process cannot enter. */
static pk_emu_status sysret_insn(pk_emu *e)
{
    if (e->vcpu.bits != 64 || !(e->vcpu.efer & PK_EFER_SCE))
        return pk_emu_ud(e);
    if (e->vcpu.cpl != 0 || !pk_emu_canonical(e->regs.gpr[PK_RCX]))
        return pk_emu_gp(e, 0);
    if (e->insn->operand_width != 64)
        return pk_emu_unsupported(e, "SYSRET to compatibility mode");
    uint16_t base = (uint16_t)(pk_emu_msr(&e->vcpu, MSR_STAR) >> 48);
    pk_emu_flags_load(e, (e->regs.gpr[PK_R11] & 0x3C7FD7) | 2, 64, 0, true);
    load_flat(e, (uint16_t)((base + 16) | 3), (uint16_t)((base + 8) | 3), 3, true);
    e->regs.rip = e->regs.gpr[PK_RCX];
    return pk_emu_effect(e, "sysret to 0x%" PRIx64 " (CPL 0 -> 3)", e->regs.rip);
}

/* SYSENTER: #GP(0) until IA32_SYSENTER_CS names a segment. */
static pk_emu_status sysenter_insn(pk_emu *e)
{
    uint16_t cs = (uint16_t)pk_emu_msr(&e->vcpu, MSR_SYSENTER_CS) & 0xFFFC;
    if (!cs)
        return pk_emu_gp(e, 0);
    bool is64 = e->vcpu.bits == 64;
    uint64_t flags = pk_vcpu_flags(&e->vcpu, &e->regs);
    pk_emu_flags_load(e, flags & ~(uint64_t)(PK_FLAG_IF | PK_FLAG_RF | PK_FLAG_VM), 64, 0, true);
    load_flat(e, cs, (uint16_t)(cs + 8), 0, is64);
    uint64_t esp = pk_emu_msr(&e->vcpu, MSR_SYSENTER_ESP);
    uint64_t eip = pk_emu_msr(&e->vcpu, MSR_SYSENTER_EIP);
    e->regs.gpr[PK_RSP] = is64 ? esp : (uint32_t)esp;
    e->regs.rip = is64 ? eip : (uint32_t)eip;
    return pk_emu_effect(e, "sysenter to 0x%x:0x%" PRIx64, cs, e->regs.rip);
}

/* SYSEXIT: back to CPL 3 at rDX with the stack at rCX. */
static pk_emu_status sysexit_insn(pk_emu *e)
{
    uint16_t base = (uint16_t)pk_emu_msr(&e->vcpu, MSR_SYSENTER_CS) & 0xFFFC;
    if (e->vcpu.cpl != 0 || !base)
        return pk_emu_gp(e, 0);
    bool wide = e->insn->operand_width == 64;
    if (wide != (e->vcpu.bits == 64))
        return pk_emu_unsupported(e, "SYSEXIT to another mode");
    unsigned cs_off = wide ? 32 : 16;
    load_flat(e, (uint16_t)((base + cs_off) | 3), (uint16_t)((base + cs_off + 8) | 3), 3, wide);
    e->regs.gpr[PK_RSP] = wide ? e->regs.gpr[PK_RCX] : (uint32_t)e->regs.gpr[PK_RCX];
    e->regs.rip = wide ? e->regs.gpr[PK_RDX] : (uint32_t)e->regs.gpr[PK_RDX];
    return pk_emu_effect(e, "sysexit to 0x%" PRIx64 " (CPL 0 -> 3)", e->regs.rip);
}

pk_emu_status pk_emu_transfer_insn(pk_emu *e, pk_class_id row)
{
    switch (row) {
    case PK_CLASS_JMP_FAR: return far_jmp_call(e, false);
    case PK_CLASS_CALL_FAR: return far_jmp_call(e, true);
    case PK_CLASS_RET_FAR: return far_ret(e);
    case PK_CLASS_IRET: return iret(e);
    case PK_CLASS_INT_N:
    case PK_CLASS_INT80:
    case PK_CLASS_INT3:
    case PK_CLASS_INTO:
    case PK_CLASS_INT1: return software_interrupt(e, row);
    case PK_CLASS_SYSCALL: return syscall_insn(e);
    case PK_CLASS_SYSRET: return sysret_insn(e);
    case PK_CLASS_SYSENTER: return sysenter_insn(e);
    case PK_CLASS_SYSEXIT: return sysexit_insn(e);
    default: return pk_emu_unsupported(e, "not a control transfer");
    }
}

/* ---- event delivery ------------------------------------------------------------------------ */

/* Exceptions that push an error code (SDM vol. 3A table 6-1). */
static bool vector_has_error_code(uint8_t v)
{
    return v == PK_VEC_DF || (v >= PK_VEC_TS && v <= PK_VEC_PF) || v == PK_VEC_AC;
}

/* An IDT gate. */
typedef struct gate {
    unsigned type, dpl, ist;
    bool present;
    uint16_t sel;
    uint64_t offset;
} gate;

static pk_emu_status gate_read(pk_emu *e, uint8_t vector, uint32_t idt_ec, gate *g)
{
    unsigned size = e->vcpu.bits == 64 ? 16 : 8;
    uint32_t w[4] = { 0 };
    if ((uint32_t)vector * size + size - 1 > e->vcpu.idtr.limit)
        return pk_emu_gp(e, idt_ec);
    PK_EMU_TRY(pk_emu_read(e, e->vcpu.idtr.base + (uint64_t)vector * size, w, size, PK_ACC_SYS));
    g->type = (w[1] >> 8) & 0x1F; /* with the S bit, which a gate has clear */
    g->dpl = (w[1] >> 13) & 3;
    g->present = w[1] & (1u << 15);
    g->ist = size == 16 ? w[1] & 7 : 0;
    g->sel = (uint16_t)(w[0] >> 16);
    g->offset = (w[0] & 0xFFFF) | (w[1] & 0xFFFF0000u) | ((uint64_t)w[2] << 32);
    return PK_EMU_DONE;
}

/* SDM vol. 2 INT n, "PROTECTED-MODE" and "IA-32e-MODE": the gate and the
 * handler's code segment. ext is the EXT bit of error codes (1 unless INT
 * n/INT3/INTO). */
static pk_emu_status gate_check(pk_emu *e, const gate *g, pk_event_kind kind, uint32_t idt_ec,
                                uint32_t ext, pk_desc *cs)
{
    uint32_t ec = (g->sel & 0xFFFCu) | ext;
    if (e->vcpu.bits == 32 && g->type == 5)
        return pk_emu_unsupported(e, "task gate in the IDT");
    if (e->vcpu.bits == 32 && (g->type == 6 || g->type == 7))
        return pk_emu_unsupported(e, "16-bit interrupt or trap gate");
    if (g->type != 0xE && g->type != 0xF)
        return pk_emu_gp(e, idt_ec);
    if (kind == PK_EVENT_SOFTWARE && g->dpl < e->vcpu.cpl)
        return pk_emu_gp(e, idt_ec);
    if (!g->present)
        return pk_emu_fault(e, PK_VEC_NP, true, idt_ec);
    if (!(g->sel & 0xFFFC))
        return pk_emu_gp(e, ext);
    switch (pk_desc_read(e, g->sel, false, cs)) {
    case PK_DESC_OK: break;
    case PK_DESC_MISSING: return pk_emu_gp(e, ec);
    case PK_DESC_FAULT: return PK_EMU_FAULT;
    }
    if (!pk_desc_code(cs) || pk_desc_dpl(cs) > e->vcpu.cpl)
        return pk_emu_gp(e, ec);
    if (!pk_desc_present(cs))
        return pk_emu_fault(e, PK_VEC_NP, true, ec);
    if (e->vcpu.bits == 64 && (!pk_desc_long(cs) || pk_desc_big(cs)))
        return pk_emu_gp(e, ec);
    if (e->vcpu.bits == 32 && !pk_desc_big(cs))
        return pk_emu_unsupported(e, "interrupt handler in 16-bit code");
    return rip_check(e, cs, g->offset, ext);
}

/* A #TS for a bad TSS or SS (SDM vol. 3A §6.14.1 table). */
static pk_emu_status ts(pk_emu *e, uint32_t ec)
{
    return pk_emu_fault(e, PK_VEC_TS, true, ec);
}

static pk_emu_status tss_fetch(pk_emu *e, uint32_t off, void *buf, size_t n, uint32_t ext)
{
    switch (pk_tss_read(e, off, buf, n)) {
    case PK_DESC_OK: return PK_EMU_DONE;
    case PK_DESC_MISSING: return ts(e, (e->vcpu.seg[PK_TR].selector & 0xFFFCu) | ext);
    case PK_DESC_FAULT: break;
    }
    return PK_EMU_FAULT;
}

/* 32-bit: SS0:ESP0 (or SS1/SS2) from the 32-bit TSS, checked as the SDM's
 * "INTER-PRIVILEGE-LEVEL-INTERRUPT" does. */
static pk_emu_status switch_stack32(pk_emu *e, unsigned new_cpl, uint32_t ext)
{
    uint32_t esp = 0;
    uint16_t ss = 0;
    pk_desc d = { 0 };
    unsigned tss_type = e->vcpu.seg[PK_TR].attributes & PK_ATTR_TYPE;
    if (tss_type == 1 || tss_type == 3)
        return pk_emu_unsupported(e, "stack switch through a 16-bit TSS");
    PK_EMU_TRY(tss_fetch(e, 4 + 8 * new_cpl, &esp, 4, ext));
    PK_EMU_TRY(tss_fetch(e, 8 + 8 * new_cpl, &ss, 2, ext));
    uint32_t ec = (ss & 0xFFFCu) | ext;
    if (!(ss & 0xFFFC))
        return ts(e, ext);
    if ((ss & 3) != new_cpl)
        return ts(e, ec);
    switch (pk_desc_read(e, ss, false, &d)) {
    case PK_DESC_OK: break;
    case PK_DESC_MISSING: return ts(e, ec);
    case PK_DESC_FAULT: return PK_EMU_FAULT;
    }
    if (!pk_desc_s(&d) || pk_desc_code(&d) || !pk_desc_rw(&d) || pk_desc_dpl(&d) != new_cpl)
        return ts(e, ec);
    if (!pk_desc_present(&d))
        return pk_emu_fault(e, PK_VEC_SS, true, ec);
    PK_EMU_TRY(pk_desc_set_accessed(e, &d));
    enter_stack(e, ss, &d, false, esp);
    return PK_EMU_DONE;
}

/* A far JMP or CALL through a 32-bit call gate (SDM vol. 2, CALL and JMP,
 * "CALL-GATE"; vol. 3A §5.8.5): the gate names the code segment and the
 * offset. A CALL to a more privileged non-conforming segment switches to
 * the stack the TSS gives that level, and copies the gate's count of
 * parameter dwords from the caller's stack; a JMP never changes level. */
static pk_emu_status through_call_gate(pk_emu *e, uint16_t gate_sel, const pk_desc *gate,
                                       bool call)
{
    unsigned cpl = e->vcpu.cpl, nparams = gate->hi & 0x1F;
    uint16_t sel = (uint16_t)(gate->lo >> 16), old_ss = e->vcpu.seg[PK_SS].selector;
    uint64_t off = (gate->lo & 0xFFFF) | (gate->hi & 0xFFFF0000u);
    uint32_t gate_ec = gate_sel & 0xFFFC, ec = sel & 0xFFFC;
    pk_desc d = { 0 };

    if (pk_desc_dpl(gate) < cpl || pk_desc_dpl(gate) < (gate_sel & 3u))
        return pk_emu_gp(e, gate_ec);
    if (!pk_desc_present(gate))
        return pk_emu_fault(e, PK_VEC_NP, true, gate_ec);
    if (!ec)
        return pk_emu_gp(e, 0);
    switch (pk_desc_read(e, sel, false, &d)) {
    case PK_DESC_OK: break;
    case PK_DESC_MISSING: return pk_emu_gp(e, ec);
    case PK_DESC_FAULT: return PK_EMU_FAULT;
    }
    unsigned dpl = pk_desc_dpl(&d);
    bool same_level = pk_desc_conforming(&d) || dpl == cpl;
    if (!pk_desc_code(&d) || dpl > cpl || (!call && !same_level))
        return pk_emu_gp(e, ec);
    if (!pk_desc_present(&d))
        return pk_emu_fault(e, PK_VEC_NP, true, ec);
    if (!pk_desc_big(&d))
        return pk_emu_unsupported(e, "call gate to 16-bit code");
    PK_EMU_TRY(rip_check(e, &d, off, 0));
    unsigned new_cpl = same_level ? cpl : dpl;
    uint64_t ret = pk_emu_next_rip(e);
    if (call && new_cpl < cpl) {
        uint32_t old_esp = (uint32_t)pk_emu_gpr_get(e, PK_RSP, pk_emu_stack_bits(e));
        uint32_t params[31] = { 0 };
        if (nparams)
            PK_EMU_TRY(pk_emu_read(e, old_esp, params, 4 * nparams, PK_ACC_STACK));
        PK_EMU_TRY(switch_stack32(e, new_cpl, 0));
        PK_EMU_TRY(pk_emu_push(e, old_ss, 4, 4));
        PK_EMU_TRY(pk_emu_push(e, old_esp, 4, 4));
        for (unsigned i = nparams; i-- > 0;)
            PK_EMU_TRY(pk_emu_push(e, params[i], 4, 4));
    }
    if (call) {
        PK_EMU_TRY(pk_emu_push(e, e->vcpu.seg[PK_CS].selector, 4, 4));
        PK_EMU_TRY(pk_emu_push(e, ret, 4, 4));
    }
    PK_EMU_TRY(enter_code(e, sel, &d, new_cpl, off));
    return pk_emu_effect(e, "far %s through gate 0x%x to 0x%x:0x%" PRIx64 " (CPL %u -> %u)",
                         call ? "call" : "jmp", gate_sel, sel, off, cpl, new_cpl);
}

/* 64-bit: RSPn or IST[n] from the 64-bit TSS; SS becomes null with RPL =
 * the new CPL on a privilege change; RSP is aligned down to 16. */
static pk_emu_status switch_stack64(pk_emu *e, unsigned new_cpl, unsigned ist, uint32_t ext)
{
    uint64_t rsp = e->regs.gpr[PK_RSP];
    if (ist)
        PK_EMU_TRY(tss_fetch(e, 0x24 + 8 * (ist - 1), &rsp, 8, ext));
    else if (new_cpl < e->vcpu.cpl)
        PK_EMU_TRY(tss_fetch(e, 4 + 8 * new_cpl, &rsp, 8, ext));
    if (!pk_emu_canonical(rsp))
        return pk_emu_fault(e, PK_VEC_SS, true, ext);
    if (new_cpl < e->vcpu.cpl)
        e->vcpu.seg[PK_SS] = (pk_segment){ .selector = (uint16_t)new_cpl };
    e->regs.gpr[PK_RSP] = rsp & ~0xFull;
    return PK_EMU_DONE;
}

pk_emu_status pk_emu_deliver(pk_emu *e, uint8_t vector, pk_event_kind kind, uint32_t error_code)
{
    uint32_t ext = kind == PK_EVENT_SOFTWARE ? 0 : 1;
    uint32_t idt_ec = (uint32_t)vector * 8 + 2 + ext;
    bool is64 = e->vcpu.bits == 64;
    unsigned slot = is64 ? 8 : 4, old_cpl = e->vcpu.cpl;
    gate g = { 0 };
    pk_desc cs = { 0 };

    PK_EMU_TRY(gate_read(e, vector, idt_ec, &g));
    PK_EMU_TRY(gate_check(e, &g, kind, idt_ec, ext, &cs));
    unsigned new_cpl = pk_desc_conforming(&cs) ? old_cpl : pk_desc_dpl(&cs);
    uint64_t image = pk_vcpu_flags(&e->vcpu, &e->regs);
    uint64_t old_ss = e->vcpu.seg[PK_SS].selector, old_rsp = e->regs.gpr[PK_RSP];
    uint64_t old_cs = e->vcpu.seg[PK_CS].selector, ret = e->regs.rip;

    if (is64)
        PK_EMU_TRY(switch_stack64(e, new_cpl, g.ist, ext));
    else if (new_cpl < old_cpl)
        PK_EMU_TRY(switch_stack32(e, new_cpl, ext));
    e->vcpu.cpl = new_cpl; /* the pushes are the handler's level's accesses */
    if (is64 || new_cpl < old_cpl) {
        PK_EMU_TRY(pk_emu_push(e, old_ss, slot, slot));
        PK_EMU_TRY(pk_emu_push(e, old_rsp, slot, slot));
    }
    PK_EMU_TRY(pk_emu_push(e, image, slot, slot));
    PK_EMU_TRY(pk_emu_push(e, old_cs, slot, slot));
    PK_EMU_TRY(pk_emu_push(e, ret, slot, slot));
    if (kind == PK_EVENT_EXCEPTION && vector_has_error_code(vector))
        PK_EMU_TRY(pk_emu_push(e, error_code, slot, slot));
    PK_EMU_TRY(enter_code(e, g.sel, &cs, new_cpl, g.offset));
    /* TF, NT, RF and VM cleared; IF too through an interrupt gate (type E) */
    e->regs.rflags &= ~(uint64_t)(PK_FLAG_TF | PK_FLAG_RF | PK_FLAG_VM);
    e->vcpu.vflags &= ~(uint64_t)(PK_FLAG_NT | (g.type == 0xE ? PK_FLAG_IF : 0));
    return pk_emu_effect(e, "vector 0x%x -> 0x%x:0x%" PRIx64 " (CPL %u -> %u)", vector,
                         e->vcpu.seg[PK_CS].selector, g.offset, old_cpl, new_cpl);
}

/* ---- the exported entry ------------------------------------------------------------------ */

pk_emu_result pk_deliver(pk_vcpu *vcpu, pk_regs *regs, const pk_guest_mem *mem,
                         uint8_t vector, pk_event_kind kind, bool has_error_code,
                         uint32_t error_code)
{
    pk_emu e = { .vcpu = *vcpu, .regs = *regs, .mem = mem };
    e.res.status = PK_EMU_DONE;
    bool wants = kind == PK_EVENT_EXCEPTION && vector_has_error_code(vector);
    pk_emu_status s = has_error_code != wants
        ? pk_emu_unsupported(&e, "error code does not match the vector")
        : pk_emu_deliver(&e, vector, kind, error_code);
    if (s == PK_EMU_DONE) {
        *vcpu = e.vcpu;
        *regs = e.regs;
    }
    e.res.status = s;
    return e.res;
}
