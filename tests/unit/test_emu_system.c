/* popek — emulation tests: GDTR/IDTR, CR0 through SMSW/LMSW/CLTS, MOV CR
 * and DR, MSRs, and the privileged no-ops. Expected values are worked by
 * hand from the SDM vol. 2 pages (SGDT, LGDT, SMSW, LMSW, MOV CR, MOV DR,
 * RDMSR, WRMSR, XSETBV, SWAPGS, STAC) and REFERENCE §5.3-5.4. */
#include "emu_fixture.h"

/* ---- SGDT, SIDT, LGDT, LIDT ---------------------------------------------- */

Test(emu_sgdt, stores_six_bytes_in_32bit, .init = setup32)
{
    V.gdtr.base = 0x12345678;
    V.gdtr.limit = 0x3F;
    wr(DATA + 6, 0xAA, 1);
    pk_emu_result r = EMU(0x0F, 0x01, 0x05, 0x00, 0x50, 0x10, 0x00); /* sgdt [0x105000] */
    expect_done(r);
    cr_assert_eq(rd(DATA, 2), 0x3F);
    cr_assert_eq(rd(DATA + 2, 4), 0x12345678);
    cr_assert_eq(rd(DATA + 6, 1), 0xAA); /* 6 bytes, no more */
    cr_assert_eq(R.rip, CODE + 7);
}

Test(emu_sgdt, o16_still_stores_full_base, .init = setup32)
{
    /* REFERENCE §5.3: the current SDM stores all 32 base bits */
    V.gdtr.base = 0x12345678;
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x66, 0x0F, 0x01, 0x00)); /* o16 sgdt [eax] */
    cr_assert_eq(rd(DATA + 2, 4), 0x12345678);
}

Test(emu_sgdt, stores_ten_bytes_in_64bit, .init = setup64)
{
    V.gdtr.base = 0xFFFF888012345678ull;
    V.gdtr.limit = 0x7F;
    wr(DATA + 10, 0xAA, 1);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x0F, 0x01, 0x00)); /* sgdt [rax] */
    cr_assert_eq(rd(DATA, 2), 0x7F);
    cr_assert_eq(rd(DATA + 2, 8), 0xFFFF888012345678ull);
    cr_assert_eq(rd(DATA + 10, 1), 0xAA);
}

Test(emu_sgdt, sidt_with_rip_relative_operand, .init = setup64)
{
    V.idtr.base = 0x1000;
    V.idtr.limit = 0xFFF;
    /* sidt [rip + 0x10] at rip = DATA - 0x20: the operand is at
     * DATA - 0x20 + 7 (length) + 0x10 */
    R.rip = DATA - 0x20;
    expect_done(EMU(0x0F, 0x01, 0x0D, 0x10, 0x00, 0x00, 0x00));
    cr_assert_eq(rd(DATA - 0x20 + 7 + 0x10, 2), 0xFFF);
    cr_assert_eq(rd(DATA - 0x20 + 7 + 0x12, 8), 0x1000);
}

Test(emu_sgdt, outside_memory_is_pf_at_cpl3, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = OUTSIDE;
    pk_emu_result r = EMU(0x0F, 0x01, 0x00);
    expect_fault(r, PK_VEC_PF, 6); /* not present, write, user */
    cr_assert_eq(r.fault.address, OUTSIDE);
}

Test(emu_sgdt, umip_makes_it_gp_at_cpl3, .init = setup32)
{
    enter_ring3();
    V.cr4 |= 1 << 11;
    R.gpr[PK_RAX] = DATA;
    expect_fault(EMU(0x0F, 0x01, 0x00), PK_VEC_GP, 0);
}

Test(emu_lgdt, loads_32bit_base, .init = setup32)
{
    wr(DATA, 0x37, 2);
    wr(DATA + 2, 0x1000, 4);
    R.gpr[PK_RBX] = DATA;
    pk_emu_result r = EMU(0x0F, 0x01, 0x13); /* lgdt [ebx] */
    expect_done(r);
    cr_assert_eq(V.gdtr.base, 0x1000);
    cr_assert_eq(V.gdtr.limit, 0x37);
    cr_assert_str_eq(r.effect, "GDTR <- base 0x1000 limit 0x37");
}

