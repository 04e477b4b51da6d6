/* popek — the bytes of jump patches, from the Zydis encoder.
 *
 * A jump patch replaces the first five bytes of a site with `jmp rel32` to
 * its trampoline, and the rest of the instruction with INT3 (never run: the
 * trampoline jumps back past them). The trampoline, for now:
 *
 *   T:    int3                     the monitor's entry: it emulates the
 *                                  original instruction, then resumes at T+1
 *   T+1:  jmp site + len           back to the instruction after the site
 *
 * Each emitter takes a NULL buffer to report its size, so that size and
 * bytes come from the same code. */
#include "popek/trampoline.h"

#include <string.h>

static ZydisMachineMode machine_mode(unsigned bits)
{
    return bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32;
}

/* Encodes one instruction at runtime address at into buf (NULL: measure). */
static pk_status encode(ZydisEncoderRequest *req, uint64_t at, uint8_t *buf, size_t *len,
                        pk_error *err)
{
    uint8_t scratch[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZyanUSize n = sizeof scratch;
    if (ZYAN_FAILED(ZydisEncoderEncodeInstructionAbsolute(req, scratch, &n, at)))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "the encoder cannot encode %s at 0x%llx",
                       ZydisMnemonicGetString(req->mnemonic), (unsigned long long)at);
    if (buf)
        memcpy(buf, scratch, n);
    *len = n;
    return PK_OK;
}

/* A near jmp rel32 from at to target. */
static pk_status encode_jmp(unsigned bits, uint64_t at, uint64_t target, uint8_t *buf,
                            size_t *len, pk_error *err)
{
    ZydisEncoderRequest req;
    memset(&req, 0, sizeof req);
    req.machine_mode = machine_mode(bits);
    req.mnemonic = ZYDIS_MNEMONIC_JMP;
    req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
    req.branch_width = ZYDIS_BRANCH_WIDTH_32;
    req.operand_count = 1;
    req.operands[0].type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
    req.operands[0].imm.u = target;
    return encode(&req, at, buf, len, err);
}

pk_status pk_trampoline_emit(const pk_patch *p, unsigned bits, uint8_t *buf, size_t *len,
                             pk_error *err)
{
    *len = 0;
    if (bits != 32 && bits != 64)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump patches need 32- or 64-bit code");
    ZydisEncoderRequest req;
    memset(&req, 0, sizeof req);
    req.machine_mode = machine_mode(bits);
    req.mnemonic = ZYDIS_MNEMONIC_INT3;
    size_t n1, n2;
    PK_CHECK(encode(&req, p->trampoline, buf, &n1, err));
    PK_CHECK(encode_jmp(bits, p->trampoline + n1, p->site + p->len, buf ? buf + n1 : NULL, &n2,
                        err));
    *len = n1 + n2;
    return PK_OK;
}

pk_status pk_site_jump_emit(const pk_patch *p, unsigned bits, uint8_t *buf, pk_error *err)
{
    if (bits != 32 && bits != 64)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump patches need 32- or 64-bit code");
    uint8_t jmp[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t n;
    PK_CHECK(encode_jmp(bits, p->site, p->trampoline, jmp, &n, err));
    if (n > p->len)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "a %zu-byte jump does not fit a %u-byte site",
                       n, p->len);
    memcpy(buf, jmp, n);
    memset(buf + n, 0xCC, p->len - n);
    return PK_OK;
}
