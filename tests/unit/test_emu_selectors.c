/* popek — emulation tests: LAR, LSL, VERR, VERW against the guest's GDT,
 * LLDT/LTR/SLDT/STR, and segment-register loads and stores. Descriptor
 * fields are those of emu_fixture.h's table; results are worked by hand
 * from the SDM pages (LAR, LSL, VERR, MOV, POP, PUSH, LDS, LTR) and
 * REFERENCE §5.2, §5.5-5.8. */
#include "emu_fixture.h"

#define ZF(r) (!!((r).rflags & PK_FLAG_ZF))

/* ---- LAR ------------------------------------------------------------------ */

Test(emu_lar, ring3_code_from_cpl3, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RCX] = SEL_CODE3 | 3;
    pk_emu_result r = EMU(0x0F, 0x02, 0xC1); /* lar eax, ecx */
    expect_done(r);
    cr_assert(ZF(R));
    /* hi dword 0x00CFFA00 & 0x00F0FF00: bits 19:16 (limit) read as 0 */
    cr_assert_eq(R.gpr[PK_RAX], 0x00C0FA00);
}

Test(emu_lar, kernel_code_from_cpl3_fails, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = 0xDEADBEEF;
    R.rflags |= PK_FLAG_ZF;
    R.gpr[PK_RCX] = SEL_CODE0;
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));                     /* DPL 0 < CPL 3 */
    cr_assert_eq(R.gpr[PK_RAX], 0xDEADBEEF);  /* unchanged */
    cr_assert_eq(R.rip, CODE + 3);
}

Test(emu_lar, kernel_code_from_cpl0, .init = setup32)
{
    R.gpr[PK_RCX] = SEL_CODE0;
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert(ZF(R));
    cr_assert_eq(R.gpr[PK_RAX], 0x00C09A00);
}

Test(emu_lar, o16_masks_ff00, .init = setup32)
{
    R.gpr[PK_RAX] = 0x12345678;
    R.gpr[PK_RCX] = SEL_DATA0;
    expect_done(EMU(0x66, 0x0F, 0x02, 0xC1)); /* lar ax, cx */
    cr_assert_eq(R.gpr[PK_RAX], 0x12349200);   /* 0x00CF9200 & 0xFF00 */
}

Test(emu_lar, rex_w_zero_extends, .init = setup64)
{
    R.gpr[PK_RAX] = ~0ull;
    R.gpr[PK_RCX] = SEL_DATA0;
    expect_done(EMU(0x48, 0x0F, 0x02, 0xC1));
    cr_assert_eq(R.gpr[PK_RAX], 0x00C09200);
}

Test(emu_lar, rpl_above_dpl_fails, .init = setup32)
{
    R.gpr[PK_RCX] = SEL_DATA0 | 3;
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));
}

Test(emu_lar, conforming_code_skips_privilege, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RCX] = SEL_CONF0 | 3;
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert(ZF(R));
    cr_assert_eq(R.gpr[PK_RAX], 0x00C09E00);
}

Test(emu_lar, null_and_beyond_limit_fail, .init = setup32)
{
    R.rflags |= PK_FLAG_ZF;
    R.gpr[PK_RCX] = 0;
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));
    R.rflags |= PK_FLAG_ZF;
    R.gpr[PK_RCX] = GDT_LIMIT + 1; /* index 16: past the limit */
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));
    R.rflags |= PK_FLAG_ZF;
    R.gpr[PK_RCX] = 0x0C; /* TI=1 with no LDT loaded */
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));
}

Test(emu_lar, system_types, .init = setup32)
{
    R.gpr[PK_RCX] = SEL_TSS; /* 32-bit TSS: valid for LAR */
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert(ZF(R));
    cr_assert_eq(R.gpr[PK_RAX], 0x00008900);
    enter_ring3();
    R.gpr[PK_RCX] = SEL_CALLGATE | 3; /* call gate, DPL 3 */
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert(ZF(R));
    cr_assert_eq(R.gpr[PK_RAX], 0x0000EC00);
    gdt_set(0x68, 0x00008E0000080000ull); /* an interrupt gate: never valid */
    R.gpr[PK_RCX] = 0x68;
    V.cpl = 0;
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));
}

Test(emu_lar, ldt_not_valid_in_64bit, .init = setup64)
{
    R.gpr[PK_RCX] = SEL_LDTD; /* REFERENCE §5.5: IA-32e lists 9, B, C */
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert_not(ZF(R));
}

