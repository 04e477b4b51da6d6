/* popek — what every emulation reads and writes: results, guest memory,
 * general registers, operands and the stack.
 *
 * Addresses: the guest model is flat (DESIGN.md), so segment bases are not
 * added, except FS and GS in 64-bit mode, whose bases are the real
 * regs->fs_base/gs_base the guest's own code uses. Segment limits are not
 * enforced. Effective addresses come from ZydisCalcAbsoluteAddressEx, fed
 * with a register context built from pk_regs; it truncates to the address
 * size. */
#include "internal/emu.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- results ---------------------------------------------------------------- */

pk_emu_status pk_emu_fault(pk_emu *e, uint8_t vector, bool has_error_code,
                           uint32_t error_code)
{
    e->res.status = PK_EMU_FAULT;
    e->res.fault.vector = vector;
    e->res.fault.has_error_code = has_error_code;
    e->res.fault.error_code = has_error_code ? error_code : 0;
    return PK_EMU_FAULT;
}

pk_emu_status pk_emu_gp(pk_emu *e, uint32_t error_code)
{
    return pk_emu_fault(e, PK_VEC_GP, true, error_code);
}

pk_emu_status pk_emu_ud(pk_emu *e)
{
    return pk_emu_fault(e, PK_VEC_UD, false, 0);
}

pk_emu_status pk_emu_unsupported(pk_emu *e, const char *why)
{
    e->res.status = PK_EMU_UNSUPPORTED;
    snprintf(e->res.effect, sizeof e->res.effect, "%s", why);
    return PK_EMU_UNSUPPORTED;
}

pk_emu_status pk_emu_effect(pk_emu *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->res.effect, sizeof e->res.effect, fmt, ap);
    va_end(ap);
    return PK_EMU_DONE;
}

/* ---- guest memory ------------------------------------------------------------- */

bool pk_emu_canonical(uint64_t addr)
{
    return (uint64_t)((int64_t)(addr << 16) >> 16) == addr;
}

/* #PF error code (SDM vol. 3A §4.7): P=0 (nothing is mapped there), W/R,
 * U/S for an access the guest makes at CPL 3 (not for implicit table
 * reads, which are supervisor accesses). */
static pk_emu_status mem_fault(pk_emu *e, uint64_t addr, unsigned acc)
{
    if (e->vcpu.bits == 64 && !pk_emu_canonical(addr))
        return pk_emu_fault(e, acc & PK_ACC_STACK ? PK_VEC_SS : PK_VEC_GP, true, 0);
    uint32_t ec = (acc & PK_ACC_WRITE ? 2 : 0) |
                  (!(acc & PK_ACC_SYS) && e->vcpu.cpl == 3 ? 4 : 0);
    e->res.fault.address = addr;
    return pk_emu_fault(e, PK_VEC_PF, true, ec);
}

pk_emu_status pk_emu_read(pk_emu *e, uint64_t addr, void *buf, size_t n, unsigned acc)
{
    if (e->vcpu.bits == 64 && (!pk_emu_canonical(addr) || !pk_emu_canonical(addr + n - 1)))
        return mem_fault(e, addr, acc);
    if (!e->mem->read(e->mem->ctx, addr, buf, n))
        return mem_fault(e, addr, acc);
    return PK_EMU_DONE;
}

pk_emu_status pk_emu_write(pk_emu *e, uint64_t addr, const void *buf, size_t n,
                           unsigned acc)
{
    acc |= PK_ACC_WRITE;
    if (e->vcpu.bits == 64 && (!pk_emu_canonical(addr) || !pk_emu_canonical(addr + n - 1)))
        return mem_fault(e, addr, acc);
    if (!e->mem->write(e->mem->ctx, addr, buf, n))
        return mem_fault(e, addr, acc);
    return PK_EMU_DONE;
}

/* ---- general registers ------------------------------------------------------- */

static uint64_t width_mask(unsigned bits)
{
    return bits >= 64 ? ~0ull : (1ull << bits) - 1;
}

uint64_t pk_emu_gpr_get(const pk_emu *e, unsigned gpr, unsigned bits)
{
    return e->regs.gpr[gpr] & width_mask(bits);
}

void pk_emu_gpr_set(pk_emu *e, unsigned gpr, unsigned bits, uint64_t value)
{
    uint64_t *r = &e->regs.gpr[gpr];
    if (bits >= 32) /* a 32-bit write clears bits 63:32 (SDM vol. 1 §3.4.1.1) */
        *r = value & width_mask(bits);
    else
        *r = (*r & ~width_mask(bits)) | (value & width_mask(bits));
}

/* Zydis numbers GPR8 as AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8B..R15B. */
static void gpr8_locate(ZydisRegister reg, unsigned *gpr, unsigned *shift)
{
    int id = ZydisRegisterGetId(reg);
    *shift = id >= 4 && id < 8 ? 8 : 0;
    *gpr = id < 4 ? (unsigned)id : (unsigned)id - 4; /* AH..BH: 0..3; SPL..: 4.. */
}

static unsigned reg_bits(ZydisRegister reg)
{
    switch (ZydisRegisterGetClass(reg)) {
    case ZYDIS_REGCLASS_GPR8: return 8;
    case ZYDIS_REGCLASS_GPR16: return 16;
    case ZYDIS_REGCLASS_GPR32: return 32;
    default: return 64;
    }
}

