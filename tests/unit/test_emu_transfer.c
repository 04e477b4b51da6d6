/* popek — emulation tests: far JMP/CALL/RET, IRET, INT n and event
 * delivery through the guest's IDT. Frames and checks are worked by hand
 * from SDM vol. 2 (CALL, JMP, RET, IRET, INT n) and vol. 3A §6.12-6.14
 * (stack layout on interrupts, error codes, 64-bit frames). */
#include "emu_fixture.h"

/* A 32-bit IDT gate: selector, offset, type (E interrupt, F trap), DPL. */
static void gate32(uint8_t v, uint16_t sel, uint32_t off, unsigned type, unsigned dpl)
{
    uint32_t lo = (uint32_t)sel << 16 | (off & 0xFFFF);
    uint32_t hi = (off & 0xFFFF0000) | 0x8000 | dpl << 13 | type << 8;
    wr(IDT + v * 8, lo, 4);
    wr(IDT + v * 8 + 4, hi, 4);
}

static void gate64(uint8_t v, uint16_t sel, uint64_t off, unsigned type, unsigned dpl, unsigned ist)
{
    uint32_t lo = (uint32_t)sel << 16 | (off & 0xFFFF);
    uint32_t hi = ((uint32_t)off & 0xFFFF0000) | 0x8000 | dpl << 13 | type << 8 | ist;
    wr(IDT + v * 16, lo, 4);
    wr(IDT + v * 16 + 4, hi, 4);
    wr(IDT + v * 16 + 8, off >> 32, 8);
}

static void tss_loaded(uint32_t limit)
{
    V.seg[PK_TR] = (pk_segment){ SEL_TSS, TSS, limit, 0x8B };
}

/* ---- far JMP, far CALL ------------------------------------------------------ */

Test(emu_far_jmp, direct_same_privilege, .init = setup32)
{
    pk_emu_result r = EMU(0xEA, 0x78, 0x56, 0x34, 0x12, SEL_CODE0, 0x00);
    expect_done(r);
    cr_assert_eq(R.rip, 0x12345678);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE0);
    cr_assert_eq(rd(GDT + SEL_CODE0 + 5, 1), 0x9B); /* accessed bit set */
}

Test(emu_far_jmp, checks, .init = setup32)
{
    expect_fault(EMU(0xEA, 0, 0, 0, 0, SEL_CODE3, 0), PK_VEC_GP, SEL_CODE3); /* DPL 3 != 0 */
    expect_fault(EMU(0xEA, 0, 0, 0, 0, SEL_DATA0, 0), PK_VEC_GP, SEL_DATA0);
    expect_fault(EMU(0xEA, 0, 0, 0, 0, 0, 0), PK_VEC_GP, 0);
    expect_unsupported(EMU(0xEA, 0, 0, 0, 0, SEL_CODE16, 0));
    gdt_set(SEL_CODE0, 0x00CF1A000000FFFFull); /* not present */
    expect_fault(EMU(0xEA, 0, 0, 0, 0, SEL_CODE0, 0), PK_VEC_NP, SEL_CODE0);
    cr_assert_eq(R.rip, CODE);
}

Test(emu_far_jmp, conforming_keeps_cpl, .init = setup32)
{
    enter_ring3();
    expect_done(EMU(0xEA, 0x00, 0x10, 0x00, 0x00, SEL_CONF0, 0x00));
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CONF0 | 3); /* RPL = CPL */
}

Test(emu_far_jmp, offset_past_limit_is_gp, .init = setup32)
{
    gdt_set(0x68, 0x00409A0000000FFFull); /* code, byte-granular limit 0xFFF */
    expect_fault(EMU(0xEA, 0x00, 0x10, 0x00, 0x00, 0x68, 0x00), PK_VEC_GP, 0);
}