Test(emu_lgdt, o16_keeps_24_base_bits, .init = setup32)
{
    wr(DATA, 0xFFFF, 2);
    wr(DATA + 2, 0x12345678, 4);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x66, 0x0F, 0x01, 0x10));
    cr_assert_eq(V.gdtr.base, 0x345678);
}

Test(emu_lgdt, lidt_loads_64bit_base, .init = setup64)
{
    wr(DATA, 0xFFF, 2);
    wr(DATA + 2, 0xFFFF888000001000ull, 8);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x0F, 0x01, 0x18)); /* lidt [rax] */
    cr_assert_eq(V.idtr.base, 0xFFFF888000001000ull);
    cr_assert_eq(V.idtr.limit, 0xFFF);
}

Test(emu_lgdt, non_canonical_base_is_gp, .init = setup64)
{
    wr(DATA + 2, 0x0000800000000000ull, 8);
    R.gpr[PK_RAX] = DATA;
    expect_fault(EMU(0x0F, 0x01, 0x10), PK_VEC_GP, 0);
    cr_assert_eq(V.gdtr.base, GDT);
}

Test(emu_lgdt, cpl3_is_gp, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RAX] = DATA;
    expect_fault(EMU(0x0F, 0x01, 0x10), PK_VEC_GP, 0);
}

/* ---- SMSW, LMSW, CLTS ----------------------------------------------------------- */

Test(emu_smsw, memory_is_16_bits, .init = setup64)
{
    V.cr0 = 0x80050033; /* Linux's CR0 (REFERENCE §5.4) */
    wr(DATA, ~0ull, 8);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x0F, 0x01, 0x20)); /* smsw [rax] */
    cr_assert_eq(rd(DATA, 8), 0xFFFFFFFFFFFF0033ull);
}

Test(emu_smsw, register_sizes_in_64bit, .init = setup64)
{
    V.cr0 = 0x80050033;
    R.gpr[PK_RAX] = ~0ull;
    expect_done(EMU(0x66, 0x0F, 0x01, 0xE0)); /* smsw ax: low 16 bits */
    cr_assert_eq(R.gpr[PK_RAX], 0xFFFFFFFFFFFF0033ull);
    R.gpr[PK_RAX] = ~0ull;
    expect_done(EMU(0x0F, 0x01, 0xE0)); /* smsw eax: CR0[31:0], zero-extended */
    cr_assert_eq(R.gpr[PK_RAX], 0x80050033);
    R.gpr[PK_RAX] = ~0ull;
    expect_done(EMU(0x48, 0x0F, 0x01, 0xE0)); /* smsw rax: CR0 */
    cr_assert_eq(R.gpr[PK_RAX], 0x80050033);
}

Test(emu_smsw, r32_in_32bit_gets_all_of_cr0, .init = setup32)
{
    V.cr0 = 0x80000011;
    expect_done(EMU(0x0F, 0x01, 0xE0));
    cr_assert_eq(R.gpr[PK_RAX], 0x80000011); /* popek's documented choice */
}

Test(emu_lmsw, loads_low_four_bits_not_pe_clear, .init = setup32)
{
    V.cr0 = 0x1B; /* PE MP TS ET */
    R.gpr[PK_RAX] = 0xFFF4; /* EM only; PE 0, which LMSW cannot clear */
    expect_done(EMU(0x0F, 0x01, 0xF0)); /* lmsw ax */
    cr_assert_eq(V.cr0, 0x15); /* PE kept, MP TS cleared, EM set, ET kept */
}

Test(emu_lmsw, sets_pe, .init = setup32)
{
    V.cr0 = 0x10;
    R.gpr[PK_RAX] = 1;
    expect_done(EMU(0x0F, 0x01, 0xF0));
    cr_assert_eq(V.cr0, 0x11);
}

