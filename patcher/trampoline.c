/* popek — the bytes of jump patches, from the Zydis encoder.
 *
 * A jump patch writes `jmp rel32` over the first bytes of a site and INT3
 * over the rest of the j->len bytes it replaces (never run: the trampoline
 * jumps back past them). Those bytes held instructions, patched sites and
 * displaced neighbours, and the trampoline runs them in order; for
 * `pushf; mov rax, [rip+d]; cli; jz L` it is
 *
 *   T:     int3               pushf: the monitor emulates it, resumes at T+1
 *   T+1:   mov rax, [rip+d']  displaced: reads the same address as before
 *   T+8:   int3               cli
 *   T+9:   jz L (rel32)       displaced: a rel8 widened to reach L from here
 *   T+15:  jmp site + len     back to the instruction after the jump
 *
 * With a vcpu page (a fast-path table), a site that has a fast path
 * (fastpath.h) is its block instead of a bare INT3; the block's way to the
 * monitor is the INT3, which its fast end jumps over:
 *
 *   T:     <block>            emulates pushf in place against the page
 *   T+B:   jmp T+B+3          (rel8)
 *   T+B+2: int3               the block's slow address: the monitor
 *                             emulates pushf, resumes at T+B+3
 *   T+B+3: ...                the next instruction
 *
 * The site's trampoline field names the INT3, as without a page, and its
 * counterpart (where code resuming at the site goes on) is T.
 *
 * In a passthrough table each site runs itself, relocated like a displaced
 * instruction, in place of its INT3. A site's trampoline field holds the
 * address of its INT3 or copy. The first instruction need not be a site:
 * the plan may start a jump at an instruction before one. Bytes after an
 * instruction that does not fall through (a RET, a JMP) are dead, since no
 * branch lands among a jump's bytes, and are not copied.
 *
 * A relative CALL may end a jump's bytes (64-bit code). Copied as a call it
 * would leave a return address inside the trampoline, where unwinders find
 * no frame information; instead the trampoline pushes the call's own
 * return address, the first byte after the jump, in the original code:
 *
 *   push rax; lea rax, [rip -> return address]; xchg [rsp], rax; jmp target
 *
 * (RIP-relative, so right wherever a PIE or library is loaded; no flags
 * change, as with CALL.)
 *
 * Every byte comes from ZydisEncoderEncodeInstructionAbsolute: it takes
 * absolute branch targets and RIP-relative addresses, computes the relative
 * fields for the address the bytes will run at, and picks a branch's width
 * when branch_type and branch_width are NONE. Each emitter takes a NULL
 * buffer to measure, so that size and bytes come from one path.
 * pk_trampoline_check does not re-run the emitter: it decodes both sides
 * and compares what each instruction does.
 *
 * Zydis 4.0 as met here: ZydisEncoderDecodedInstructionToEncoderRequest
 * wants operand_count_visible (operand_count fails); its request keeps the
 * decoded branch width (rel8 for a short jcc), which then fails to reach;
 * and it writes a 3DNow! instruction's RIP-relative displacement one byte
 * early, so every instruction is first re-encoded in place and refused if
 * it comes back different. */
#include "popek/trampoline.h"

#include <stdio.h>
#include <string.h>

#include "popek/fastpath.h"
#include "../scanner/internal/decoder.h"

/* One instruction and the address it was decoded at. */
typedef struct decoded {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    uint64_t at;
} decoded;

/* Prefixes that change what an instruction does; a segment override shows
 * in its memory operands, and branch hints change nothing. */
static const ZydisInstructionAttributes semantic_prefixes =
    ZYDIS_ATTRIB_HAS_LOCK | ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE |
    ZYDIS_ATTRIB_HAS_REPNE | ZYDIS_ATTRIB_HAS_BND | ZYDIS_ATTRIB_HAS_XACQUIRE |
    ZYDIS_ATTRIB_HAS_XRELEASE | ZYDIS_ATTRIB_HAS_NOTRACK;

static bool decoder_init(ZydisDecoder *dec, unsigned bits)
{
    return (bits == 32 || bits == 64) &&
           ZYAN_SUCCESS(ZydisDecoderInit(dec, bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64
                                                          : ZYDIS_MACHINE_MODE_LEGACY_32,
                                         bits == 64 ? ZYDIS_STACK_WIDTH_64
                                                    : ZYDIS_STACK_WIDTH_32));
}