Test(emu_far_jmp, indirect_m16_64, .init = setup64)
{
    wr(DATA, 0xFFFFFFFF81000000ull, 8);
    wr(DATA + 8, SEL_CODE64, 2);
    R.gpr[PK_RAX] = DATA;
    expect_done(EMU(0x48, 0xFF, 0x28)); /* jmp far [rax], m16:64 */
    cr_assert_eq(R.rip, 0xFFFFFFFF81000000ull);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE64);
    wr(DATA, 0x0000800000000000ull, 8); /* not canonical */
    expect_fault(EMU(0x48, 0xFF, 0x28), PK_VEC_GP, 0);
    wr(DATA, 0x1000, 8);
    wr(DATA + 8, SEL_CODE0, 2); /* a 32-bit segment: compatibility mode */
    expect_unsupported(EMU(0x48, 0xFF, 0x28));
}

Test(emu_far_call, direct_pushes_cs_and_eip, .init = setup32)
{
    expect_done(EMU(0x9A, 0x00, 0x20, 0x00, 0x00, SEL_CODE0, 0x00));
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 8);
    cr_assert_eq(rd(STACK_TOP - 8, 4), CODE + 7); /* return address */
    cr_assert_eq(rd(STACK_TOP - 4, 4), SEL_CODE0); /* CS, zero-extended */
    cr_assert_eq(R.rip, 0x2000);
}

Test(emu_far_call, indirect_m16_64, .init = setup64)
{
    V.seg[PK_CS].selector = SEL_CODE64;
    wr(DATA, 0x3000, 8);
    wr(DATA + 8, SEL_CODE64, 2);
    R.gpr[PK_RBX] = DATA;
    expect_done(EMU(0x48, 0xFF, 0x1B)); /* call far [rbx] */
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 16);
    cr_assert_eq(rd(STACK_TOP - 16, 8), CODE + 3);
    cr_assert_eq(rd(STACK_TOP - 8, 8), SEL_CODE64);
}

/* ---- call gates ------------------------------------------------------------ */

/* A 32-bit call gate (SDM vol. 3A figure 5-8): offset 31:16 | P | DPL |
 * type 0xC | parameter count, then selector | offset 15:0. */
static void call_gate(uint16_t sel, uint32_t off, unsigned dpl, unsigned params, bool present)
{
    uint32_t lo = (uint32_t)sel << 16 | (off & 0xFFFF);
    uint32_t hi = (off & 0xFFFF0000) | (present ? 0x8000u : 0) | dpl << 13 | 0xC00 | params;
    gdt_set(SEL_CALLGATE, (uint64_t)hi << 32 | lo);
}

Test(emu_call_gate, jmp_and_call_at_the_same_level, .init = setup32)
{
    call_gate(SEL_CODE0, 0x401000, 3, 0, true);
    /* jmp far 0x68:0 (the offset in the instruction is ignored) */
    expect_done(EMU(0xEA, 0, 0, 0, 0, SEL_CALLGATE, 0));
    cr_assert_eq(R.rip, 0x401000);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE0);
    R.rip = CODE;
    /* call far 0x68:0 pushes CS and the return EIP on the same stack */
    expect_done(EMU(0x9A, 0, 0, 0, 0, SEL_CALLGATE, 0));
    cr_assert_eq(R.rip, 0x401000);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 8);
    cr_assert_eq(rd(STACK_TOP - 4, 4), SEL_CODE0);
    cr_assert_eq(rd(STACK_TOP - 8, 4), CODE + 7);
    cr_assert_eq(V.cpl, 0);
}

/* From ring 3 through a DPL-3 gate to ring-0 code: the stack switches to
 * SS0:ESP0 of the TSS, which receives the old SS:ESP, the gate's count of
 * parameters copied in order, then CS:EIP (SDM vol. 3A figure 5-13); RET
 * with imm16 climbs back, dropping the parameters on both stacks. */
