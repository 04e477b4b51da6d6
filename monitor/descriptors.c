/* popek — the guest's descriptor tables, and the instructions that read
 * them or load segment registers.
 *
 * Emulated: LAR, LSL, VERR, VERW, LLDT, LTR, SLDT, STR, MOV Sreg <-> r/m,
 * PUSH/POP Sreg, LDS/LES/LSS/LFS/LGS. Descriptors come from the guest's own
 * GDT and LDT in guest memory, and the checks use the virtual CPL (SDM
 * vol. 2 instruction pages; vol. 3A §3.4.5 descriptor layout, §5.5-5.7
 * privilege checks). Loads set the descriptor's accessed bit in guest
 * memory, LTR the TSS busy bit, as the CPU does.
 *
 * The loaded segments are bookkeeping: the guest's real segments stay the
 * host's flat ones, and bases and limits are not enforced (DESIGN.md),
 * except that in 64-bit mode a selector loaded into FS or GS sets the real
 * FS/GS base from the descriptor, which is what the guest's FS/GS-relative
 * accesses then use. A null selector loaded there clears the base, as Intel
 * CPUs do (AMD keeps it). */
#include "internal/emu.h"

/* ---- reading descriptors ------------------------------------------------------ */

pk_desc_lookup pk_desc_read(pk_emu *e, uint16_t sel, bool wide, pk_desc *d)
{
    const pk_segment *ldtr = &e->vcpu.seg[PK_LDTR];
    uint64_t base = e->vcpu.gdtr.base;
    uint32_t limit = e->vcpu.gdtr.limit, off = sel & 0xFFF8;
    unsigned size = wide && e->vcpu.bits == 64 ? 16 : 8;
    uint32_t dw[4] = { 0 };

    if (sel & 4) { /* TI: the LDT, which must be loaded */
        if (!(ldtr->selector & 0xFFFC) || !(ldtr->attributes & PK_ATTR_P))
            return PK_DESC_MISSING;
        base = ldtr->base;
        limit = ldtr->limit;
    }
    if ((uint64_t)off + size - 1 > limit)
        return PK_DESC_MISSING;
    d->addr = base + off;
    if (pk_emu_read(e, d->addr, dw, size, PK_ACC_SYS) != PK_EMU_DONE)
        return PK_DESC_FAULT;
    d->lo = dw[0];
    d->hi = dw[1];
    d->base = (dw[0] >> 16) | ((dw[1] & 0xFF) << 16) | (dw[1] & 0xFF000000u);
    d->base |= (uint64_t)dw[2] << 32;
    d->limit = (dw[0] & 0xFFFF) | (dw[1] & 0xF0000);
    if (dw[1] & (1u << 23)) /* G: 4 KiB units */
        d->limit = (d->limit << 12) | 0xFFF;
    return PK_DESC_OK;
}

pk_emu_status pk_desc_set_accessed(pk_emu *e, pk_desc *d)
{
    if (d->hi & (1u << 8))
        return PK_EMU_DONE;
    d->hi |= 1u << 8;
    uint8_t type_byte = (uint8_t)(d->hi >> 8);
    return pk_emu_write(e, d->addr + 5, &type_byte, 1, PK_ACC_SYS);
}

void pk_seg_set(pk_segment *s, uint16_t sel, const pk_desc *d)
{
    s->selector = sel;
    s->base = d->base;
    s->limit = d->limit;
    s->attributes = pk_desc_attributes(d);
}

static void seg_set_null(pk_emu *e, unsigned sreg, uint16_t sel)
{
    pk_segment *s = &e->vcpu.seg[sreg];
    *s = (pk_segment){ .selector = sel }; /* attributes 0: unusable */
    if (e->vcpu.bits == 64 && sreg == PK_FS)
        e->regs.fs_base = 0;
    if (e->vcpu.bits == 64 && sreg == PK_GS)
        e->regs.gs_base = 0;
}

/* Turns a lookup into "go on" or the fault: a selector outside its table
 * raises the fault the caller names (#GP(sel) for loads, #TS for a TSS). */
