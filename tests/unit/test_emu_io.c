/* popek — emulation tests: IN/OUT/INS/OUTS, the I/O permission checks,
 * REP chunking and the completion of IN/INS. Rules from SDM vol. 1 §19.5
 * (I/O privilege, the TSS bitmap) and vol. 2 (IN, OUT, INS, OUTS, REP). */
#include "emu_fixture.h"

static pk_emu_result complete_in(const void *data, uint8_t size, uint32_t count, uint16_t port)
{
    static pk_io io;
    memset(&io, 0, sizeof io);
    io.port = port;
    io.size = size;
    io.in = true;
    io.count = count;
    memcpy(io.data, data, (size_t)size * count);
    return pk_emulate_io_in(&I, OPS, &V, &R, &MEM, &io);
}

Test(emu_out, dx_al, .init = setup32)
{
    R.gpr[PK_RDX] = 0x3F8;
    R.gpr[PK_RAX] = 0x41;
    pk_emu_result r = EMU(0xEE); /* out dx, al */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert_eq(r.io.port, 0x3F8);
    cr_assert_eq(r.io.size, 1);
    cr_assert_not(r.io.in);
    cr_assert_eq(r.io.count, 1);
    cr_assert_eq(r.io.data[0], 0x41);
    cr_assert_eq(R.rip, CODE + 1); /* OUT is complete */
    cr_assert_str_eq(r.effect, "port 0x3f8 <- 0x41");
}

Test(emu_out, imm8_eax_and_o16, .init = setup32)
{
    R.gpr[PK_RAX] = 0x11223344;
    pk_emu_result r = EMU(0xE7, 0xF4); /* out 0xf4, eax */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert_eq(r.io.port, 0xF4);
    cr_assert_eq(r.io.size, 4);
    cr_assert_eq(r.io.data[0], 0x44);
    cr_assert_eq(r.io.data[3], 0x11);
    R.gpr[PK_RDX] = 0x40;
    r = EMU(0x66, 0xEF); /* out dx, ax */
    cr_assert_eq(r.io.size, 2);
    cr_assert_eq(r.io.port, 0x40);
}

Test(emu_in, al_merges_into_rax, .init = setup32)
{
    R.gpr[PK_RDX] = 0x60;
    R.gpr[PK_RAX] = 0xAABBCCDD;
    pk_emu_result r = EMU(0xEC); /* in al, dx */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert(r.io.in);
    cr_assert_eq(R.rip, CODE); /* not complete yet */
    r = complete_in((uint8_t[]){ 0x1C }, 1, 1, 0x60);
    expect_done(r);
    cr_assert_eq(R.gpr[PK_RAX], 0xAABBCC1C);
    cr_assert_eq(R.rip, CODE + 1);
}

Test(emu_in, eax_zero_extends_in_64bit, .init = setup64)
{
    R.gpr[PK_RAX] = ~0ull;
    pk_emu_result r = EMU(0xE5, 0x71); /* in eax, 0x71 */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert_eq(r.io.port, 0x71);
    r = complete_in((uint32_t[]){ 0x12345678 }, 4, 1, 0x71);
    expect_done(r);
    cr_assert_eq(R.gpr[PK_RAX], 0x12345678);
}

Test(emu_in, mismatched_completion_is_unsupported, .init = setup32)
{
    R.gpr[PK_RDX] = 0x60;
    EMU(0xEC);
    expect_unsupported(complete_in((uint16_t[]){ 1 }, 2, 1, 0x60));
    cr_assert_eq(R.rip, CODE);
}

/* ---- privilege ----------------------------------------------------------------- */

Test(emu_io_priv, cpl3_iopl0_without_tss_is_gp, .init = setup32)
{
    enter_ring3();
    R.gpr[PK_RDX] = 0x3F8;
    expect_fault(EMU(0xEE), PK_VEC_GP, 0);
    cr_assert_eq(R.rip, CODE);
}

Test(emu_io_priv, cpl3_iopl3_is_allowed, .init = setup32)
{
    enter_ring3();
    V.vflags = 0x3000;
    R.gpr[PK_RDX] = 0x3F8;
    cr_assert_eq(EMU(0xEE).status, PK_EMU_IO);
}

Test(emu_io_priv, tss_bitmap, .init = setup32)
{
    R.gpr[PK_RAX] = SEL_TSS;
    expect_done(EMU(0x0F, 0x00, 0xD8)); /* ltr ax at CPL 0 */
    wr(TSS + 0x66, 0x68, 2);            /* the bitmap right after the TSS */
    /* port 0x3F8 is bit 0 of byte 0x3F8/8 = 0x7F; deny 0x3F9 (bit 1) */
    wr(TSS + 0x68 + 0x7F, 0x02, 1);
    enter_ring3();
    R.gpr[PK_RDX] = 0x3F8;
    cr_assert_eq(EMU(0xEE).status, PK_EMU_IO);          /* 0x3F8: allowed */
    expect_fault(EMU(0x66, 0xEF), PK_VEC_GP, 0);        /* 0x3F8-0x3F9 */
    R.gpr[PK_RDX] = 0x3F9;
    expect_fault(EMU(0xEE), PK_VEC_GP, 0);
    /* port 0xFFFF: its byte is the last in the limit (0x68 + 0x1FFF =
     * 0x2067), but the CPU reads two bytes, and the second is past it */
    R.gpr[PK_RDX] = 0xFFFF;
    expect_fault(EMU(0xEE), PK_VEC_GP, 0);
}