static bool decode(const ZydisDecoder *dec, const uint8_t *b, size_t n, uint64_t at, decoded *d)
{
    d->at = at;
    return n && ZYAN_SUCCESS(ZydisDecoderDecodeFull(dec, b, n, &d->insn, d->ops));
}

/* The instruction as Zydis prints it, for messages. */
static const char *text(const decoded *d, char *buf, size_t size)
{
    ZydisFormatter f;
    if (ZYAN_FAILED(ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL)) ||
        ZYAN_FAILED(ZydisFormatterFormatInstruction(&f, &d->insn, d->ops,
                                                    d->insn.operand_count_visible, buf, size,
                                                    d->at, NULL)))
        snprintf(buf, size, "%s", ZydisMnemonicGetString(d->insn.mnemonic));
    return buf;
}

static bool is_relative_imm(const ZydisDecodedOperand *op)
{
    return op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op->imm.is_relative;
}

static bool is_rip_relative(const ZydisDecodedOperand *op)
{
    return op->type == ZYDIS_OPERAND_TYPE_MEMORY &&
           (op->mem.base == ZYDIS_REGISTER_RIP || op->mem.base == ZYDIS_REGISTER_EIP);
}

/* The address a relative branch or RIP-relative operand of d reaches. */
static bool absolute(const decoded *d, const ZydisDecodedOperand *op, uint64_t *addr)
{
    ZyanU64 a;
    if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(&d->insn, op, d->at, &a)))
        return false;
    *addr = a;
    return true;
}

/* ---- encoding ------------------------------------------------------------------ */