uint64_t pk_emu_reg_get(const pk_emu *e, ZydisRegister reg)
{
    if (ZydisRegisterGetClass(reg) == ZYDIS_REGCLASS_GPR8) {
        unsigned gpr, shift;
        gpr8_locate(reg, &gpr, &shift);
        return (e->regs.gpr[gpr] >> shift) & 0xFF;
    }
    return pk_emu_gpr_get(e, (unsigned)ZydisRegisterGetId(reg), reg_bits(reg));
}

void pk_emu_reg_set(pk_emu *e, ZydisRegister reg, uint64_t value)
{
    if (ZydisRegisterGetClass(reg) == ZYDIS_REGCLASS_GPR8) {
        unsigned gpr, shift;
        gpr8_locate(reg, &gpr, &shift);
        e->regs.gpr[gpr] = (e->regs.gpr[gpr] & ~(0xFFull << shift)) |
                           ((value & 0xFF) << shift);
        return;
    }
    pk_emu_gpr_set(e, (unsigned)ZydisRegisterGetId(reg), reg_bits(reg), value);
}

/* ---- operands ------------------------------------------------------------------ */

static void register_context(const pk_emu *e, ZydisRegisterContext *ctx)
{
    static const ZydisRegisterClass classes[] = {
        ZYDIS_REGCLASS_GPR16, ZYDIS_REGCLASS_GPR32, ZYDIS_REGCLASS_GPR64,
    };
    memset(ctx, 0, sizeof *ctx);
    for (unsigned c = 0; c < sizeof classes / sizeof classes[0]; c++)
        for (unsigned i = 0; i < PK_GPR_COUNT; i++) {
            ZydisRegister r = ZydisRegisterEncode(classes[c], (ZyanU8)i);
            if (r != ZYDIS_REGISTER_NONE)
                ctx->values[r] = pk_emu_reg_get(e, r);
        }
}

pk_emu_status pk_emu_op_addr(pk_emu *e, const ZydisDecodedOperand *op, uint64_t *addr)
{
    ZydisRegisterContext ctx;
    ZyanU64 a;
    if (op->type != ZYDIS_OPERAND_TYPE_MEMORY)
        return pk_emu_ud(e);
    register_context(e, &ctx);
    if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddressEx(e->insn, op, e->regs.rip, &ctx, &a)))
        return pk_emu_unsupported(e, "address not computable");
    if (e->vcpu.bits == 64 && op->mem.segment == ZYDIS_REGISTER_FS)
        a += e->regs.fs_base;
    else if (e->vcpu.bits == 64 && op->mem.segment == ZYDIS_REGISTER_GS)
        a += e->regs.gs_base;
    *addr = a;
    return PK_EMU_DONE;
}

pk_emu_status pk_emu_op_read(pk_emu *e, const ZydisDecodedOperand *op, uint64_t *value)
{
    if (op->type == ZYDIS_OPERAND_TYPE_REGISTER) {
        *value = pk_emu_reg_get(e, op->reg.value);
        return PK_EMU_DONE;
    }
    uint64_t addr, v = 0;
    PK_EMU_TRY(pk_emu_op_addr(e, op, &addr));
    PK_EMU_TRY(pk_emu_read(e, addr, &v, op->size / 8, 0));
    *value = v;
    return PK_EMU_DONE;
}

pk_emu_status pk_emu_op_write(pk_emu *e, const ZydisDecodedOperand *op, uint64_t value)
{
    if (op->type == ZYDIS_OPERAND_TYPE_REGISTER) {
        pk_emu_reg_set(e, op->reg.value, value);
        return PK_EMU_DONE;
    }
    uint64_t addr;
    PK_EMU_TRY(pk_emu_op_addr(e, op, &addr));
    return pk_emu_write(e, addr, &value, op->size / 8, 0);
}

/* ---- stack ---------------------------------------------------------------------- */

unsigned pk_emu_stack_bits(const pk_emu *e)
{
    if (e->vcpu.bits == 64)
        return 64;
    return e->vcpu.seg[PK_SS].attributes & PK_ATTR_DB ? 32 : 16;
}

pk_emu_status pk_emu_push(pk_emu *e, uint64_t value, unsigned slot, unsigned store)
{
    unsigned sb = pk_emu_stack_bits(e);
    uint64_t sp = (pk_emu_gpr_get(e, PK_RSP, sb) - slot) & width_mask(sb);
    PK_EMU_TRY(pk_emu_write(e, sp, &value, store, PK_ACC_STACK));
    pk_emu_gpr_set(e, PK_RSP, sb, sp);
    return PK_EMU_DONE;
}

pk_emu_status pk_emu_pop(pk_emu *e, unsigned size, uint64_t *value)
{
    unsigned sb = pk_emu_stack_bits(e);
    uint64_t sp = pk_emu_gpr_get(e, PK_RSP, sb), v = 0;
    PK_EMU_TRY(pk_emu_read(e, sp, &v, size, PK_ACC_STACK));
    pk_emu_gpr_set(e, PK_RSP, sb, sp + size);
    *value = v;
    return PK_EMU_DONE;
}