Test(emu_lar, memory_source, .init = setup32)
{
    wr(DATA, SEL_DATA0, 2);
    R.gpr[PK_RBX] = DATA;
    expect_done(EMU(0x0F, 0x02, 0x03)); /* lar eax, word [ebx] */
    cr_assert_eq(R.gpr[PK_RAX], 0x00C09200);
}

Test(emu_lar, gdt_outside_memory_is_supervisor_pf, .init = setup32)
{
    enter_ring3();
    V.gdtr.base = OUTSIDE;
    R.gpr[PK_RCX] = SEL_CODE3 | 3;
    pk_emu_result r = EMU(0x0F, 0x02, 0xC1);
    expect_fault(r, PK_VEC_PF, 0); /* an implicit supervisor read */
    cr_assert_eq(r.fault.address, OUTSIDE + 0x18);
}

/* ---- LSL ----------------------------------------------------------------------------- */

Test(emu_lsl, byte_and_page_granular, .init = setup32)
{
    R.gpr[PK_RCX] = SEL_BYTES; /* G=0, limit 0x01234 */
    expect_done(EMU(0x0F, 0x03, 0xC1));
    cr_assert(ZF(R));
    cr_assert_eq(R.gpr[PK_RAX], 0x1234);
    R.gpr[PK_RCX] = SEL_DATA0; /* G=1, limit 0xFFFFF: (0xFFFFF << 12) | 0xFFF */
    expect_done(EMU(0x0F, 0x03, 0xC1));
    cr_assert_eq(R.gpr[PK_RAX], 0xFFFFFFFF);
}

Test(emu_lsl, o16_drops_upper_half, .init = setup32)
{
    R.gpr[PK_RAX] = 0xAAAA0000;
    R.gpr[PK_RCX] = SEL_DATA0;
    expect_done(EMU(0x66, 0x0F, 0x03, 0xC1));
    cr_assert_eq(R.gpr[PK_RAX], 0xAAAAFFFF);
}

Test(emu_lsl, gates_fail, .init = setup32)
{
    enter_ring3();
    R.rflags |= PK_FLAG_ZF;
    R.gpr[PK_RCX] = SEL_CALLGATE | 3;
    expect_done(EMU(0x0F, 0x03, 0xC1));
    cr_assert_not(ZF(R));
}

/* ---- VERR, VERW ----------------------------------------------------------------------- */

static bool verr(uint16_t sel)
{
    R.gpr[PK_RCX] = sel;
    expect_done(EMU(0x0F, 0x00, 0xE1)); /* verr cx */
    return ZF(R);
}

static bool verw(uint16_t sel)
{
    R.gpr[PK_RCX] = sel;
    expect_done(EMU(0x0F, 0x00, 0xE9)); /* verw cx */
    return ZF(R);
}

Test(emu_verr, readable_segments, .init = setup32)
{
    cr_assert(verr(SEL_CODE0));     /* readable code */
    cr_assert_not(verr(SEL_XONLY)); /* execute-only */
    cr_assert(verr(SEL_DATA0));
    cr_assert_not(verr(SEL_TSS));   /* system descriptor */
    cr_assert_not(verr(0));
    enter_ring3();
    cr_assert_not(verr(SEL_DATA0 | 3)); /* DPL 0 < CPL 3 */
    cr_assert(verr(SEL_CONF0 | 3));     /* conforming: no privilege check */
    cr_assert(verr(SEL_RO3 | 3));
}

Test(emu_verw, writable_data_only, .init = setup32)
{
    cr_assert(verw(SEL_DATA0));
    cr_assert_not(verw(SEL_CODE0));
    cr_assert_not(verw(SEL_RO3));
    enter_ring3();
    cr_assert(verw(SEL_DATA3 | 3));
    cr_assert_not(verw(SEL_DATA0));
}

Test(emu_verr, memory_outside_is_pf, .init = setup32)
{
    R.gpr[PK_RAX] = OUTSIDE;
    expect_fault(EMU(0x0F, 0x00, 0x20), PK_VEC_PF, 0); /* verr [eax] */
}

/* ---- SLDT, STR, LLDT, LTR ---------------------------------------------------------------- */