static pk_emu_status lookup(pk_emu *e, uint16_t sel, bool wide, pk_desc *d,
                            uint8_t vector, uint32_t ext)
{
    switch (pk_desc_read(e, sel, wide, d)) {
    case PK_DESC_OK:
        return PK_EMU_DONE;
    case PK_DESC_MISSING:
        return pk_emu_fault(e, vector, true, (sel & 0xFFFC) | ext);
    case PK_DESC_FAULT:
        break;
    }
    return PK_EMU_FAULT;
}

/* ---- segment loads -------------------------------------------------------------- */

/* SDM vol. 2, MOV (protected-mode segment loads). */
pk_emu_status pk_seg_load(pk_emu *e, unsigned sreg, uint16_t sel)
{
    unsigned cpl = e->vcpu.cpl, rpl = sel & 3;
    uint32_t ec = sel & 0xFFFC;
    pk_desc d = { 0 };

    if (sreg == PK_CS || sreg >= PK_SREG_COUNT)
        return pk_emu_ud(e);
    if (!ec) {
        /* SS may be null only in 64-bit mode, below CPL 3, with RPL = CPL */
        if (sreg == PK_SS && !(e->vcpu.bits == 64 && cpl != 3 && rpl == cpl))
            return pk_emu_gp(e, 0);
        seg_set_null(e, sreg, sel);
        return PK_EMU_DONE;
    }
    PK_EMU_TRY(lookup(e, sel, false, &d, PK_VEC_GP, 0));
    if (sreg == PK_SS) {
        if (rpl != cpl || !pk_desc_s(&d) || pk_desc_code(&d) || !pk_desc_rw(&d) ||
            pk_desc_dpl(&d) != cpl)
            return pk_emu_gp(e, ec);
        if (!pk_desc_present(&d))
            return pk_emu_fault(e, PK_VEC_SS, true, ec);
    } else {
        if (!pk_desc_s(&d) || (pk_desc_code(&d) && !pk_desc_rw(&d)))
            return pk_emu_gp(e, ec); /* system, or execute-only code */
        if (!pk_desc_conforming(&d) && (rpl > pk_desc_dpl(&d) || cpl > pk_desc_dpl(&d)))
            return pk_emu_gp(e, ec);
        if (!pk_desc_present(&d))
            return pk_emu_fault(e, PK_VEC_NP, true, ec);
    }
    PK_EMU_TRY(pk_desc_set_accessed(e, &d));
    pk_seg_set(&e->vcpu.seg[sreg], sel, &d);
    if (e->vcpu.bits == 64 && sreg == PK_FS)
        e->regs.fs_base = (uint32_t)d.base;
    if (e->vcpu.bits == 64 && sreg == PK_GS)
        e->regs.gs_base = (uint32_t)d.base;
    return PK_EMU_DONE;
}

/* SDM vol. 2, RET and IRET: "RETURN-TO-OUTER-PRIVILEGE-LEVEL". */
void pk_seg_null_inaccessible(pk_emu *e)
{
    static const unsigned data[] = { PK_ES, PK_DS, PK_FS, PK_GS };
    for (unsigned i = 0; i < 4; i++) {
        pk_segment *s = &e->vcpu.seg[data[i]];
        bool conforming_code = (s->attributes & 0x1C) == 0x1C;
        unsigned dpl = (s->attributes >> PK_ATTR_DPL_SHIFT) & 3;
        if (!conforming_code && dpl < e->vcpu.cpl)
            *s = (pk_segment){ 0 }; /* the real FS/GS bases stay: bookkeeping only */
    }
}