/* Encodes req to run at address at, into buf (NULL: measure). */
static bool encode(ZydisEncoderRequest *req, uint64_t at, uint8_t *buf, size_t *n)
{
    uint8_t scratch[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZyanUSize len = sizeof scratch;
    if (ZYAN_FAILED(ZydisEncoderEncodeInstructionAbsolute(req, scratch, &len, at)))
        return false;
    if (buf)
        memcpy(buf, scratch, len);
    *n = len;
    return true;
}

static void request_init(ZydisEncoderRequest *req, unsigned bits, ZydisMnemonic mnemonic)
{
    memset(req, 0, sizeof *req);
    req->machine_mode = bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32;
    req->mnemonic = mnemonic;
}

/* A near jmp rel32 from at to target. */
static bool encode_jmp(unsigned bits, uint64_t at, uint64_t target, uint8_t *buf, size_t *n)
{
    ZydisEncoderRequest req;
    request_init(&req, bits, ZYDIS_MNEMONIC_JMP);
    req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
    req.branch_width = ZYDIS_BRANCH_WIDTH_32;
    req.operand_count = 1;
    req.operands[0].type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
    req.operands[0].imm.u = target;
    return encode(&req, at, buf, n);
}

/* A site's block at t, the short jump over its INT3, and the INT3 (at
 * *int3): into buf (NULL: measure), *n bytes. */
static pk_status encode_fast_site(const decoded *o, unsigned bits, bool user, uint64_t page,
                                  uint64_t t, uint8_t *buf, size_t *n, uint64_t *int3,
                                  pk_error *err)
{
    size_t block;
    /* (a block's length does not depend on its slow address: rel32) */
    PK_CHECK(pk_fastpath_emit(&o->insn, o->ops, bits, user, o->at, t, page, t, NULL, &block,
                              err));
    *int3 = t + block + 2;
    if (buf) {
        PK_CHECK(pk_fastpath_emit(&o->insn, o->ops, bits, user, o->at, t, page, *int3, buf,
                                  &block, err));
        buf[block] = 0xEB; /* jmp rel8 +1 */
        buf[block + 1] = 0x01;
        buf[block + 2] = 0xCC;
    }
    *n = block + 3;
    return PK_OK;
}

/* A request that re-encodes d at any address, reaching the same addresses:
 * relative branches and RIP-relative operands carry absolute ones. */
static bool to_request(const decoded *d, ZydisEncoderRequest *req)
{
    if (ZYAN_FAILED(ZydisEncoderDecodedInstructionToEncoderRequest(
            &d->insn, d->ops, d->insn.operand_count_visible, req)))
        return false;
    for (unsigned i = 0; i < d->insn.operand_count_visible; i++) {
        uint64_t a;
        if (is_relative_imm(&d->ops[i])) {
            if (!absolute(d, &d->ops[i], &a))
                return false;
            req->operands[i].imm.u = a;
            /* the decoded width (rel8) may not reach: let the encoder choose */
            req->branch_type = ZYDIS_BRANCH_TYPE_NONE;
            req->branch_width = ZYDIS_BRANCH_WIDTH_NONE;
        } else if (is_rip_relative(&d->ops[i])) {
            if (!absolute(d, &d->ops[i], &a))
                return false;
            req->operands[i].mem.displacement = (ZyanI64)a;
        }
    }
    return true;
}

/* ---- comparing instructions ---------------------------------------------------- */

static bool same_operand(const decoded *a, const ZydisDecodedOperand *x, const decoded *b,
                         const ZydisDecodedOperand *y)
{
    uint64_t p, q;
    if (x->type != y->type)
        return false;
    switch (x->type) {
    case ZYDIS_OPERAND_TYPE_REGISTER:
        return x->reg.value == y->reg.value;
    case ZYDIS_OPERAND_TYPE_MEMORY:
        if (x->size != y->size || x->mem.type != y->mem.type ||
            x->mem.segment != y->mem.segment || x->mem.base != y->mem.base ||
            x->mem.index != y->mem.index || x->mem.scale != y->mem.scale)
            return false;
        if (is_rip_relative(x))
            return absolute(a, x, &p) && absolute(b, y, &q) && p == q;
        return x->mem.disp.value == y->mem.disp.value;
    case ZYDIS_OPERAND_TYPE_POINTER:
        return x->ptr.segment == y->ptr.segment && x->ptr.offset == y->ptr.offset;
    case ZYDIS_OPERAND_TYPE_IMMEDIATE:
        /* a relative one may change width (rel8 to rel32): compare targets */
        if (x->imm.is_relative != y->imm.is_relative)
            return false;
        if (x->imm.is_relative)
            return absolute(a, x, &p) && absolute(b, y, &q) && p == q;
        return x->imm.value.u == y->imm.value.u;
    default:
        return true;
    }
}

/* NULL when b, wherever it is, does what a does; else what differs. */
static const char *difference(const decoded *a, const decoded *b)
{
    static const char *const operand[ZYDIS_MAX_OPERAND_COUNT_VISIBLE] = {
        "operand 1", "operand 2", "operand 3", "operand 4", "operand 5",
    };
    const ZydisDecodedInstruction *x = &a->insn, *y = &b->insn;
    if (x->mnemonic != y->mnemonic)
        return "mnemonic";
    if (x->operand_width != y->operand_width || x->address_width != y->address_width)
        return "operand or address size";
    if ((x->attributes ^ y->attributes) & semantic_prefixes)
        return "prefixes";
    if (x->avx.vector_length != y->avx.vector_length || x->avx.mask.mode != y->avx.mask.mode ||
        x->avx.mask.reg != y->avx.mask.reg || x->avx.broadcast.mode != y->avx.broadcast.mode ||
        x->avx.rounding.mode != y->avx.rounding.mode || x->avx.has_sae != y->avx.has_sae)
        return "AVX features";
    if (x->operand_count_visible != y->operand_count_visible)
        return "operand count";
    for (unsigned i = 0; i < x->operand_count_visible; i++)
        if (!same_operand(a, &a->ops[i], b, &b->ops[i]))
            return operand[i];
    return NULL;
}

/* ---- a call that ends a jump ------------------------------------------------ */

static bool is_relative_call(const ZydisDecodedInstruction *insn)
{
    /* ZYDIS_ATTRIB_IS_RELATIVE is set for call *f(%rip) too: a relative
     * immediate is what makes a direct call. */
    return insn->mnemonic == ZYDIS_MNEMONIC_CALL &&
           insn->meta.branch_type == ZYDIS_BRANCH_TYPE_NEAR && insn->raw.imm[0].is_relative;
}

bool pk_call_can_end_jump(const ZydisDecodedInstruction *insn, unsigned bits)
{
    return bits == 64 && is_relative_call(insn);
}

/* The four instructions standing for the call o (see the top), at t. */
static bool encode_call(const decoded *o, uint64_t t, uint8_t *buf, size_t *len)
{
    uint64_t target, back = o->at + o->insn.length;
    if (!absolute(o, &o->ops[0], &target))
        return false;
    ZydisEncoderRequest req[4];
    request_init(&req[0], 64, ZYDIS_MNEMONIC_PUSH);
    req[0].operand_count = 1;
    req[0].operands[0] = (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_REGISTER,
                                                .reg.value = ZYDIS_REGISTER_RAX };
    request_init(&req[1], 64, ZYDIS_MNEMONIC_LEA);
    req[1].operand_count = 2;
    req[1].operands[0] = req[0].operands[0];
    req[1].operands[1] = (ZydisEncoderOperand){
        .type = ZYDIS_OPERAND_TYPE_MEMORY,
        .mem = { .base = ZYDIS_REGISTER_RIP, .displacement = (ZyanI64)back, .size = 8 } };
    request_init(&req[2], 64, ZYDIS_MNEMONIC_XCHG);
    req[2].operand_count = 2;
    req[2].operands[0] = (ZydisEncoderOperand){
        .type = ZYDIS_OPERAND_TYPE_MEMORY, .mem = { .base = ZYDIS_REGISTER_RSP, .size = 8 } };
    req[2].operands[1] = req[0].operands[0];
    size_t n = 0, k;
    for (unsigned i = 0; i < 3; i++) {
        if (!encode(&req[i], t + n, buf ? buf + n : NULL, &k))
            return false;
        n += k;
    }
    if (!encode_jmp(64, t + n, target, buf ? buf + n : NULL, &k))
        return false;
    *len = n + k;
    return true;
}

/* Whether the trampoline bytes at t (n of them) are encode_call's for o;
 * *len gets their size. */
static bool is_call_counterpart(const ZydisDecoder *dec, const decoded *o, const uint8_t *b,
                                size_t n, uint64_t t, size_t *len)
{
    uint64_t target, back = o->at + o->insn.length, a;
    decoded d[4];
    size_t off = 0;
    for (unsigned i = 0; i < 4; off += d[i].insn.length, i++)
        if (off >= n || !decode(dec, b + off, n - off, t + off, &d[i]))
            return false;
    const ZydisDecodedOperand *xm = &d[2].ops[0], *xr = &d[2].ops[1];
    if (xm->type != ZYDIS_OPERAND_TYPE_MEMORY)
        xm = &d[2].ops[1], xr = &d[2].ops[0];
    *len = off;
    return absolute(o, &o->ops[0], &target) &&
           d[0].insn.mnemonic == ZYDIS_MNEMONIC_PUSH &&
           d[0].ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
           d[0].ops[0].reg.value == ZYDIS_REGISTER_RAX &&
           d[1].insn.mnemonic == ZYDIS_MNEMONIC_LEA &&
           d[1].ops[0].reg.value == ZYDIS_REGISTER_RAX && is_rip_relative(&d[1].ops[1]) &&
           absolute(&d[1], &d[1].ops[1], &a) && a == back &&
           d[2].insn.mnemonic == ZYDIS_MNEMONIC_XCHG && d[2].insn.operand_width == 64 &&
           xm->type == ZYDIS_OPERAND_TYPE_MEMORY && xm->mem.base == ZYDIS_REGISTER_RSP &&
           xm->mem.segment == ZYDIS_REGISTER_SS &&
           xm->mem.index == ZYDIS_REGISTER_NONE && !xm->mem.disp.has_displacement &&
           xr->type == ZYDIS_OPERAND_TYPE_REGISTER && xr->reg.value == ZYDIS_REGISTER_RAX &&
           d[3].insn.mnemonic == ZYDIS_MNEMONIC_JMP && is_relative_imm(&d[3].ops[0]) &&
           absolute(&d[3], &d[3].ops[0], &a) && a == target;
}

/* ---- relocatable instructions -------------------------------------------------- */

/* A RIP-relative memory operand, seen from the instruction alone. */
static bool has_rip_relative(const ZydisDecodedInstruction *insn)
{
    return insn->machine_mode == ZYDIS_MACHINE_MODE_LONG_64 &&
           (insn->attributes & ZYDIS_ATTRIB_HAS_MODRM) && insn->raw.modrm.mod == 0 &&
           insn->raw.modrm.rm == 5;
}

bool pk_relocatable(const ZydisDecodedInstruction *insn, uint64_t addr, unsigned bits,
                    const char **why)
{
    (void)addr; /* the form alone decides: targets are re-encoded absolutely */
    if (bits != 32 && bits != 64) {
        *why = "jump patches need 32- or 64-bit code";
        return false;
    }
    switch (insn->mnemonic) {
    case ZYDIS_MNEMONIC_LOOP:
    case ZYDIS_MNEMONIC_LOOPE:
    case ZYDIS_MNEMONIC_LOOPNE:
    case ZYDIS_MNEMONIC_JCXZ:
    case ZYDIS_MNEMONIC_JECXZ:
    case ZYDIS_MNEMONIC_JRCXZ:
        *why = "it has only a rel8 form, which cannot reach back from a trampoline";
        return false;
    case ZYDIS_MNEMONIC_XBEGIN:
        /* the encoder would move its rel32 fallback; policy, not necessity */
        *why = "transactions are not moved (TSX: rare, mostly disabled, untested here)";
        return false;
    case ZYDIS_MNEMONIC_CALL:
        *why = "it would push a return address inside the trampoline, where no unwinder "
               "finds it";
        return false;
    case ZYDIS_MNEMONIC_SYSENTER:
        *why = "the kernel returns to a fixed address, not to the next instruction";
        return false;
    case ZYDIS_MNEMONIC_INT3:
    case ZYDIS_MNEMONIC_INT1:
    case ZYDIS_MNEMONIC_UD0:
    case ZYDIS_MNEMONIC_UD1:
    case ZYDIS_MNEMONIC_UD2:
        *why = "a trap handler knows it by its address (breakpoints, BUG tables)";
        return false;
    default:
        break;
    }
    if (has_rip_relative(insn) && insn->address_width == 32) {
        *why = "a 32-bit RIP-relative address wraps at 4 GiB";
        return false;
    }
    if ((insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE) && !has_rip_relative(insn) &&
        insn->operand_width == 16) {
        *why = "a 16-bit branch truncates its target to 16 bits";
        return false;
    }
    return true;
}

/* Whether the Zydis encoder reproduces o when re-encoding it in place:
 * what it cannot reproduce there it cannot move either. */
static bool round_trips(const ZydisDecoder *dec, const decoded *o, const char **why)
{
    ZydisEncoderRequest req;
    uint8_t b[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t n;
    decoded back;
    if (!to_request(o, &req) || !encode(&req, o->at, b, &n)) {
        *why = "the Zydis encoder cannot re-encode it";
        return false;
    }
    if (!decode(dec, b, n, o->at, &back) || difference(o, &back)) {
        *why = "the Zydis encoder changes it when re-encoding";
        return false;
    }
    return true;
}

/* ---- walking a jump's instructions --------------------------------------------- */

static pk_status jump_start(const pk_jump *j, size_t nsites, unsigned bits, ZydisDecoder *dec,
                            pk_status status, pk_error *err)
{
    if (!nsites)
        return pk_fail(err, status, "jump at 0x%llx: no site among its instructions",
                       (unsigned long long)j->site);
    if (!decoder_init(dec, bits))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: jump patches need 32- or "
                       "64-bit code", (unsigned long long)j->site);
    if (j->len < 5 || j->len > PK_JUMP_MAX_LEN)
        return pk_fail(err, status, "jump at 0x%llx: replaces %u bytes, not 5..%d",
                       (unsigned long long)j->site, j->len, PK_JUMP_MAX_LEN);
    return PK_OK;
}

/* The original instruction at offset off of j, which must end within j. */
static pk_status original(const ZydisDecoder *dec, const pk_jump *j, unsigned off, decoded *o,
                          pk_status status, pk_error *err)
{
    if (!decode(dec, j->bytes + off, j->len - off, j->site + off, o))
        return pk_fail(err, status, "jump at 0x%llx: its bytes at 0x%llx are no instruction "
                       "ending by 0x%llx", (unsigned long long)j->site,
                       (unsigned long long)(j->site + off), (unsigned long long)(j->site + j->len));
    return PK_OK;
}

/* Whether o is the next site, sites[*k] (then *k moves past it). A site must
 * be one of j's instructions. */
static pk_status next_site(const pk_jump *j, const pk_patch *sites, size_t nsites, size_t *k,
                           const decoded *o, bool *is_site, pk_status status, pk_error *err)
{
    *is_site = *k < nsites && sites[*k].site < o->at + o->insn.length;
    if (!*is_site)
        return PK_OK;
    const pk_patch *s = &sites[*k];
    if (s->site != o->at || s->len != o->insn.length ||
        memcmp(s->bytes, j->bytes + (o->at - j->site), s->len))
        return pk_fail(err, status, "jump at 0x%llx: site at 0x%llx is not its instruction "
                       "at 0x%llx", (unsigned long long)j->site, (unsigned long long)s->site,
                       (unsigned long long)o->at);
    ++*k;
    return PK_OK;
}

static pk_status sites_left(const pk_jump *j, const pk_patch *sites, size_t nsites, size_t k,
                            pk_status status, pk_error *err)
{
    if (k < nsites)
        return pk_fail(err, status, "jump at 0x%llx: site at 0x%llx is not one of its "
                       "instructions", (unsigned long long)j->site,
                       (unsigned long long)sites[k].site);
    return PK_OK;
}

/* Whether o branches past the jmp into j's bytes, which are INT3 now. */
static bool branches_into(const pk_jump *j, const decoded *o)
{
    uint64_t a;
    return o->insn.operand_count_visible && is_relative_imm(&o->ops[0]) &&
           absolute(o, &o->ops[0], &a) && a > j->site && a < j->site + j->len;
}

/* ---- emitting ------------------------------------------------------------------ */

/* Encodes o to run at t, reaching what it reached from its own address. */
static pk_status relocate(const ZydisDecoder *dec, const pk_jump *j, const decoded *o,
                          unsigned bits, uint64_t t, uint8_t *buf, size_t *n, pk_error *err)
{
    char s[128];
    const char *why;
    if (!pk_relocatable(&o->insn, o->at, bits, &why) || !round_trips(dec, o, &why))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: cannot move %s at 0x%llx: %s",
                       (unsigned long long)j->site, text(o, s, sizeof s),
                       (unsigned long long)o->at, why);
    if (branches_into(j, o))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: cannot move %s at 0x%llx: "
                       "it branches into the jump", (unsigned long long)j->site,
                       text(o, s, sizeof s), (unsigned long long)o->at);
    ZydisEncoderRequest req;
    if (!to_request(o, &req) || !encode(&req, t, buf, n))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: %s at 0x%llx cannot reach its "
                       "target from the trampoline at 0x%llx", (unsigned long long)j->site,
                       text(o, s, sizeof s), (unsigned long long)o->at, (unsigned long long)t);
    return PK_OK;
}