Test(emu_call_gate, call_to_inner_level_copies_parameters, .init = setup32)
{
    call_gate(SEL_CODE0, 0x401000, 3, 2, true);
    tss_loaded(0x67);
    wr(TSS + 4, STACK0_TOP, 4);
    wr(TSS + 8, SEL_DATA0, 2);
    enter_ring3();
    R.gpr[PK_RSP] = STACK_TOP - 8;
    wr(STACK_TOP - 8, 0x11111111, 4); /* parameter 0 */
    wr(STACK_TOP - 4, 0x22222222, 4); /* parameter 1 */
    expect_done(EMU(0x9A, 0, 0, 0, 0, SEL_CALLGATE | 3, 0));
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE0);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA0);
    cr_assert_eq(rd(STACK0_TOP - 4, 4), SEL_DATA3 | 3);
    cr_assert_eq(rd(STACK0_TOP - 8, 4), STACK_TOP - 8);
    cr_assert_eq(rd(STACK0_TOP - 12, 4), 0x22222222);
    cr_assert_eq(rd(STACK0_TOP - 16, 4), 0x11111111);
    cr_assert_eq(rd(STACK0_TOP - 20, 4), SEL_CODE3 | 3);
    cr_assert_eq(rd(STACK0_TOP - 24, 4), CODE + 7);
    cr_assert_eq(R.gpr[PK_RSP], STACK0_TOP - 24);
    R.rip = 0x401000;
    expect_done(EMU(0xCA, 0x08, 0x00)); /* ret far 8 */
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(R.rip, CODE + 7);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA3 | 3);
}

Test(emu_call_gate, checks, .init = setup32)
{
    enter_ring3();
    call_gate(SEL_CODE0, 0x401000, 0, 0, true);  /* gate DPL 0 < CPL 3 */
    expect_fault(EMU(0x9A, 0, 0, 0, 0, SEL_CALLGATE | 3, 0), PK_VEC_GP, SEL_CALLGATE);
    call_gate(SEL_CODE0, 0x401000, 3, 0, true);  /* JMP never changes level */
    expect_fault(EMU(0xEA, 0, 0, 0, 0, SEL_CALLGATE | 3, 0), PK_VEC_GP, SEL_CODE0);
    call_gate(SEL_CODE0, 0x401000, 3, 0, false); /* not present */
    expect_fault(EMU(0x9A, 0, 0, 0, 0, SEL_CALLGATE | 3, 0), PK_VEC_NP, SEL_CALLGATE);
    call_gate(SEL_DATA0, 0x401000, 3, 0, true);  /* names a data segment */
    expect_fault(EMU(0x9A, 0, 0, 0, 0, SEL_CALLGATE | 3, 0), PK_VEC_GP, SEL_DATA0);
    cr_assert_eq(R.rip, CODE);
    cr_assert_eq(V.cpl, 3);
}

/* ---- SYSCALL, SYSRET, SYSENTER, SYSEXIT ------------------------------------------- */

static void wrmsr(uint32_t index, uint64_t value)
{
    unsigned cpl = V.cpl;
    V.cpl = 0;
    R.gpr[PK_RCX] = index;
    R.gpr[PK_RAX] = (uint32_t)value;
    R.gpr[PK_RDX] = value >> 32;
    expect_done(EMU(0x0F, 0x30));
    V.cpl = cpl;
    R.rip = CODE;
}

Test(emu_syscall, ud_outside_long_mode_or_without_sce, .init = setup32)
{
    expect_fault(EMU(0x0F, 0x05), PK_VEC_UD, 0);
    setup64();
    expect_fault(EMU(0x0F, 0x05), PK_VEC_UD, 0); /* EFER.SCE is 0 after reset */
}

/* SDM vol. 2, SYSCALL and SYSRET: RCX and R11 keep the return address and
 * the flags; CS and SS come from STAR[47:32] and STAR[63:48]. */