pk_emu_status pk_code_seg_check(pk_emu *e, uint16_t sel, bool for_return, pk_desc *d)
{
    unsigned cpl = e->vcpu.cpl, rpl = sel & 3;
    uint32_t ec = sel & 0xFFFC;

    if (!ec)
        return pk_emu_gp(e, 0);
    PK_EMU_TRY(lookup(e, sel, false, d, PK_VEC_GP, 0));
    if (!pk_desc_s(d)) {
        unsigned t = pk_desc_type(d);
        if (!for_return && (t == 4 || t == 0xC))
            return pk_emu_unsupported(e, "far transfer through a call gate");
        if (!for_return && (t == 5 || t == 1 || t == 9))
            return pk_emu_unsupported(e, "task switch");
        return pk_emu_gp(e, ec);
    }
    if (!pk_desc_code(d))
        return pk_emu_gp(e, ec);
    unsigned dpl = pk_desc_dpl(d);
    if (for_return) {
        if (rpl < cpl || (pk_desc_conforming(d) ? dpl > rpl : dpl != rpl))
            return pk_emu_gp(e, ec);
    } else if (pk_desc_conforming(d) ? dpl > cpl : (rpl > cpl || dpl != cpl)) {
        return pk_emu_gp(e, ec);
    }
    if (!pk_desc_present(d))
        return pk_emu_fault(e, PK_VEC_NP, true, ec);
    /* The guest's real code runs in the mode it was started in. */
    if (e->vcpu.bits == 64 && (!pk_desc_long(d) || pk_desc_big(d)))
        return pk_emu_unsupported(e, "far transfer to compatibility mode");
    if (e->vcpu.bits == 32 && !pk_desc_big(d))
        return pk_emu_unsupported(e, "far transfer to 16-bit code");
    return PK_EMU_DONE;
}

pk_emu_status pk_stack_seg_check(pk_emu *e, uint16_t sel, unsigned new_cpl, pk_desc *d,
                                 bool *null_ok)
{
    uint32_t ec = sel & 0xFFFC;
    *null_ok = false;
    if (!ec) {
        if (e->vcpu.bits == 64 && new_cpl != 3 && (sel & 3) == new_cpl) {
            *null_ok = true;
            return PK_EMU_DONE;
        }
        return pk_emu_gp(e, 0);
    }
    if ((sel & 3) != new_cpl)
        return pk_emu_gp(e, ec);
    PK_EMU_TRY(lookup(e, sel, false, d, PK_VEC_GP, 0));
    if (!pk_desc_s(d) || pk_desc_code(d) || !pk_desc_rw(d) || pk_desc_dpl(d) != new_cpl)
        return pk_emu_gp(e, ec);
    if (!pk_desc_present(d))
        return pk_emu_fault(e, PK_VEC_SS, true, ec);
    return PK_EMU_DONE;
}

pk_desc_lookup pk_tss_read(pk_emu *e, uint32_t off, void *buf, size_t len)
{
    const pk_segment *tr = &e->vcpu.seg[PK_TR];
    if (!(tr->attributes & PK_ATTR_P) || (uint64_t)off + len - 1 > tr->limit)
        return PK_DESC_MISSING;
    if (pk_emu_read(e, tr->base + off, buf, len, PK_ACC_SYS) != PK_EMU_DONE)
        return PK_DESC_FAULT;
    return PK_DESC_OK;
}

/* ---- LAR, LSL, VERR, VERW --------------------------------------------------------- */

/* The checks the four share (SDM vol. 2, LAR): the selector is not null,
 * lies inside its table, and unless it names conforming code, DPL >= CPL
 * and DPL >= RPL. *ok false means ZF=0, no fault. */
static pk_emu_status probe(pk_emu *e, uint16_t sel, pk_desc *d, bool *ok)
{
    *ok = false;
    if (!(sel & 0xFFFC))
        return PK_EMU_DONE;
    switch (pk_desc_read(e, sel, false, d)) {
    case PK_DESC_OK:
        break;
    case PK_DESC_MISSING:
        return PK_EMU_DONE;
    case PK_DESC_FAULT:
        return PK_EMU_FAULT;
    }
    unsigned dpl = pk_desc_dpl(d);
    *ok = pk_desc_conforming(d) || (dpl >= e->vcpu.cpl && dpl >= (sel & 3u));
    return PK_EMU_DONE;
}

/* System types LAR and LSL accept (REFERENCE §5.5, §5.6; SDM tables in the
 * LAR and LSL pages). IA-32e lists for LAR 9, B, C only (the LDT is not
 * valid there in the table REFERENCE opened), for LSL 2, 9, B. */
static bool system_type_ok(const pk_emu *e, unsigned type, bool lsl)
{
    static const uint16_t lar32 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 |
                                  1 << 9 | 1 << 0xB | 1 << 0xC;
    static const uint16_t lar64 = 1 << 9 | 1 << 0xB | 1 << 0xC;
    static const uint16_t lsl32 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 9 | 1 << 0xB;
    static const uint16_t lsl64 = 1 << 2 | 1 << 9 | 1 << 0xB;
    uint16_t set = e->vcpu.bits == 64 ? (lsl ? lsl64 : lar64) : (lsl ? lsl32 : lar32);
    return set & (1u << type);
}