pk_status pk_trampoline_emit(const pk_jump *j, pk_patch *sites, size_t nsites, unsigned bits,
                             unsigned flags, uint64_t page, uint8_t *buf, size_t *len,
                             pk_error *err)
{
    bool passthrough = flags & PK_TABLE_PASSTHROUGH, user = flags & PK_TABLE_USER;
    *len = 0;
    ZydisDecoder dec;
    PK_CHECK(jump_start(j, nsites, bits, &dec, PK_ERR_USAGE, err));
    uint64_t t = j->trampoline;
    size_t k = 0, n = 0;
    for (unsigned off = 0; off < j->len;) {
        decoded o;
        bool is_site;
        uint8_t *out = buf ? buf + (t - j->trampoline) : NULL;
        PK_CHECK(original(&dec, j, off, &o, PK_ERR_USAGE, err));
        PK_CHECK(next_site(j, sites, nsites, &k, &o, &is_site, PK_ERR_USAGE, err));
        if (is_site)
            sites[k - 1].trampoline = t;
        if (is_site && !passthrough && page && pk_fastpath_has(&o.insn, o.ops, bits, user)) {
            PK_CHECK(encode_fast_site(&o, bits, user, page, t, out, &n,
                                      &sites[k - 1].trampoline, err));
        } else if (is_site && !passthrough) {
            ZydisEncoderRequest req;
            request_init(&req, bits, ZYDIS_MNEMONIC_INT3);
            if (!encode(&req, t, out, &n))
                return pk_fail(err, PK_ERR_INTERNAL, "the Zydis encoder refuses int3");
        } else if (!is_site && pk_call_can_end_jump(&o.insn, bits) &&
                   off + o.insn.length == j->len) {
            if (!encode_call(&o, t, out, &n))
                return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: the call at 0x%llx "
                               "cannot reach its target from 0x%llx",
                               (unsigned long long)j->site, (unsigned long long)o.at,
                               (unsigned long long)t);
        } else {
            PK_CHECK(relocate(&dec, j, &o, bits, t, out, &n, err));
        }
        t += n;
        off += o.insn.length;
        if (pk_insn_ends_path(&o.insn))
            break; /* the rest is dead */
    }
    PK_CHECK(sites_left(j, sites, nsites, k, PK_ERR_USAGE, err));
    if (!encode_jmp(bits, t, j->site + j->len, buf ? buf + (t - j->trampoline) : NULL, &n))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: its trampoline cannot jump "
                       "back from 0x%llx to 0x%llx (beyond rel32 reach)",
                       (unsigned long long)j->site, (unsigned long long)t,
                       (unsigned long long)(j->site + j->len));
    *len = t + n - j->trampoline;
    return PK_OK;
}