/* ---- OUTS, INS ------------------------------------------------------------------- */

Test(emu_outs, rep_outsb, .init = setup32)
{
    memcpy(at(DATA), "hello", 5);
    R.gpr[PK_RSI] = DATA;
    R.gpr[PK_RCX] = 5;
    R.gpr[PK_RDX] = 0x3F8;
    pk_emu_result r = EMU(0xF3, 0x6E); /* rep outsb */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert_eq(r.io.count, 5);
    cr_assert_eq(memcmp(r.io.data, "hello", 5), 0);
    cr_assert_eq(R.gpr[PK_RSI], DATA + 5);
    cr_assert_eq(R.gpr[PK_RCX], 0);
    cr_assert_eq(R.rip, CODE + 2);
}

Test(emu_outs, df_walks_down, .init = setup32)
{
    memcpy(at(DATA), "ab", 2);
    R.rflags |= PK_FLAG_DF;
    R.gpr[PK_RSI] = DATA + 1;
    R.gpr[PK_RCX] = 2;
    pk_emu_result r = EMU(0xF3, 0x6E);
    cr_assert_eq(r.io.count, 2);
    cr_assert_eq(r.io.data[0], 'b');
    cr_assert_eq(r.io.data[1], 'a');
    cr_assert_eq(R.gpr[PK_RSI], DATA - 1);
}

Test(emu_outs, rep_chunks_at_io_max_data, .init = setup32)
{
    for (unsigned i = 0; i < 2000; i++)
        wr(DATA + 4 * i, i, 4);
    R.gpr[PK_RSI] = DATA;
    R.gpr[PK_RCX] = 2000; /* 8000 bytes: more than one exit carries */
    pk_emu_result r = EMU(0xF3, 0x6F); /* rep outsd */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert_eq(r.io.count, PK_IO_MAX_DATA / 4);
    cr_assert_eq(R.gpr[PK_RCX], 2000 - PK_IO_MAX_DATA / 4);
    cr_assert_eq(R.gpr[PK_RSI], DATA + PK_IO_MAX_DATA);
    cr_assert_eq(R.rip, CODE); /* runs again for the rest */
    r = EMU(0xF3, 0x6F);
    cr_assert_eq(r.io.count, 2000 - PK_IO_MAX_DATA / 4);
    uint32_t first;
    memcpy(&first, r.io.data, 4);
    cr_assert_eq(first, PK_IO_MAX_DATA / 4);
    cr_assert_eq(R.gpr[PK_RCX], 0);
    cr_assert_eq(R.rip, CODE + 2);
}

Test(emu_outs, rep_with_zero_count, .init = setup32)
{
    R.gpr[PK_RCX] = 0;
    expect_done(EMU(0xF3, 0x6E));
    cr_assert_eq(R.rip, CODE + 2);
}

Test(emu_outs, outside_memory, .init = setup32)
{
    R.gpr[PK_RSI] = OUTSIDE;
    pk_emu_result r = EMU(0x6E);
    expect_fault(r, PK_VEC_PF, 0);
    cr_assert_eq(r.fault.address, OUTSIDE);
    /* the last two bytes of memory, then the end: a chunk of 2 */
    R.gpr[PK_RSI] = MEM_BASE + MEM_SIZE - 2;
    R.gpr[PK_RCX] = 5;
    r = EMU(0xF3, 0x6E);
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert_eq(r.io.count, 2);
    cr_assert_eq(R.gpr[PK_RCX], 3);
    cr_assert_eq(R.rip, CODE);
}

Test(emu_outs, address_size_16, .init = setup32)
{
    /* a32 -> a16: SI = 0x5000, so the source is 0x5000, outside memory */
    R.gpr[PK_RSI] = DATA;
    pk_emu_result r = EMU(0x67, 0x6E);
    expect_fault(r, PK_VEC_PF, 0);
    cr_assert_eq(r.fault.address, DATA & 0xFFFF);
}

Test(emu_ins, rep_insw_then_complete, .init = setup32)
{
    R.gpr[PK_RDI] = DATA;
    R.gpr[PK_RCX] = 3;
    R.gpr[PK_RDX] = 0x1F0;
    pk_emu_result r = EMU(0xF3, 0x66, 0x6D); /* rep insw */
    cr_assert_eq(r.status, PK_EMU_IO);
    cr_assert(r.io.in);
    cr_assert_eq(r.io.size, 2);
    cr_assert_eq(r.io.count, 3);
    cr_assert_eq(R.gpr[PK_RDI], DATA); /* nothing moves before the data */
    r = complete_in((uint16_t[]){ 0x1111, 0x2222, 0x3333 }, 2, 3, 0x1F0);
    expect_done(r);
    cr_assert_eq(rd(DATA, 2), 0x1111);
    cr_assert_eq(rd(DATA + 4, 2), 0x3333);
    cr_assert_eq(R.gpr[PK_RDI], DATA + 6);
    cr_assert_eq(R.gpr[PK_RCX], 0);
    cr_assert_eq(R.rip, CODE + 3);
}

Test(emu_ins, destination_outside_faults_before_io, .init = setup64)
{
    R.gpr[PK_RDI] = OUTSIDE;
    expect_fault(EMU(0x6C), PK_VEC_PF, 0); /* insb */
}