Test(emu_sldt, register_zero_extends_memory_is_16, .init = setup32)
{
    V.seg[PK_LDTR].selector = SEL_LDTD;
    R.gpr[PK_RAX] = 0xFFFFFFFF;
    expect_done(EMU(0x0F, 0x00, 0xC0)); /* sldt eax */
    cr_assert_eq(R.gpr[PK_RAX], SEL_LDTD);
    R.gpr[PK_RAX] = 0xFFFFFFFF;
    expect_done(EMU(0x66, 0x0F, 0x00, 0xC0)); /* sldt ax */
    cr_assert_eq(R.gpr[PK_RAX], 0xFFFF0000 | SEL_LDTD);
    wr(DATA, 0xAAAAAAAA, 4);
    R.gpr[PK_RBX] = DATA;
    expect_done(EMU(0x0F, 0x00, 0x03)); /* sldt [ebx] */
    cr_assert_eq(rd(DATA, 4), 0xAAAA0000 | SEL_LDTD);
}

Test(emu_sldt, rex_w_and_str, .init = setup64)
{
    V.seg[PK_TR].selector = SEL_TSS;
    R.gpr[PK_RAX] = ~0ull;
    expect_done(EMU(0x48, 0x0F, 0x00, 0xC8)); /* str rax */
    cr_assert_eq(R.gpr[PK_RAX], SEL_TSS);
}

Test(emu_sldt, umip_at_cpl3_is_gp, .init = setup32)
{
    enter_ring3();
    V.cr4 |= 1 << 11;
    expect_fault(EMU(0x0F, 0x00, 0xC8), PK_VEC_GP, 0);
}

Test(emu_lldt, loads_ldt_and_null, .init = setup32)
{
    R.gpr[PK_RAX] = SEL_LDTD;
    expect_done(EMU(0x0F, 0x00, 0xD0)); /* lldt ax */
    cr_assert_eq(V.seg[PK_LDTR].base, LDT);
    cr_assert_eq(V.seg[PK_LDTR].limit, 0x17);
    cr_assert_eq(V.seg[PK_LDTR].attributes, 0x82);
    R.gpr[PK_RAX] = 0;
    expect_done(EMU(0x0F, 0x00, 0xD0));
    cr_assert_eq(V.seg[PK_LDTR].selector, 0);
}

Test(emu_lldt, faults, .init = setup32)
{
    R.gpr[PK_RAX] = SEL_DATA0; /* not an LDT */
    expect_fault(EMU(0x0F, 0x00, 0xD0), PK_VEC_GP, SEL_DATA0);
    R.gpr[PK_RAX] = 0x34; /* TI=1 */
    expect_fault(EMU(0x0F, 0x00, 0xD0), PK_VEC_GP, 0x34);
    gdt_set(0x30, 0x0000021040000017ull); /* the LDT, not present */
    R.gpr[PK_RAX] = SEL_LDTD;
    expect_fault(EMU(0x0F, 0x00, 0xD0), PK_VEC_NP, SEL_LDTD);
    enter_ring3();
    expect_fault(EMU(0x0F, 0x00, 0xD0), PK_VEC_GP, 0);
}

Test(emu_ldt, descriptors_through_the_ldt, .init = setup32)
{
    R.gpr[PK_RAX] = SEL_LDTD;
    expect_done(EMU(0x0F, 0x00, 0xD0));
    wr(LDT + 8, 0x00CFF2000000FFFFull, 8); /* LDT entry 1: data DPL 3 */
    R.gpr[PK_RCX] = 0x0F;                  /* index 1, TI=1, RPL 3 */
    expect_done(EMU(0x0F, 0x02, 0xC1));
    cr_assert(ZF(R));
    cr_assert_eq(R.gpr[PK_RAX], 0x00C0F200);
}

Test(emu_ltr, loads_tss_and_marks_busy, .init = setup32)
{
    R.gpr[PK_RAX] = SEL_TSS;
    expect_done(EMU(0x0F, 0x00, 0xD8)); /* ltr ax */
    cr_assert_eq(V.seg[PK_TR].base, TSS);
    cr_assert_eq(V.seg[PK_TR].limit, 0x2067);
    cr_assert_eq(rd(GDT + SEL_TSS + 5, 1), 0x8B); /* type 9 -> B in memory */
    /* a busy TSS cannot be loaded again */
    expect_fault(EMU(0x0F, 0x00, 0xD8), PK_VEC_GP, SEL_TSS);
}