static void set_zf(pk_emu *e, bool zf)
{
    if (zf)
        e->regs.rflags |= PK_FLAG_ZF;
    else
        e->regs.rflags &= ~(uint64_t)PK_FLAG_ZF;
}

/* LAR r, r/m16 and LSL r, r/m16: the destination changes only when ZF=1. */
static pk_emu_status lar_lsl(pk_emu *e, bool lsl)
{
    uint64_t sel;
    pk_desc d = { 0 };
    bool ok;
    PK_EMU_TRY(pk_emu_op_read(e, &e->ops[1], &sel));
    PK_EMU_TRY(probe(e, (uint16_t)sel, &d, &ok));
    ok = ok && (pk_desc_s(&d) || system_type_ok(e, pk_desc_type(&d), lsl));
    set_zf(e, ok);
    if (!ok)
        return pk_emu_effect(e, "%s 0x%x: ZF=0", lsl ? "lsl" : "lar", (unsigned)(uint16_t)sel);
    /* LAR: bits 19:16 are undefined (SDM); popek returns them as 0, as
     * QEMU does, so 32/64-bit results are hi & 0x00F0FF00. A 16-bit
     * destination gets hi & 0xFF00; a 16-bit LSL the low half of the
     * byte-granular limit. */
    uint64_t v = lsl ? d.limit : d.hi & (e->insn->operand_width == 16 ? 0xFF00u : 0x00F0FF00u);
    pk_emu_reg_set(e, e->ops[0].reg.value, v);
    return pk_emu_effect(e, "%s 0x%x: ZF=1, 0x%llx", lsl ? "lsl" : "lar",
                         (unsigned)(uint16_t)sel, (unsigned long long)v);
}

/* VERR/VERW r/m16 (SDM vol. 2): readable segment / writable data segment. */
static pk_emu_status verr_verw(pk_emu *e, bool write)
{
    uint64_t sel;
    pk_desc d = { 0 };
    bool ok;
    PK_EMU_TRY(pk_emu_op_read(e, &e->ops[0], &sel));
    PK_EMU_TRY(probe(e, (uint16_t)sel, &d, &ok));
    ok = ok && pk_desc_s(&d) &&
         (write ? !pk_desc_code(&d) && pk_desc_rw(&d) : !pk_desc_code(&d) || pk_desc_rw(&d));
    set_zf(e, ok);
    return pk_emu_effect(e, "%s 0x%x: ZF=%d", write ? "verw" : "verr",
                         (unsigned)(uint16_t)sel, ok);
}

/* ---- LLDT, LTR, SLDT, STR ------------------------------------------------------------ */

/* SLDT/STR r/m16: memory 16 bits; a register gets the selector
 * zero-extended to its size (REFERENCE §5.8), through pk_emu_reg_set. */
static pk_emu_status store_selector(pk_emu *e, unsigned which)
{
    if ((e->vcpu.cr4 & PK_CR4_UMIP) && e->vcpu.cpl > 0)
        return pk_emu_gp(e, 0);
    uint16_t sel = e->vcpu.seg[which].selector;
    PK_EMU_TRY(pk_emu_op_write(e, &e->ops[0], sel));
    return pk_emu_effect(e, "%s -> 0x%x", which == PK_TR ? "TR" : "LDTR", sel);
}

static pk_emu_status system_desc(pk_emu *e, uint16_t sel, pk_desc *d)
{
    uint32_t ec = sel & 0xFFFC;
    if (sel & 4) /* must be in the GDT */
        return pk_emu_gp(e, ec);
    PK_EMU_TRY(lookup(e, sel, true, d, PK_VEC_GP, 0));
    if (e->vcpu.bits == 64 && !pk_emu_canonical(d->base))
        return pk_emu_gp(e, ec);
    return PK_EMU_DONE;
}