Test(emu_syscall, round_trip, .init = setup64)
{
    wrmsr(0xC0000080, 0x501);                      /* EFER: SCE, LME, LMA */
    wrmsr(0xC0000081, 0x0018000800000000ull);      /* STAR */
    wrmsr(0xC0000082, 0x401000);                   /* LSTAR */
    wrmsr(0xC0000084, PK_FLAG_IF | PK_FLAG_TF);    /* FMASK */
    enter_ring3();
    V.vflags = PK_FLAG_IF;
    expect_done(EMU(0x0F, 0x05));
    cr_assert_eq(R.gpr[PK_RCX], CODE + 2);
    cr_assert_eq(R.gpr[PK_R11], 0x202);
    cr_assert_eq(R.rip, 0x401000);
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(V.seg[PK_CS].selector, 0x08);
    cr_assert_eq(V.seg[PK_SS].selector, 0x10);
    cr_assert(V.seg[PK_CS].attributes & (1u << 13), "64-bit code (L=1)");
    cr_assert(!(V.vflags & PK_FLAG_IF), "FMASK clears IF");
    expect_done(EMU(0x48, 0x0F, 0x07)); /* sysretq */
    cr_assert_eq(R.rip, CODE + 2);
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(V.seg[PK_CS].selector, (0x18 + 16) | 3);
    cr_assert_eq(V.seg[PK_SS].selector, (0x18 + 8) | 3);
    cr_assert(V.vflags & PK_FLAG_IF, "R11 restores IF");
    expect_fault(EMU(0x48, 0x0F, 0x07), PK_VEC_GP, 0); /* SYSRET at CPL 3 */
}

/* SDM vol. 2, SYSENTER and SYSEXIT: #GP(0) while IA32_SYSENTER_CS is 0;
 * then CS = SYSENTER_CS, SS = CS + 8, and back to CS + 16 | 3, SS + 24 | 3. */
Test(emu_sysenter, round_trip, .init = setup32)
{
    enter_ring3();
    expect_fault(EMU(0x0F, 0x34), PK_VEC_GP, 0);
    wrmsr(0x174, SEL_CODE0);
    wrmsr(0x175, STACK0_TOP);
    wrmsr(0x176, 0x401000);
    V.vflags = PK_FLAG_IF;
    expect_done(EMU(0x0F, 0x34));
    cr_assert_eq(R.rip, 0x401000);
    cr_assert_eq(R.gpr[PK_RSP], STACK0_TOP);
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE0);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA0);
    cr_assert(!(V.vflags & PK_FLAG_IF));
    R.gpr[PK_RDX] = CODE + 2;
    R.gpr[PK_RCX] = STACK_TOP;
    expect_done(EMU(0x0F, 0x35));
    cr_assert_eq(R.rip, CODE + 2);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(V.seg[PK_CS].selector, (SEL_CODE0 + 16) | 3);
    cr_assert_eq(V.seg[PK_SS].selector, (SEL_CODE0 + 24) | 3);
    expect_fault(EMU(0x0F, 0x35), PK_VEC_GP, 0); /* SYSEXIT at CPL 3 */
}

/* ---- far RET ------------------------------------------------------------------ */

Test(emu_far_ret, same_privilege_with_imm, .init = setup32)
{
    R.gpr[PK_RSP] = STACK_TOP - 16;
    wr(STACK_TOP - 16, 0x1000, 4);
    wr(STACK_TOP - 12, SEL_CODE0, 4);
    expect_done(EMU(0xCA, 0x08, 0x00)); /* retf 8 */
    cr_assert_eq(R.rip, 0x1000);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP); /* 8 popped + 8 released */
}

Test(emu_far_ret, to_outer_level, .init = setup32)
{
    V.seg[PK_DS] = (pk_segment){ SEL_DATA0, 0, 0xFFFFFFFF, 0xC093 };
    V.seg[PK_ES] = (pk_segment){ SEL_DATA3 | 3, 0, 0xFFFFFFFF, 0xC0F3 };
    R.gpr[PK_RSP] = STACK_TOP - 16;
    wr(STACK_TOP - 16, 0x2000, 4);
    wr(STACK_TOP - 12, SEL_CODE3 | 3, 4);
    wr(STACK_TOP - 8, 0x107000, 4);
    wr(STACK_TOP - 4, SEL_DATA3 | 3, 4);
    pk_emu_result r = EMU(0xCB);
    expect_done(r);
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE3 | 3);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA3 | 3);
    cr_assert_eq(R.gpr[PK_RSP], 0x107000);
    cr_assert_eq(R.rip, 0x2000);
    cr_assert_eq(V.seg[PK_DS].selector, 0);          /* DPL 0 < CPL 3: nulled */
    cr_assert_eq(V.seg[PK_ES].selector, SEL_DATA3 | 3); /* DPL 3: kept */
}