pk_status pk_jump_emit(const pk_jump *j, unsigned bits, uint8_t *buf, pk_error *err)
{
    if (bits != 32 && bits != 64)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: jump patches need 32- or "
                       "64-bit code", (unsigned long long)j->site);
    uint8_t jmp[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t n;
    if (!encode_jmp(bits, j->site, j->trampoline, jmp, &n))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: its trampoline at 0x%llx is "
                       "beyond rel32 reach", (unsigned long long)j->site,
                       (unsigned long long)j->trampoline);
    if (n > j->len)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "jump at 0x%llx: a %zu-byte jmp does not fit "
                       "in %u bytes", (unsigned long long)j->site, n, j->len);
    memcpy(buf, jmp, n);
    memset(buf + n, 0xCC, j->len - n); /* int3: never run, the trampoline jumps past */
    return PK_OK;
}

/* ---- checking ------------------------------------------------------------------ */

/* Whether the have_len bytes at t hold the block encode_fast_site makes for
 * site o (instruction i of j), and int3, the site's trampoline field, names
 * its INT3: *n, the bytes they take. */
static pk_status check_fast_site(const pk_jump *j, const decoded *o, size_t i, unsigned bits,
                                 bool user, uint64_t page, const uint8_t *have,
                                 size_t have_len, uint64_t t, uint64_t int3, size_t *n,
                                 pk_error *err)
{
    char s[128];
    uint8_t want[512];
    uint64_t at;
    pk_error why;
    if (encode_fast_site(o, bits, user, page, t, NULL, n, &at, &why) != PK_OK ||
        *n > sizeof want ||
        encode_fast_site(o, bits, user, page, t, want, n, &at, &why) != PK_OK)
        return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: instruction %zu (site %s at "
                       "0x%llx) has no fast path with the vcpu page at 0x%llx: %s",
                       (unsigned long long)j->site, i, text(o, s, sizeof s),
                       (unsigned long long)o->at, (unsigned long long)page, why.msg);
    if (*n > have_len || memcmp(want, have, *n) != 0)
        return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: instruction %zu (site %s at "
                       "0x%llx) does not have its fast-path block at 0x%llx",
                       (unsigned long long)j->site, i, text(o, s, sizeof s),
                       (unsigned long long)o->at, (unsigned long long)t);
    if (int3 != at)
        return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: site at 0x%llx names 0x%llx as its "
                       "trampoline, but its block's INT3 is at 0x%llx",
                       (unsigned long long)j->site, (unsigned long long)o->at,
                       (unsigned long long)int3, (unsigned long long)at);
    return PK_OK;
}