Test(emu_clts, clears_ts, .init = setup32)
{
    V.cr0 = 0x19;
    expect_done(EMU(0x0F, 0x06));
    cr_assert_eq(V.cr0, 0x11);
    enter_ring3();
    expect_fault(EMU(0x0F, 0x06), PK_VEC_GP, 0);
}

/* ---- MOV CR ------------------------------------------------------------------------- */

Test(emu_mov_cr, read_and_write_cr0_32, .init = setup32)
{
    R.gpr[PK_RAX] = 0x80000011;
    expect_done(EMU(0x0F, 0x22, 0xC0)); /* mov cr0, eax: paging on (recorded) */
    cr_assert_eq(V.cr0, 0x80000011);
    expect_done(EMU(0x0F, 0x20, 0xC3)); /* mov ebx, cr0 */
    cr_assert_eq(R.gpr[PK_RBX], 0x80000011);
}

Test(emu_mov_cr, cr0_invalid_combinations_are_gp, .init = setup32)
{
    R.gpr[PK_RAX] = 0x80000010; /* PG without PE */
    expect_fault(EMU(0x0F, 0x22, 0xC0), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 0x20000011; /* NW without CD */
    expect_fault(EMU(0x0F, 0x22, 0xC0), PK_VEC_GP, 0);
    cr_assert_eq(V.cr0, 0x11);
}

Test(emu_mov_cr, clearing_pe_is_unsupported, .init = setup32)
{
    R.gpr[PK_RAX] = 0x10;
    expect_unsupported(EMU(0x0F, 0x22, 0xC0));
}

Test(emu_mov_cr, long_mode_rules, .init = setup64)
{
    R.gpr[PK_RAX] = 0x11; /* clearing PG in 64-bit mode */
    expect_fault(EMU(0x0F, 0x22, 0xC0), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 0x180000011ull; /* bit 32 */
    expect_fault(EMU(0x0F, 0x22, 0xC0), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 0x0; /* clearing CR4.PAE in 64-bit mode */
    expect_fault(EMU(0x0F, 0x22, 0xE0), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 0x20 | 1 << 13; /* VMXE: not offered */
    expect_fault(EMU(0x0F, 0x22, 0xE0), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 0x20 | 1 << 11 | 1 << 7; /* UMIP | PGE | PAE */
    expect_done(EMU(0x0F, 0x22, 0xE0));
    cr_assert_eq(V.cr4, 0x8A0);
}

Test(emu_mov_cr, cr2_cr3_cr8, .init = setup64)
{
    R.gpr[PK_RAX] = 0xFFFF888000123456ull;
    expect_done(EMU(0x0F, 0x22, 0xD0)); /* mov cr2, rax */
    cr_assert_eq(V.cr2, 0xFFFF888000123456ull);
    R.gpr[PK_RAX] = 0x1000;
    expect_done(EMU(0x0F, 0x22, 0xD8)); /* mov cr3, rax */
    cr_assert_eq(V.cr3, 0x1000);
    R.gpr[PK_RAX] = 1ull << 52;
    expect_fault(EMU(0x0F, 0x22, 0xD8), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 0xF;
    expect_done(EMU(0x44, 0x0F, 0x22, 0xC0)); /* mov cr8, rax */
    cr_assert_eq(V.cr8, 0xF);
    R.gpr[PK_RAX] = 0x10; /* TPR is 4 bits */
    expect_fault(EMU(0x44, 0x0F, 0x22, 0xC0), PK_VEC_GP, 0);
    expect_done(EMU(0x44, 0x0F, 0x20, 0xC1)); /* mov rcx, cr8 */
    cr_assert_eq(R.gpr[PK_RCX], 0xF);
}

Test(emu_mov_cr, cpl3_is_gp, .init = setup32)
{
    enter_ring3();
    expect_fault(EMU(0x0F, 0x20, 0xC0), PK_VEC_GP, 0);
}

/* ---- MOV DR ----------------------------------------------------------------------------- */

Test(emu_mov_dr, dr0_round_trip, .init = setup32)
{
    R.gpr[PK_RAX] = 0x401000;
    expect_done(EMU(0x0F, 0x23, 0xC0)); /* mov dr0, eax */
    expect_done(EMU(0x0F, 0x21, 0xC1)); /* mov ecx, dr0 */
    cr_assert_eq(R.gpr[PK_RCX], 0x401000);
}

Test(emu_mov_dr, dr4_aliases_dr6_unless_de, .init = setup32)
{
    expect_done(EMU(0x0F, 0x21, 0xE0)); /* mov eax, dr4 */
    cr_assert_eq(R.gpr[PK_RAX], 0xFFFF0FF0); /* DR6 at reset */
    V.cr4 |= 1 << 3; /* DE */
    expect_fault(EMU(0x0F, 0x21, 0xE0), PK_VEC_UD, 0);
}

Test(emu_mov_dr, dr6_dr7_fixed_bits, .init = setup32)
{
    R.gpr[PK_RAX] = 0;
    expect_done(EMU(0x0F, 0x23, 0xF0)); /* mov dr6, eax */
    cr_assert_eq(V.dr[6], 0xFFFF0FF0);
    expect_done(EMU(0x0F, 0x23, 0xF8)); /* mov dr7, eax */
    cr_assert_eq(V.dr[7], 0x400);
}

Test(emu_mov_dr, upper_bits_of_dr7_are_gp, .init = setup64)
{
    R.gpr[PK_RAX] = 1ull << 32;
    expect_fault(EMU(0x0F, 0x23, 0xF8), PK_VEC_GP, 0);
}

/* ---- RDMSR, WRMSR ---------------------------------------------------------------------------- */

static void msr(uint32_t index, uint64_t value)
{
    R.gpr[PK_RCX] = index;
    R.gpr[PK_RAX] = (uint32_t)value;
    R.gpr[PK_RDX] = value >> 32;
}

Test(emu_msr, pat_default_and_write, .init = setup64)
{
    R.gpr[PK_RAX] = R.gpr[PK_RDX] = ~0ull;
    R.gpr[PK_RCX] = 0x277;
    expect_done(EMU(0x0F, 0x32));
    cr_assert_eq(R.gpr[PK_RAX], 0x00070406); /* upper halves cleared */
    cr_assert_eq(R.gpr[PK_RDX], 0x00070406);
    msr(0x277, 0x0606060606060606ull);
    expect_done(EMU(0x0F, 0x30));
    R.gpr[PK_RAX] = R.gpr[PK_RDX] = 0;
    expect_done(EMU(0x0F, 0x32));
    cr_assert_eq(R.gpr[PK_RAX], 0x06060606);
    msr(0x277, 0x0000000000000002ull); /* type 2 is reserved */
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
}

Test(emu_msr, unknown_msr_is_gp, .init = setup32)
{
    R.gpr[PK_RCX] = 0x12345;
    expect_fault(EMU(0x0F, 0x32), PK_VEC_GP, 0);
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
}

Test(emu_msr, defaults, .init = setup32)
{
    R.gpr[PK_RCX] = 0x1B;
    expect_done(EMU(0x0F, 0x32));
    cr_assert_eq(R.gpr[PK_RAX], 0xFEE00900); /* base, enable, BSP */
    R.gpr[PK_RCX] = 0x1A0;
    expect_done(EMU(0x0F, 0x32));
    cr_assert_eq(R.gpr[PK_RAX], 0x1801);
    R.gpr[PK_RCX] = 0xFE; /* MTRRCAP: read-only */
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
}

Test(emu_msr, sysenter_msrs, .init = setup32)
{
    msr(0x174, 0x10);
    expect_done(EMU(0x0F, 0x30));
    msr(0x174, 0x10000); /* CS is 16 bits */
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
    R.gpr[PK_RCX] = 0x174;
    expect_done(EMU(0x0F, 0x32));
    cr_assert_eq(R.gpr[PK_RAX], 0x10);
}

Test(emu_msr, efer, .init = setup64)
{
    R.gpr[PK_RCX] = 0xC0000080;
    expect_done(EMU(0x0F, 0x32));
    cr_assert_eq(R.gpr[PK_RAX], 0x500);
    msr(0xC0000080, 0x001); /* clears LME with paging on */
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
    msr(0xC0000080, 0x901); /* SCE | LME | NXE */
    expect_done(EMU(0x0F, 0x30));
    cr_assert_eq(V.efer, 0xD01); /* LMA kept */
}

Test(emu_msr, segment_bases_map_to_regs, .init = setup64)
{
    msr(0xC0000100, 0x7000);
    expect_done(EMU(0x0F, 0x30));
    cr_assert_eq(R.fs_base, 0x7000);
    msr(0xC0000101, 0x8000);
    expect_done(EMU(0x0F, 0x30));
    cr_assert_eq(R.gs_base, 0x8000);
    msr(0xC0000102, 0xFFFF888000000000ull);
    expect_done(EMU(0x0F, 0x30));
    cr_assert_eq(V.kernel_gs_base, 0xFFFF888000000000ull);
    msr(0xC0000100, 0x0000800000000000ull); /* not canonical */
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
    msr(0xC0000082, 0x0000800000000000ull); /* LSTAR: not canonical */
    expect_fault(EMU(0x0F, 0x30), PK_VEC_GP, 0);
}

Test(emu_msr, fs_base_absent_in_32bit, .init = setup32)
{
    R.gpr[PK_RCX] = 0xC0000100;
    expect_fault(EMU(0x0F, 0x32), PK_VEC_GP, 0);
}

Test(emu_msr, cpl3_is_gp, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RCX] = 0x277;
    expect_fault(EMU(0x0F, 0x32), PK_VEC_GP, 0);
}

/* ---- the rest ----------------------------------------------------------------------------------- */

Test(emu_misc, invlpg_invd_wbinvd_are_privileged_nops, .init = setup32)
{
    R.gpr[PK_RAX] = OUTSIDE; /* INVLPG does not access its operand */
    expect_done(EMU(0x0F, 0x01, 0x38));
    cr_assert_eq(R.rip, CODE + 3);
    expect_done(EMU(0x0F, 0x08));
    expect_done(EMU(0x0F, 0x09));
    enter_ring3();
    expect_fault(EMU(0x0F, 0x01, 0x38), PK_VEC_GP, 0);
    expect_fault(EMU(0x0F, 0x09), PK_VEC_GP, 0);
}

Test(emu_misc, swapgs, .init = setup64)
{
    R.gs_base = 0x1111;
    V.kernel_gs_base = 0xFFFF888000002222ull;
    expect_done(EMU(0x0F, 0x01, 0xF8));
    cr_assert_eq(R.gs_base, 0xFFFF888000002222ull);
    cr_assert_eq(V.kernel_gs_base, 0x1111);
    enter_ring3();
    expect_fault(EMU(0x0F, 0x01, 0xF8), PK_VEC_GP, 0);
}

Test(emu_misc, stac_clac_real_ac, .init = setup64)
{
    expect_done(EMU(0x0F, 0x01, 0xCB));
    cr_assert(R.rflags & PK_FLAG_AC);
    expect_done(EMU(0x0F, 0x01, 0xCA));
    cr_assert_not(R.rflags & PK_FLAG_AC);
    enter_ring3();
    expect_fault(EMU(0x0F, 0x01, 0xCB), PK_VEC_UD, 0); /* SDM: #UD if CPL > 0 */
}

Test(emu_misc, xsetbv, .init = setup64)
{
    R.gpr[PK_RAX] = 7;
    expect_fault(EMU(0x0F, 0x01, 0xD1), PK_VEC_UD, 0); /* CR4.OSXSAVE = 0 */
    V.cr4 |= 1 << 18;
    expect_done(EMU(0x0F, 0x01, 0xD1));
    cr_assert_eq(V.xcr0, 7);
    R.gpr[PK_RAX] = 5; /* AVX without SSE */
    expect_fault(EMU(0x0F, 0x01, 0xD1), PK_VEC_GP, 0);
    R.gpr[PK_RAX] = 3;
    R.gpr[PK_RCX] = 1; /* only XCR0 exists */
    expect_fault(EMU(0x0F, 0x01, 0xD1), PK_VEC_GP, 0);
}