Test(emu_far_ret, to_inner_or_bad_ss, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RSP] = STACK_TOP - 8;
    wr(STACK_TOP - 8, 0x2000, 4);
    wr(STACK_TOP - 4, SEL_CODE0, 4); /* RPL 0 < CPL 3 */
    expect_fault(EMU(0xCB), PK_VEC_GP, SEL_CODE0);
    V.cpl = 0;
    V.seg[PK_CS].selector = SEL_CODE0;
    R.gpr[PK_RSP] = STACK_TOP - 16;
    wr(STACK_TOP - 16, 0x2000, 4);
    wr(STACK_TOP - 12, SEL_CODE3 | 3, 4);
    wr(STACK_TOP - 8, 0x107000, 4);
    wr(STACK_TOP - 4, SEL_DATA3, 4); /* SS RPL 0 != new CPL 3 */
    expect_fault(EMU(0xCB), PK_VEC_GP, SEL_DATA3);
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 16);
}

/* ---- IRET ------------------------------------------------------------------------ */

static void frame32(uint64_t at_, uint32_t eip, uint32_t cs, uint32_t fl)
{
    wr(at_, eip, 4);
    wr(at_ + 4, cs, 4);
    wr(at_ + 8, fl, 4);
}

Test(emu_iret, same_privilege_opens_window, .init = setup32)
{
    R.gpr[PK_RSP] = STACK_TOP - 12;
    frame32(STACK_TOP - 12, 0x3000, SEL_CODE0, 0x202);
    pk_emu_result r = EMU(0xCF);
    expect_done(r);
    cr_assert_eq(R.rip, 0x3000);
    cr_assert(V.vflags & PK_FLAG_IF);
    cr_assert(r.interrupt_window);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

Test(emu_iret, to_ring3_sets_iopl_from_cpl0, .init = setup32)
{
    R.gpr[PK_RSP] = STACK_TOP - 20;
    frame32(STACK_TOP - 20, 0x4000, SEL_CODE3 | 3, 0x3202);
    wr(STACK_TOP - 8, 0x107000, 4);
    wr(STACK_TOP - 4, SEL_DATA3 | 3, 4);
    expect_done(EMU(0xCF));
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(V.vflags, 0x3200); /* IOPL loaded: the IRET ran at CPL 0 */
    cr_assert_eq(R.gpr[PK_RSP], 0x107000);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA3 | 3);
}

Test(emu_iret, cpl3_keeps_if_and_iopl, .init = setup32)
{
    enter_ring3();
    V.vflags = PK_FLAG_IF;
    R.gpr[PK_RSP] = STACK_TOP - 12;
    frame32(STACK_TOP - 12, 0x5000, SEL_CODE3 | 3, 0x3002 | PK_FLAG_CF); /* IF 0, IOPL 3 */
    pk_emu_result r = EMU(0xCF);
    expect_done(r);
    cr_assert_eq(V.vflags, PK_FLAG_IF); /* CPL 3 > IOPL 0: IF, IOPL kept */
    cr_assert(R.rflags & PK_FLAG_CF);
}

Test(emu_iret, nt_is_task_return, .init = setup32)
{
    V.vflags = PK_FLAG_NT;
    expect_unsupported(EMU(0xCF));
}

Test(emu_iret, iretq_pops_ss_rsp, .init = setup64)
{
    R.gpr[PK_RSP] = STACK_TOP - 40;
    wr(STACK_TOP - 40, 0xFFFFFFFF81001000ull, 8);
    wr(STACK_TOP - 32, SEL_CODE64, 8);
    wr(STACK_TOP - 24, 0x246, 8);
    wr(STACK_TOP - 16, 0x106000, 8);
    wr(STACK_TOP - 8, SEL_DATA0, 8);
    pk_emu_result r = EMU(0x48, 0xCF);
    expect_done(r);
    cr_assert_eq(R.rip, 0xFFFFFFFF81001000ull);
    cr_assert_eq(R.gpr[PK_RSP], 0x106000); /* same level, still popped */
    cr_assert(r.interrupt_window);
    cr_assert(R.rflags & PK_FLAG_ZF);
}