/* LLDT r/m16 (SDM vol. 2): a null selector leaves LDTR unusable. */
static pk_emu_status lldt(pk_emu *e)
{
    uint64_t v;
    pk_desc d = { 0 };
    if (e->vcpu.cpl)
        return pk_emu_gp(e, 0);
    PK_EMU_TRY(pk_emu_op_read(e, &e->ops[0], &v));
    uint16_t sel = (uint16_t)v;
    if (!(sel & 0xFFFC)) {
        e->vcpu.seg[PK_LDTR] = (pk_segment){ .selector = sel };
        return pk_emu_effect(e, "LDTR <- null");
    }
    PK_EMU_TRY(system_desc(e, sel, &d));
    if (pk_desc_s(&d) || pk_desc_type(&d) != 2)
        return pk_emu_gp(e, sel & 0xFFFC);
    if (!pk_desc_present(&d))
        return pk_emu_fault(e, PK_VEC_NP, true, sel & 0xFFFC);
    pk_seg_set(&e->vcpu.seg[PK_LDTR], sel, &d);
    return pk_emu_effect(e, "LDTR <- 0x%x (base 0x%llx limit 0x%x)", sel,
                         (unsigned long long)d.base, d.limit);
}

/* LTR r/m16 (SDM vol. 2): an available TSS (32-bit, or 16-bit outside
 * 64-bit mode), marked busy in guest memory. */
static pk_emu_status ltr(pk_emu *e)
{
    uint64_t v;
    pk_desc d = { 0 };
    if (e->vcpu.cpl)
        return pk_emu_gp(e, 0);
    PK_EMU_TRY(pk_emu_op_read(e, &e->ops[0], &v));
    uint16_t sel = (uint16_t)v;
    if (!(sel & 0xFFFC))
        return pk_emu_gp(e, 0);
    PK_EMU_TRY(system_desc(e, sel, &d));
    unsigned t = pk_desc_type(&d);
    if (pk_desc_s(&d) || !(t == 9 || (t == 1 && e->vcpu.bits == 32)))
        return pk_emu_gp(e, sel & 0xFFFC);
    if (!pk_desc_present(&d))
        return pk_emu_fault(e, PK_VEC_NP, true, sel & 0xFFFC);
    d.hi |= 2u << 8; /* busy */
    uint8_t type_byte = (uint8_t)(d.hi >> 8);
    PK_EMU_TRY(pk_emu_write(e, d.addr + 5, &type_byte, 1, PK_ACC_SYS));
    pk_seg_set(&e->vcpu.seg[PK_TR], sel, &d);
    return pk_emu_effect(e, "TR <- 0x%x (base 0x%llx limit 0x%x)", sel,
                         (unsigned long long)d.base, d.limit);
}

/* ---- segment registers ------------------------------------------------------------------ */

static unsigned sreg_of(ZydisRegister r)
{
    return (unsigned)(r - ZYDIS_REGISTER_ES);
}

static const char *const sreg_names[PK_SREG_COUNT] = { "ES", "CS", "SS", "DS", "FS", "GS" };

static pk_emu_status load_effect(pk_emu *e, unsigned sreg, uint16_t sel)
{
    if (sreg == PK_SS) /* MOV SS and POP SS hold interrupts for one instruction */
        e->vcpu.interrupt_shadow = true;
    return pk_emu_effect(e, "%s <- 0x%x", sreg_names[sreg], sel);
}

static pk_emu_status mov_to_sreg(pk_emu *e)
{
    uint64_t v;
    unsigned sreg = sreg_of(e->ops[0].reg.value);
    PK_EMU_TRY(pk_emu_op_read(e, &e->ops[1], &v));
    PK_EMU_TRY(pk_seg_load(e, sreg, (uint16_t)v));
    return load_effect(e, sreg, (uint16_t)v);
}

/* MOV r/m, Sreg: memory 16 bits; a register zero-extended (REFERENCE §5.2). */
static pk_emu_status mov_from_sreg(pk_emu *e)
{
    unsigned sreg = sreg_of(e->ops[1].reg.value);
    uint16_t sel = e->vcpu.seg[sreg].selector;
    PK_EMU_TRY(pk_emu_op_write(e, &e->ops[0], sel));
    return pk_emu_effect(e, "%s -> 0x%x", sreg_names[sreg], sel);
}

/* The segment register PUSH/POP Sreg names (its first visible operand). */
static unsigned pushpop_sreg(const pk_emu *e)
{
    for (unsigned i = 0; i < e->insn->operand_count; i++)
        if (e->ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER &&
            ZydisRegisterGetClass(e->ops[i].reg.value) == ZYDIS_REGCLASS_SEGMENT)
            return sreg_of(e->ops[i].reg.value);
    return PK_SREG_COUNT;
}