Test(emu_ltr, faults, .init = setup32)
{
    R.gpr[PK_RAX] = 0;
    expect_fault(EMU(0x0F, 0x00, 0xD8), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = SEL_DATA0;
    expect_fault(EMU(0x0F, 0x00, 0xD8), PK_VEC_GP, SEL_DATA0);
}

Test(emu_ltr, sixteen_byte_descriptor_in_64bit, .init = setup64)
{
    /* index 16 (0x80): a 64-bit TSS at 0xFFFF88800010C000, limit 0x67:
     * lo = base[15:0] << 16 | limit = 0xC0000067, hi = 0x00008910 (base
     * 23:16 = 0x10, type 9, P), then base 63:32 in the next quadword */
    gdt_set(0x80, 0x00008910C0000067ull);
    wr(GDT + 0x88, 0xFFFF8880ull, 8);
    V.gdtr.limit = 0x8F;
    R.gpr[PK_RAX] = 0x80;
    expect_done(EMU(0x0F, 0x00, 0xD8));
    cr_assert_eq(V.seg[PK_TR].base, 0xFFFF88800010C000ull);
    cr_assert_eq(V.seg[PK_TR].limit, 0x67);
}

/* ---- MOV Sreg, POP/PUSH Sreg, LxS ---------------------------------------------------------- */

Test(emu_mov_sreg, load_sets_accessed_bit, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = SEL_DATA3 | 3;
    pk_emu_result r = EMU(0x8E, 0xD8); /* mov ds, ax */
    expect_done(r);
    cr_assert_eq(V.seg[PK_DS].selector, SEL_DATA3 | 3);
    cr_assert_eq(V.seg[PK_DS].attributes, 0xC0F3); /* type 2 -> 3: accessed */
    cr_assert_eq(rd(GDT + SEL_DATA3 + 5, 1), 0xF3);
    cr_assert_eq(V.seg[PK_DS].limit, 0xFFFFFFFF);
    cr_assert_not(V.interrupt_shadow);
}

Test(emu_mov_sreg, load_faults, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = SEL_DATA0; /* DPL 0 < CPL 3 */
    expect_fault(EMU(0x8E, 0xD8), PK_VEC_GP, SEL_DATA0);
    V.cpl = 0;
    R.gpr[PK_RAX] = SEL_NP;
    expect_fault(EMU(0x8E, 0xD8), PK_VEC_NP, SEL_NP);
    expect_fault(EMU(0x8E, 0xD0), PK_VEC_SS, SEL_NP); /* mov ss */
    R.gpr[PK_RAX] = SEL_XONLY;
    expect_fault(EMU(0x8E, 0xD8), PK_VEC_GP, SEL_XONLY);
    R.gpr[PK_RAX] = 0x88 | 3; /* beyond the limit: error code drops RPL */
    expect_fault(EMU(0x8E, 0xD8), PK_VEC_GP, 0x88);
    R.gpr[PK_RAX] = SEL_TSS;
    expect_fault(EMU(0x8E, 0xD8), PK_VEC_GP, SEL_TSS);
    cr_assert_eq(V.seg[PK_DS].selector, 0x10);
}

Test(emu_mov_sreg, null_and_code, .init = setup32)
{
    R.gpr[PK_RAX] = 0;
    expect_done(EMU(0x8E, 0xC0)); /* mov es, ax: null is allowed */
    cr_assert_eq(V.seg[PK_ES].selector, 0);
    cr_assert_eq(V.seg[PK_ES].attributes, 0);
    expect_fault(EMU(0x8E, 0xD0), PK_VEC_GP, 0); /* mov ss, null */
    R.gpr[PK_RAX] = SEL_CODE0; /* readable code may go in DS */
    expect_done(EMU(0x8E, 0xD8));
}

Test(emu_mov_sreg, ss_rules_and_shadow, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = SEL_RO3 | 3; /* read-only */
    expect_fault(EMU(0x8E, 0xD0), PK_VEC_GP, SEL_RO3);
    R.gpr[PK_RAX] = SEL_DATA3; /* RPL 0 != CPL 3 */
    expect_fault(EMU(0x8E, 0xD0), PK_VEC_GP, SEL_DATA3);
    R.gpr[PK_RAX] = SEL_DATA3 | 3;
    expect_done(EMU(0x8E, 0xD0));
    cr_assert(V.interrupt_shadow);
}

Test(emu_mov_sreg, fs_sets_real_base_in_64bit, .init = setup64)
{
    R.gpr[PK_RAX] = SEL_BYTES;
    expect_done(EMU(0x8E, 0xE0)); /* mov fs, ax */
    cr_assert_eq(R.fs_base, 0x12345678);
    R.gpr[PK_RAX] = 0;
    expect_done(EMU(0x8E, 0xE0));
    cr_assert_eq(R.fs_base, 0); /* Intel: a null selector clears it */
}

Test(emu_mov_sreg, store_reveals_virtual_cpl, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = 0xFFFFFFFF;
    expect_done(EMU(0x8C, 0xC8)); /* mov eax, cs: zero-extended */
    cr_assert_eq(R.gpr[PK_RAX], SEL_CODE3 | 3);
    V.cpl = 0;
    V.seg[PK_CS].selector = SEL_CODE0;
    R.gpr[PK_RAX] = 0xFFFFFFFF;
    expect_done(EMU(0x66, 0x8C, 0xC8)); /* mov ax, cs */
    cr_assert_eq(R.gpr[PK_RAX], 0xFFFF0000 | SEL_CODE0);
    wr(DATA, 0xAAAAAAAA, 4);
    R.gpr[PK_RBX] = DATA;
    expect_done(EMU(0x8C, 0x1B)); /* mov [ebx], ds: 16 bits */
    cr_assert_eq(rd(DATA, 4), 0xAAAA0010);
}

Test(emu_push_sreg, slot_sizes, .init = setup32)
{
    wr(STACK_TOP - 4, 0xAAAAAAAA, 4);
    expect_done(EMU(0x1E)); /* push ds */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 4);
    cr_assert_eq(rd(STACK_TOP - 4, 4), 0xAAAA0010); /* 16-bit store */
    expect_done(EMU(0x66, 0x0E)); /* push cs, o16 */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 6);
    cr_assert_eq(rd(STACK_TOP - 6, 2), 0x08);
}