Test(emu_iret, iretq_to_compat_mode_unsupported, .init = setup64)
{
    R.gpr[PK_RSP] = STACK_TOP - 40;
    wr(STACK_TOP - 32, SEL_CODE0, 8);
    wr(STACK_TOP - 8, SEL_DATA0, 8);
    expect_unsupported(EMU(0x48, 0xCF));
    V.vflags = PK_FLAG_NT;
    expect_fault(EMU(0x48, 0xCF), PK_VEC_GP, 0); /* 64-bit: NT is #GP(0) */
}

/* ---- INT n and delivery: 32-bit ----------------------------------------------------- */

Test(emu_int, same_privilege_frame_and_iret_back, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(0x20, SEL_CODE0, 0x00401000, 0xE, 0);
    V.vflags = PK_FLAG_IF;
    R.rflags = 0x302; /* TF */
    pk_emu_result r = EMU(0xCD, 0x20);
    expect_done(r);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 12);
    cr_assert_eq(rd(STACK_TOP - 12, 4), CODE + 2);   /* EIP after INT */
    cr_assert_eq(rd(STACK_TOP - 8, 4), SEL_CODE0);   /* CS */
    cr_assert_eq(rd(STACK_TOP - 4, 4), 0x302);       /* vIF 1, TF */
    cr_assert_eq(R.rip, 0x401000);
    cr_assert_eq(V.vflags & PK_FLAG_IF, 0);          /* interrupt gate */
    cr_assert_eq(R.rflags & PK_FLAG_TF, 0);
    r = EMU(0xCF);
    expect_done(r);
    cr_assert_eq(R.rip, CODE + 2);
    cr_assert(V.vflags & PK_FLAG_IF);
    cr_assert(R.rflags & PK_FLAG_TF);
}

Test(emu_int, gate_dpl_below_cpl_is_gp, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(0x20, SEL_CODE0, 0x401000, 0xE, 0);
    enter_ring3();
    expect_fault(EMU(0xCD, 0x20), PK_VEC_GP, 0x20 * 8 + 2);
    cr_assert_eq(R.rip, CODE);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
}

Test(emu_int, stack_switch_from_ring3, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(0x80, SEL_CODE0, 0x402000, 0xF, 3); /* trap gate, DPL 3 */
    tss_loaded(0x67);
    wr(TSS + 4, STACK0_TOP, 4);  /* ESP0 */
    wr(TSS + 8, SEL_DATA0, 2);   /* SS0 */
    enter_ring3();
    V.vflags = PK_FLAG_IF;
    pk_emu_result r = EMU(0xCD, 0x80);
    expect_done(r);
    cr_assert_eq(rd(STACK0_TOP - 4, 4), SEL_DATA3 | 3);  /* old SS */
    cr_assert_eq(rd(STACK0_TOP - 8, 4), STACK_TOP);      /* old ESP */
    cr_assert_eq(rd(STACK0_TOP - 12, 4), 0x202);         /* EFLAGS */
    cr_assert_eq(rd(STACK0_TOP - 16, 4), SEL_CODE3 | 3); /* old CS */
    cr_assert_eq(rd(STACK0_TOP - 20, 4), CODE + 2);      /* EIP */
    cr_assert_eq(R.gpr[PK_RSP], STACK0_TOP - 20);
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(V.seg[PK_CS].selector, SEL_CODE0);
    cr_assert_eq(V.seg[PK_SS].selector, SEL_DATA0);
    cr_assert(V.vflags & PK_FLAG_IF); /* trap gate: IF kept */
    /* and back with IRET to ring 3 */
    expect_done(EMU(0xCF));
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP);
    cr_assert_eq(R.rip, CODE + 2);
}

Test(emu_int, bad_tss_ss_is_ts, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(0x80, SEL_CODE0, 0x402000, 0xF, 3);
    tss_loaded(0x67);
    wr(TSS + 8, SEL_DATA3 | 3, 2); /* SS0 with RPL 3 */
    enter_ring3();
    expect_fault(EMU(0xCD, 0x80), PK_VEC_TS, SEL_DATA3); /* software: EXT 0 */
}

