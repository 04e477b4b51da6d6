/* popek — unit tests: jump patches and trampolines from the Zydis encoder,
 * checked by decoding what was emitted. */
#include <criterion/criterion.h>
#include <string.h>

#include "popek/popek.h"
#include "popek/trampoline.h"

/* Decodes one instruction at address at; returns its absolute branch target
 * (0 when it has none) and stores mnemonic and length. */
static uint64_t decode(unsigned bits, const uint8_t *b, size_t n, uint64_t at,
                       ZydisMnemonic *mn, uint8_t *len)
{
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
                     bits == 64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32);
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, b, n, &insn, ops)));
    *mn = insn.mnemonic;
    *len = insn.length;
    ZyanU64 target = 0;
    if (insn.operand_count_visible && ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
        cr_assert(ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn, &ops[0], at, &target)));
    return target;
}

static void check_jump_patch(unsigned bits, uint64_t site, uint64_t tramp)
{
    /* sgdt [disp32]: 7 bytes in 64-bit code (RIP-relative), 7 in 32-bit */
    pk_patch p = { .site = site, .len = 7, .bytes = { 0x0f, 0x01, 0x05, 1, 2, 3, 4 },
                   .cls = PK_CLASS_SGDT, .tactic = PK_TACTIC_JMP, .trampoline = tramp };
    pk_error err;
    uint8_t at_site[7];
    cr_assert_eq(pk_site_jump_emit(&p, bits, at_site, &err), PK_OK, "%s", err.msg);
    ZydisMnemonic mn;
    uint8_t len;
    cr_assert_eq(decode(bits, at_site, sizeof at_site, site, &mn, &len), tramp);
    cr_assert_eq(mn, ZYDIS_MNEMONIC_JMP);
    cr_assert_eq(len, 5);
    cr_assert_eq(at_site[5], 0xCC);
    cr_assert_eq(at_site[6], 0xCC);

    size_t size, size2;
    cr_assert_eq(pk_trampoline_emit(&p, bits, NULL, &size, &err), PK_OK, "%s", err.msg);
    uint8_t t[32];
    memset(t, 0, sizeof t);
    cr_assert_eq(pk_trampoline_emit(&p, bits, t, &size2, &err), PK_OK);
    cr_assert_eq(size, size2, "measured and emitted sizes agree");
    cr_assert_eq(t[0], 0xCC, "the trampoline enters the monitor first");
    cr_assert_eq(decode(bits, t + 1, size - 1, tramp + 1, &mn, &len), site + 7);
    cr_assert_eq(mn, ZYDIS_MNEMONIC_JMP);
    cr_assert_eq(1 + len, size);
}

Test(trampoline, jumps_there_and_back_64)
{
    check_jump_patch(64, 0x401000, 0x40a000);
    check_jump_patch(64, 0xffffffff81000160, 0xffffffff84200000); /* kernel, top 2 GiB */
    check_jump_patch(64, 0x40a000, 0x401000);                     /* backwards */
}

Test(trampoline, jumps_there_and_back_32)
{
    check_jump_patch(32, 0x8049000, 0x80a0000);
}

Test(trampoline, refuses_what_it_cannot_do)
{
    pk_patch p = { .site = 0x401000, .len = 7, .cls = PK_CLASS_SGDT, .tactic = PK_TACTIC_JMP,
                   .trampoline = 0x401000 + (1ull << 33) };
    uint8_t buf[16];
    size_t len;
    pk_error err;
    cr_assert_eq(pk_site_jump_emit(&p, 64, buf, &err), PK_ERR_UNSUPPORTED, "out of rel32 reach");
    p.trampoline = 0x402000;
    cr_assert_eq(pk_site_jump_emit(&p, 16, buf, &err), PK_ERR_UNSUPPORTED, "16-bit code");
    cr_assert_eq(pk_trampoline_emit(&p, 16, NULL, &len, &err), PK_ERR_UNSUPPORTED);
    p.len = 3;
    cr_assert_eq(pk_site_jump_emit(&p, 64, buf, &err), PK_ERR_UNSUPPORTED, "site too short");
}
