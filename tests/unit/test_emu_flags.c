/* popek — emulation tests: the vcpu's reset state, its EFLAGS image,
 * PUSHF/POPF, CLI/STI, HLT, and instructions left unsupported.
 * Expected values are worked by hand from SDM vol. 2 (POPF, PUSHF, CLI,
 * STI, HLT) and REFERENCE §5.1; each test says why. */
#include "emu_fixture.h"

/* ---- reset --------------------------------------------------------------- */

Test(emu_reset, multiboot_32)
{
    pk_vcpu_reset(&V, 32);
    cr_assert_eq(V.bits, 32);
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(V.cr0, 0x11);              /* PE | ET */
    cr_assert_eq(V.vflags & PK_FLAG_IF, 0); /* Multiboot: interrupts off */
    cr_assert_eq(V.seg[PK_CS].selector, 0x08);
    cr_assert_eq(V.seg[PK_CS].attributes, 0xC09B); /* G D P S, exec/read */
    cr_assert_eq(V.seg[PK_CS].limit, 0xFFFFFFFF);
    cr_assert_eq(V.seg[PK_DS].selector, 0x10);
    cr_assert_eq(V.seg[PK_SS].attributes, 0xC093); /* G B P S, read/write */
    cr_assert_eq(V.idtr.limit, 0xFFFF);            /* SDM table 10-1 */
    cr_assert_eq(V.efer, 0);
}

Test(emu_reset, long_mode_64)
{
    pk_vcpu_reset(&V, 64);
    cr_assert_eq(V.cr0, 0x80000011); /* PE | ET | PG */
    cr_assert_eq(V.cr4, 0x20);       /* PAE */
    cr_assert_eq(V.efer, 0x500);     /* LME | LMA */
    cr_assert_eq(V.seg[PK_CS].attributes & 0x6000, 0x2000); /* L=1, D=0 */
    cr_assert_eq(V.cpl, 0);
}

/* ---- the flags image ---------------------------------------------------------- */

Test(emu_flags, image_takes_virtual_bits_and_hides_rf_vm)
{
    pk_vcpu_reset(&V, 32);
    /* real: RF, AC, IF (always 1 in the process), ZF, CF, bit 1 */
    R.rflags = 0x10000 | 0x40000 | 0x200 | 0x40 | 0x1 | 0x2;
    V.vflags = 0x3000; /* virtual IF 0, IOPL 3 */
    /* CF ZF bit1 AC from the real flags, IOPL 3 from the vcpu, IF 0, RF 0 */
    cr_assert_eq(pk_vcpu_flags(&V, &R), 0x40000 | 0x3000 | 0x40 | 0x1 | 0x2);
}

/* ---- PUSHF ------------------------------------------------------------------ */

Test(emu_pushf, pushfd_pushes_virtual_if, .init = setup32)
{
    R.rflags = 0x203 | PK_FLAG_RF; /* real IF=1, CF, RF */
    pk_emu_result r = EMU(0x9C);
    expect_done(r);
    /* vIF is 0 after reset, RF shows as 0: CF | bit 1 */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 4);
    cr_assert_eq(rd(STACK_TOP - 4, 4), 0x3);
    cr_assert_eq(R.rip, CODE + 1);
}

Test(emu_pushf, o16_pushes_two_bytes, .init = setup32)
{
    V.vflags = PK_FLAG_IF;
    wr(STACK_TOP - 4, 0xAAAAAAAA, 4);
    pk_emu_result r = EMU(0x66, 0x9C);
    expect_done(r);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 2);
    cr_assert_eq(rd(STACK_TOP - 2, 2), 0x202); /* IF | bit 1 */
    cr_assert_eq(rd(STACK_TOP - 4, 2), 0xAAAA); /* below it: untouched */
}

Test(emu_pushf, pushfq_pushes_eight_bytes, .init = setup64)
{
    V.vflags = PK_FLAG_IF | PK_FLAG_ID;
    wr(STACK_TOP - 8, ~0ull, 8);
    pk_emu_result r = EMU(0x9C);
    expect_done(r);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 8);
    cr_assert_eq(rd(STACK_TOP - 8, 8), 0x200202); /* ID | IF | bit 1 */
}

Test(emu_pushf, stack_outside_memory_is_pf, .init = setup32)
{
    R.gpr[PK_RSP] = OUTSIDE + 4;
    pk_emu_result r = EMU(0x9C);
    /* a CPL-0 write to a page that is not there: P=0, W=1 */
    expect_fault(r, PK_VEC_PF, 2);
    cr_assert_eq(r.fault.address, OUTSIDE);
    cr_assert_eq(R.gpr[PK_RSP], OUTSIDE + 4); /* precise: nothing moved */
    cr_assert_eq(R.rip, CODE);
}

/* ---- POPF ---------------------------------------------------------------------- */

/* Pops CF PF AF ZF SF TF IF DF OF IOPL=3 NT RF VM AC ID. */
#define POPPED 0x277FD5ull