Test(emu_int, beyond_limit_and_not_present, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0xFF }; /* 32 gates */
    expect_fault(EMU(0xCD, 0x40), PK_VEC_GP, 0x40 * 8 + 2);
    wr(IDT + 0x10 * 8 + 5, 0x0E, 1); /* type E, P=0 */
    expect_fault(EMU(0xCD, 0x10), PK_VEC_NP, 0x10 * 8 + 2);
}

Test(emu_int, int3_and_into, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(3, SEL_CODE0, 0x403000, 0xF, 3);
    gate32(4, SEL_CODE0, 0x404000, 0xF, 3);
    expect_done(EMU(0xCC));
    cr_assert_eq(R.rip, 0x403000);
    cr_assert_eq(rd(R.gpr[PK_RSP], 4), CODE + 1);
    R.rip = CODE;
    expect_done(EMU(0xCE)); /* OF=0: no trap */
    cr_assert_eq(R.rip, CODE + 1);
    R.rip = CODE;
    R.rflags |= PK_FLAG_OF;
    expect_done(EMU(0xCE));
    cr_assert_eq(R.rip, 0x404000);
}

Test(emu_deliver, exception_pushes_error_code, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(13, SEL_CODE0, 0x405000, 0xE, 0);
    pk_emu_result r = pk_deliver(&V, &R, &MEM, 13, PK_EVENT_EXCEPTION, true, 0x10);
    expect_done(r);
    cr_assert_eq(R.gpr[PK_RSP], STACK_TOP - 16);
    cr_assert_eq(rd(STACK_TOP - 16, 4), 0x10); /* error code on top */
    cr_assert_eq(rd(STACK_TOP - 12, 4), CODE);
    cr_assert_eq(R.rip, 0x405000);
}

Test(emu_deliver, external_sets_ext_bit, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0xFF };
    pk_emu_result r = pk_deliver(&V, &R, &MEM, 0x20, PK_EVENT_EXTERNAL, false, 0);
    expect_fault(r, PK_VEC_GP, 0x20 * 8 + 2 + 1);
    cr_assert_eq(R.rip, CODE);
}

Test(emu_deliver, stack_outside_memory_changes_nothing, .init = setup32)
{
    V.idtr = (pk_table_register){ IDT, 0x7FF };
    gate32(0x20, SEL_CODE0, 0x401000, 0xE, 0);
    V.vflags = PK_FLAG_IF;
    R.gpr[PK_RSP] = OUTSIDE;
    pk_vcpu v0 = V;
    pk_emu_result r = pk_deliver(&V, &R, &MEM, 0x20, PK_EVENT_EXTERNAL, false, 0);
    expect_fault(r, PK_VEC_PF, 2);
    cr_assert_eq(memcmp(&V, &v0, sizeof V), 0);
    cr_assert_eq(R.gpr[PK_RSP], OUTSIDE);
}

/* ---- delivery: 64-bit ------------------------------------------------------------------- */

Test(emu_deliver, long_mode_from_ring3, .init = setup64)
{
    V.idtr = (pk_table_register){ IDT, 0xFFF };
    gate64(0x20, SEL_CODE64, 0xFFFFFFFF81000000ull, 0xE, 0, 0);
    tss_loaded(0x67);
    wr(TSS + 4, STACK0_TOP, 8); /* RSP0 */
    V.cpl = 3;
    V.seg[PK_CS].selector = SEL_CODE64_3 | 3;
    V.seg[PK_SS].selector = SEL_DATA3 | 3;
    V.vflags = PK_FLAG_IF;
    R.gpr[PK_RSP] = 0x107008;
    pk_emu_result r = pk_deliver(&V, &R, &MEM, 0x20, PK_EVENT_EXTERNAL, false, 0);
    expect_done(r);
    cr_assert_eq(rd(STACK0_TOP - 8, 8), SEL_DATA3 | 3);    /* SS */
    cr_assert_eq(rd(STACK0_TOP - 16, 8), 0x107008);        /* RSP */
    cr_assert_eq(rd(STACK0_TOP - 24, 8), 0x202);           /* RFLAGS */
    cr_assert_eq(rd(STACK0_TOP - 32, 8), SEL_CODE64_3 | 3);/* CS */
    cr_assert_eq(rd(STACK0_TOP - 40, 8), CODE);            /* RIP */
    cr_assert_eq(R.gpr[PK_RSP], STACK0_TOP - 40);
    cr_assert_eq(V.seg[PK_SS].selector, 0); /* null SS, RPL = new CPL 0 */
    cr_assert_eq(V.cpl, 0);
    cr_assert_eq(R.rip, 0xFFFFFFFF81000000ull);
    cr_assert_eq(V.vflags & PK_FLAG_IF, 0);
}