Test(emu_push_sreg, fs_in_64bit, .init = setup64)
{
    wr(STACK_TOP - 8, ~0ull, 8);
    expect_done(EMU(0x0F, 0xA0)); /* push fs */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 8);
    cr_assert_eq(rd(STACK_TOP - 8, 8), 0xFFFFFFFFFFFF0010ull);
}

Test(emu_pop_sreg, loads_and_moves_stack, .init = setup32)
{
    enter_ring3();
    wr(STACK_TOP - 4, SEL_DATA3 | 3, 4);
    R.gpr[PK_RSP] = STACK_TOP - 4;
    expect_done(EMU(0x1F)); /* pop ds */
    cr_assert_eq(V.seg[PK_DS].selector, SEL_DATA3 | 3);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

Test(emu_pop_sreg, fault_leaves_stack, .init = setup32)
{
    enter_ring3();
    wr(STACK_TOP - 4, SEL_DATA0, 4);
    R.gpr[PK_RSP] = STACK_TOP - 4;
    expect_fault(EMU(0x07), PK_VEC_GP, SEL_DATA0); /* pop es */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 4);
}

Test(emu_pop_sreg, pop_ss_sets_shadow, .init = setup32)
{
    wr(STACK_TOP - 4, SEL_DATA0, 4);
    R.gpr[PK_RSP] = STACK_TOP - 4;
    expect_done(EMU(0x17));
    cr_assert(V.interrupt_shadow);
}

Test(emu_pop_sreg, gs_in_64bit, .init = setup64)
{
    wr(STACK_TOP - 8, SEL_DATA0, 8);
    R.gpr[PK_RSP] = STACK_TOP - 8;
    expect_done(EMU(0x0F, 0xA9)); /* pop gs */
    cr_assert_eq(V.seg[PK_GS].selector, SEL_DATA0);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

Test(emu_lxs, lss_and_les, .init = setup32)
{
    wr(DATA, 0x107000, 4); /* m16:32: offset, then selector */
    wr(DATA + 4, SEL_DATA0, 2);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x0F, 0xB2, 0x20)); /* lss esp, [eax] */
    cr_assert_eq(R.gpr[PK_RSP], 0x107000);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA0);
    cr_assert_not(V.interrupt_shadow);
    expect_done(EMU(0xC4, 0x18)); /* les ebx, [eax] */
    cr_assert_eq(R.gpr[PK_RBX], 0x107000);
    wr(DATA + 4, SEL_NP, 2);
    expect_fault(EMU(0xC5, 0x08), PK_VEC_NP, SEL_NP); /* lds ecx, [eax] */
    cr_assert_eq(R.gpr[PK_RCX], 0);
}

Test(emu_lxs, lfs_m16_64, .init = setup64)
{
    wr(DATA, 0x1122334455667788ull, 8);
    wr(DATA + 8, SEL_DATA0, 2);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x48, 0x0F, 0xB4, 0x18)); /* lfs rbx, [rax] */
    cr_assert_eq(R.gpr[PK_RBX], 0x1122334455667788ull);
    cr_assert_eq(V.seg[PK_FS].selector, SEL_DATA0);
}