Test(emu_popf, cpl0_changes_if_and_iopl, .init = setup32)
{
    wr(STACK_TOP - 4, POPPED, 4);
    R.gpr[PK_RSP] = STACK_TOP - 4;
    pk_emu_result r = EMU(0x9D);
    expect_done(r);
    /* CPL 0: all but RF (cleared) and VM (unchanged, 0) are loaded */
    cr_assert_eq(pk_vcpu_flags(&V, &R), 0x247FD7);
    cr_assert_eq(V.vflags, 0x207200); /* ID NT IOPL IF */
    /* the real flags keep IF=1 and never take RF */
    cr_assert_eq(R.rflags, 0x40FD7);
    cr_assert(r.interrupt_window); /* vIF 0 -> 1 */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

Test(emu_popf, cpl3_iopl0_leaves_if_and_iopl, .init = setup32)
{
    enter_ring3();
    wr(STACK_TOP - 4, POPPED, 4);
    R.gpr[PK_RSP] = STACK_TOP - 4;
    pk_emu_result r = EMU(0x9D);
    expect_done(r);
    /* CPL > IOPL: IF and IOPL silently kept (0); NT, ID, AC, TF... load */
    cr_assert_eq(V.vflags, PK_FLAG_NT | PK_FLAG_ID);
    cr_assert_eq(pk_vcpu_flags(&V, &R), 0x247FD7 & ~0x3200ull);
    cr_assert_not(r.interrupt_window);
}

Test(emu_popf, cpl3_iopl3_changes_if_not_iopl, .init = setup32)
{
    enter_ring3();
    V.vflags = 0x3000; /* IOPL 3, IF 0 */
    wr(STACK_TOP - 4, 0x202, 4); /* IF=1, IOPL=0 */
    R.gpr[PK_RSP] = STACK_TOP - 4;
    pk_emu_result r = EMU(0x9D);
    expect_done(r);
    cr_assert_eq(V.vflags, 0x3200); /* IF loaded, IOPL kept at 3 */
    cr_assert(r.interrupt_window);
}

Test(emu_popf, o16_touches_low_half_only, .init = setup32)
{
    V.vflags = PK_FLAG_ID;
    R.rflags |= PK_FLAG_AC;
    wr(STACK_TOP - 2, 0xFFFF, 2);
    R.gpr[PK_RSP] = STACK_TOP - 2;
    pk_emu_result r = EMU(0x66, 0x9D);
    expect_done(r);
    /* bits 15:0: every defined flag (reserved 3, 5, 15 stay 0, bit 1
     * stays 1); AC and ID (bits 18, 21) are out of reach and stay */
    cr_assert_eq(pk_vcpu_flags(&V, &R), 0x240000 | 0x7FD7);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

Test(emu_popf, popfq_ignores_upper_bits, .init = setup64)
{
    wr(STACK_TOP - 8, 0xFFFFFFFF00000002ull | PK_FLAG_CF, 8);
    R.gpr[PK_RSP] = STACK_TOP - 8;
    pk_emu_result r = EMU(0x9D);
    expect_done(r);
    cr_assert_eq(pk_vcpu_flags(&V, &R), 0x3);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

/* ---- CLI, STI, HLT ---------------------------------------------------------------- */

Test(emu_cli_sti, sti_opens_window_and_shadow, .init = setup32)
{
    pk_emu_result r = EMU(0xFB);
    expect_done(r);
    cr_assert(V.vflags & PK_FLAG_IF);
    cr_assert(V.interrupt_shadow);
    cr_assert(r.interrupt_window);
    cr_assert_eq(R.rip, CODE + 1);
    cr_assert_str_eq(r.effect, "vIF 0 -> 1");
}

Test(emu_cli_sti, sti_with_if_set_has_no_shadow, .init = setup32)
{
    V.vflags = PK_FLAG_IF;
    pk_emu_result r = EMU(0xFB);
    expect_done(r);
    cr_assert_not(V.interrupt_shadow); /* SDM: only when IF was 0 */
    cr_assert_not(r.interrupt_window);
}

Test(emu_cli_sti, cli_clears_virtual_if, .init = setup32)
{
    V.vflags = PK_FLAG_IF;
    pk_emu_result r = EMU(0xFA);
    expect_done(r);
    cr_assert_eq(V.vflags & PK_FLAG_IF, 0);
    cr_assert_eq(R.rflags & PK_FLAG_IF, PK_FLAG_IF); /* the real IF stays */
    cr_assert_str_eq(r.effect, "vIF 1 -> 0");
}

Test(emu_cli_sti, cpl3_iopl0_is_gp, .init = setup32)
{
    enter_ring3();
    V.vflags = PK_FLAG_IF;
    expect_fault(EMU(0xFA), PK_VEC_GP, 0);
    cr_assert_eq(V.vflags, PK_FLAG_IF);
    cr_assert_eq(R.rip, CODE);
    expect_fault(EMU(0xFB), PK_VEC_GP, 0);
}

Test(emu_cli_sti, cpl3_iopl3_is_allowed, .init = setup32)
{
    enter_ring3();
    V.vflags = 0x3000 | PK_FLAG_IF;
    expect_done(EMU(0xFA));
    cr_assert_eq(V.vflags, 0x3000);
}

Test(emu_hlt, cpl0_halts_past_the_instruction, .init = setup64)
{
    pk_emu_result r = EMU(0xF4);
    cr_assert_eq(r.status, PK_EMU_HALT);
    cr_assert_eq(R.rip, CODE + 1);
}

Test(emu_hlt, cpl3_is_gp, .init = setup32)
{
    enter_ring3();
    expect_fault(EMU(0xF4), PK_VEC_GP, 0);
}

/* ---- unsupported ----------------------------------------------------------------------- */

Test(emu_unsupported, cpuid_rdtsc_change_nothing, .init = setup64)
{
    pk_vcpu v0 = V;
    pk_regs r0 = R;
    expect_unsupported(EMU(0x0F, 0xA2));
    expect_unsupported(EMU(0x0F, 0x31));
    expect_unsupported(EMU(0x90)); /* not a catalog row at all */
    cr_assert_eq(memcmp(&V, &v0, sizeof V), 0);
    cr_assert_eq(memcmp(&R, &r0, sizeof R), 0);
}

Test(emu_unsupported, wrong_mode_decode, .init = setup64)
{
    decode(32, BYTES(0x9C));
    expect_unsupported(pk_emulate(&I, OPS, &V, &R, &MEM));
}