Test(emu_deliver, long_mode_same_level_aligns_rsp, .init = setup64)
{
    V.idtr = (pk_table_register){ IDT, 0xFFF };
    gate64(0x21, SEL_CODE64, 0xFFFFFFFF81000100ull, 0xE, 0, 0);
    R.gpr[PK_RSP] = 0x107008;
    expect_done(pk_deliver(&V, &R, &MEM, 0x21, PK_EVENT_EXTERNAL, false, 0));
    /* aligned down to 0x107000, then five quadwords */
    cr_assert_eq(R.gpr[PK_RSP], 0x107000 - 40);
    cr_assert_eq(rd(0x107000 - 16, 8), 0x107008);
}

Test(emu_deliver, long_mode_ist, .init = setup64)
{
    V.idtr = (pk_table_register){ IDT, 0xFFF };
    gate64(8, SEL_CODE64, 0xFFFFFFFF81000200ull, 0xE, 0, 1);
    tss_loaded(0x67);
    wr(TSS + 0x24, 0x109000, 8); /* IST1 */
    expect_done(pk_deliver(&V, &R, &MEM, 8, PK_EVENT_EXCEPTION, true, 0));
    cr_assert_eq(R.gpr[PK_RSP], 0x109000 - 48); /* with the #DF error code */
}

Test(emu_deliver, long_mode_bad_gate_type, .init = setup64)
{
    V.idtr = (pk_table_register){ IDT, 0xFFF };
    gate64(0x22, SEL_CODE64, 0xFFFFFFFF81000000ull, 0xC, 0, 0); /* call gate */
    expect_fault(pk_deliver(&V, &R, &MEM, 0x22, PK_EVENT_EXTERNAL, false, 0), PK_VEC_GP,
                 0x22 * 8 + 2 + 1);
}

/* INT n at CPL 3 through a DPL-0 64-bit gate (SDM vol. 2 INT n, IA-32e
 * mode: "IF software interrupt and gate DPL < CPL THEN #GP(error_code
 * (vector, IDT = 1, EXT = 0))"): the error code's index is the vector,
 * not a byte offset into the 16-byte-gate IDT, so 0x81 gives 0x81 * 8 + 2
 * = 0x40A (a 64-bit Linux process sees the same REG_ERR; QEMU 7.2's TCG
 * pushes 0x812). The guest's state is left as it was. */
Test(emu_deliver, long_mode_int_dpl0_gate_from_ring3, .init = setup64)
{
    V.idtr = (pk_table_register){ IDT, 0xFFF };
    gate64(0x81, SEL_CODE64, 0xFFFFFFFF81000000ull, 0xF, 0, 0);
    V.cpl = 3;
    V.seg[PK_CS].selector = SEL_CODE64_3 | 3;
    R.gpr[PK_RSP] = 0x107008;
    expect_fault(EMU(0xCD, 0x81), PK_VEC_GP, 0x40A);
    cr_assert_eq(V.cpl, 3);
    cr_assert_eq(R.rip, CODE);
    cr_assert_eq(R.gpr[PK_RSP], 0x107008);
}

Test(emu_deliver, error_code_must_match_vector, .init = setup32)
{
    expect_unsupported(pk_deliver(&V, &R, &MEM, 3, PK_EVENT_EXCEPTION, true, 0));
}