pk_status pk_trampoline_check(const pk_jump *j, const pk_patch *sites, size_t nsites,
                              unsigned bits, unsigned flags, uint64_t page,
                              const uint8_t *tramp, size_t tramp_len, uint64_t *counterparts,
                              pk_error *err)
{
    bool passthrough = flags & PK_TABLE_PASSTHROUGH, user = flags & PK_TABLE_USER;
    ZydisDecoder dec;
    PK_CHECK(jump_start(j, nsites, bits, &dec, PK_ERR_FORMAT, err));
    if (counterparts)
        memset(counterparts, 0, j->len * sizeof *counterparts);
    char s[128], c[128];
    const unsigned long long site = j->site, back = j->site + j->len;
    size_t k = 0, toff = 0, i = 0;
    decoded o, copy;
    bool dead = false;
    for (unsigned off = 0; off < j->len && !dead;
         off += o.insn.length, toff += copy.insn.length, i++) {
        bool is_site;
        uint64_t t = j->trampoline + toff;
        PK_CHECK(original(&dec, j, off, &o, PK_ERR_FORMAT, err));
        PK_CHECK(next_site(j, sites, nsites, &k, &o, &is_site, PK_ERR_FORMAT, err));
        dead = pk_insn_ends_path(&o.insn);
        if (counterparts)
            counterparts[off] = t;
        size_t n;
        if (!is_site && pk_call_can_end_jump(&o.insn, bits) && off + o.insn.length == j->len) {
            if (!is_call_counterpart(&dec, &o, tramp + toff, tramp_len - toff, t, &n))
                return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: instruction %zu (%s at "
                               "0x%llx) has no push of its return address and jump to its "
                               "target at 0x%llx", site, i, text(&o, s, sizeof s),
                               (unsigned long long)o.at, (unsigned long long)t);
            copy.insn.length = (ZyanU8)n;
            continue;
        }
        if (is_site && !passthrough && page && pk_fastpath_has(&o.insn, o.ops, bits, user)) {
            PK_CHECK(check_fast_site(j, &o, i, bits, user, page, tramp + toff, tramp_len - toff,
                                     t, sites[k - 1].trampoline, &n, err));
            copy.insn.length = (ZyanU8)n;
            continue;
        }
        if (!decode(&dec, tramp + toff, tramp_len - toff, t, &copy))
            return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: no instruction at 0x%llx in "
                           "the trampoline for instruction %zu (%s at 0x%llx)", site,
                           (unsigned long long)t, i, text(&o, s, sizeof s),
                           (unsigned long long)o.at);
        if (is_site && sites[k - 1].trampoline != t)
            return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: site at 0x%llx names 0x%llx as "
                           "its trampoline, but instruction %zu's counterpart is at 0x%llx",
                           site, (unsigned long long)o.at,
                           (unsigned long long)sites[k - 1].trampoline, i,
                           (unsigned long long)t);
        if (is_site && !passthrough) {
            if (copy.insn.mnemonic != ZYDIS_MNEMONIC_INT3)
                return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: instruction %zu (site %s "
                               "at 0x%llx) has %s at 0x%llx in the trampoline, not int3", site,
                               i, text(&o, s, sizeof s), (unsigned long long)o.at,
                               text(&copy, c, sizeof c), (unsigned long long)t);
            continue;
        }
        if (branches_into(j, &copy))
            return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: instruction %zu (%s at 0x%llx) "
                           "branches into the jump's INT3 fill", site, i,
                           text(&o, s, sizeof s), (unsigned long long)o.at);
        const char *what = difference(&o, &copy);
        if (what)
            return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: instruction %zu (%s at 0x%llx) "
                           "and its copy (%s at 0x%llx) differ in %s", site, i,
                           text(&o, s, sizeof s), (unsigned long long)o.at,
                           text(&copy, c, sizeof c), (unsigned long long)t, what);
    }
    PK_CHECK(sites_left(j, sites, nsites, k, PK_ERR_FORMAT, err));
    uint64_t t = j->trampoline + toff, target;
    if (!decode(&dec, tramp + toff, tramp_len - toff, t, &copy) ||
        copy.insn.mnemonic != ZYDIS_MNEMONIC_JMP || !is_relative_imm(&copy.ops[0]) ||
        !absolute(&copy, &copy.ops[0], &target) || target != back)
        return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: its trampoline does not jump back "
                       "to 0x%llx at 0x%llx, after instruction %zu", site, back,
                       (unsigned long long)t, i - 1);
    if (toff + copy.insn.length != tramp_len)
        return pk_fail(err, PK_ERR_FORMAT, "jump at 0x%llx: %zu bytes follow its trampoline's "
                       "jump back at 0x%llx", site, tramp_len - toff - copy.insn.length,
                       (unsigned long long)t);
    return PK_OK;
}