/* PUSH Sreg: a 16-bit store into a slot of the operand size, the upper
 * bytes left as they were (recent Intel cores, REFERENCE RI-12; the same in
 * 64-bit mode with an 8-byte slot). */
static pk_emu_status push_sreg(pk_emu *e)
{
    unsigned sreg = pushpop_sreg(e);
    if (sreg >= PK_SREG_COUNT)
        return pk_emu_unsupported(e, "push of an unknown segment register");
    uint16_t sel = e->vcpu.seg[sreg].selector;
    PK_EMU_TRY(pk_emu_push(e, sel, e->insn->operand_width / 8, 2));
    return pk_emu_effect(e, "push %s 0x%x", sreg_names[sreg], sel);
}

/* POP Sreg: the load's checks come first; rSP moves only when it passes. */
static pk_emu_status pop_sreg(pk_emu *e)
{
    unsigned sreg = pushpop_sreg(e);
    uint64_t v;
    if (sreg >= PK_SREG_COUNT)
        return pk_emu_unsupported(e, "pop of an unknown segment register");
    PK_EMU_TRY(pk_emu_pop(e, e->insn->operand_width / 8, &v));
    PK_EMU_TRY(pk_seg_load(e, sreg, (uint16_t)v));
    return load_effect(e, sreg, (uint16_t)v);
}

/* LDS/LES/LSS/LFS/LGS r, m16:16/32/64: the offset comes first in memory,
 * the selector after it. LSS does not hold interrupts (it loads SS:rSP at
 * once). */
static pk_emu_status load_far_pointer(pk_emu *e)
{
    unsigned sreg;
    switch (e->insn->mnemonic) {
    case ZYDIS_MNEMONIC_LDS: sreg = PK_DS; break;
    case ZYDIS_MNEMONIC_LES: sreg = PK_ES; break;
    case ZYDIS_MNEMONIC_LSS: sreg = PK_SS; break;
    case ZYDIS_MNEMONIC_LFS: sreg = PK_FS; break;
    case ZYDIS_MNEMONIC_LGS: sreg = PK_GS; break;
    default: return pk_emu_unsupported(e, "unknown far-pointer load");
    }
    unsigned size = e->insn->operand_width / 8;
    uint64_t addr, off = 0;
    uint16_t sel;
    PK_EMU_TRY(pk_emu_op_addr(e, &e->ops[1], &addr));
    PK_EMU_TRY(pk_emu_read(e, addr, &off, size, 0));
    PK_EMU_TRY(pk_emu_read(e, addr + size, &sel, 2, 0));
    PK_EMU_TRY(pk_seg_load(e, sreg, sel));
    pk_emu_reg_set(e, e->ops[0].reg.value, off);
    return pk_emu_effect(e, "%s <- 0x%x, offset 0x%llx", sreg_names[sreg], sel,
                         (unsigned long long)off);
}

pk_emu_status pk_emu_descriptor_insn(pk_emu *e, pk_class_id row)
{
    switch (row) {
    case PK_CLASS_LAR: return lar_lsl(e, false);
    case PK_CLASS_LSL: return lar_lsl(e, true);
    case PK_CLASS_VERR: return verr_verw(e, false);
    case PK_CLASS_VERW: return verr_verw(e, true);
    case PK_CLASS_SLDT: return store_selector(e, PK_LDTR);
    case PK_CLASS_STR: return store_selector(e, PK_TR);
    case PK_CLASS_LLDT: return lldt(e);
    case PK_CLASS_LTR: return ltr(e);
    case PK_CLASS_MOV_TO_SREG: return mov_to_sreg(e);
    case PK_CLASS_MOV_FROM_SREG: return mov_from_sreg(e);
    case PK_CLASS_PUSH_SREG: return push_sreg(e);
    case PK_CLASS_POP_SREG: return pop_sreg(e);
    case PK_CLASS_LDS_LES:
    case PK_CLASS_LSS_LFS_LGS: return load_far_pointer(e);
    default: return pk_emu_unsupported(e, "not a descriptor instruction");
    }
}
