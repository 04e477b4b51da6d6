/* popek — port I/O: IN, OUT, INS, OUTS (with REP), and the completion of
 * IN/INS once the engine has the device's data.
 *
 * Privilege (SDM vol. 1 §19.5): CPL <= virtual IOPL, otherwise every port
 * the access touches must be cleared in the I/O permission bitmap of the
 * guest's own 32-bit (or 64-bit) TSS, when TR is loaded; otherwise #GP(0).
 *
 * REP INS/OUTS go in chunks: one exit carries at most PK_IO_MAX_DATA
 * bytes. After a chunk rSI/rDI and rCX have moved past it; while rCX is
 * not 0, rip stays at the instruction, which then runs again for the next
 * chunk (as the CPU may take an interrupt between iterations). Memory is
 * checked before any port is touched; when an element lies outside guest
 * memory, the elements before it make the chunk and the next run faults. */
#include "internal/emu.h"

#include <string.h>

/* ---- permission ---------------------------------------------------------- */

static pk_emu_status io_allowed(pk_emu *e, uint16_t port, unsigned size)
{
    const pk_segment *tr = &e->vcpu.seg[PK_TR];
    unsigned type = tr->attributes & PK_ATTR_TYPE;
    uint16_t map = 0, bits = 0;

    if (e->vcpu.cpl <= pk_emu_iopl(&e->vcpu))
        return PK_EMU_DONE;
    if (type != 9 && type != 0xB) /* no 32/64-bit TSS: no bitmap */
        return pk_emu_gp(e, 0);
    /* The bitmap offset is at 0x66; the CPU reads two bytes of the bitmap
     * so that an access may straddle a byte; both must be in the limit. */
    switch (pk_tss_read(e, 0x66, &map, 2)) {
    case PK_DESC_OK: break;
    case PK_DESC_MISSING: return pk_emu_gp(e, 0);
    case PK_DESC_FAULT: return PK_EMU_FAULT;
    }
    switch (pk_tss_read(e, (uint32_t)map + port / 8, &bits, 2)) {
    case PK_DESC_OK: break;
    case PK_DESC_MISSING: return pk_emu_gp(e, 0);
    case PK_DESC_FAULT: return PK_EMU_FAULT;
    }
    if (bits & (((1u << size) - 1) << (port & 7)))
        return pk_emu_gp(e, 0);
    return PK_EMU_DONE;
}

/* ---- operands ------------------------------------------------------------- */

/* The port operand (imm8 or DX) and the data operand (rAX, or the memory
 * operand of INS/OUTS). Zydis lists the string forms' operands as hidden,
 * with rCX and EFLAGS among them, so all operands are searched. */
static void io_operands(const pk_emu *e, uint16_t *port, const ZydisDecodedOperand **data)
{
    const ZydisDecodedOperand *acc = NULL, *mem = NULL;
    bool have_port = false;
    for (unsigned i = 0; i < e->insn->operand_count; i++) {
        const ZydisDecodedOperand *op = &e->ops[i];
        if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && !have_port) {
            *port = (uint16_t)op->imm.value.u;
            have_port = true;
        } else if (op->type == ZYDIS_OPERAND_TYPE_REGISTER && op->reg.value == ZYDIS_REGISTER_DX &&
                   !have_port) {
            *port = (uint16_t)e->regs.gpr[PK_RDX];
            have_port = true;
        } else if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && !mem) {
            mem = op;
        } else if (op->type == ZYDIS_OPERAND_TYPE_REGISTER && !acc &&
                   (op->reg.value == ZYDIS_REGISTER_AL || op->reg.value == ZYDIS_REGISTER_AX ||
                    op->reg.value == ZYDIS_REGISTER_EAX)) {
            acc = op;
        }
    }
    *data = mem ? mem : acc;
}

static bool is_rep(const pk_emu *e)
{
    return e->insn->attributes & ZYDIS_ATTRIB_HAS_REP;
}

/* The address of element i of a string operand: DF=1 walks down. */
static uint64_t element(const pk_emu *e, uint64_t start, unsigned size, uint32_t i)
{
    int64_t step = e->regs.rflags & PK_FLAG_DF ? -(int64_t)size : (int64_t)size;
    uint64_t a = start + (uint64_t)(step * (int64_t)i);
    return e->insn->address_width == 64 ? a
         : a & ((1ull << e->insn->address_width) - 1);
}

/* rSI or rDI, and rCX under REP, moved past n elements. */
static void string_advance(pk_emu *e, unsigned gpr, unsigned size, uint32_t n)
{
    unsigned aw = e->insn->address_width;
    int64_t step = e->regs.rflags & PK_FLAG_DF ? -(int64_t)size : (int64_t)size;
    pk_emu_gpr_set(e, gpr, aw, pk_emu_gpr_get(e, gpr, aw) + (uint64_t)(step * (int64_t)n));
    if (is_rep(e))
        pk_emu_gpr_set(e, PK_RCX, aw, pk_emu_gpr_get(e, PK_RCX, aw) - n);
}

/* After n elements: past the instruction, unless REP has more to do. */
static void string_finish(pk_emu *e)
{
    if (!is_rep(e) || pk_emu_gpr_get(e, PK_RCX, e->insn->address_width) == 0)
        e->regs.rip = pk_emu_next_rip(e);
}

/* How many of the n elements at start lie in guest memory (read as a
 * probe, or into data for OUTS). None: the fault of the first. */
static pk_emu_status string_probe(pk_emu *e, uint64_t start, unsigned size, uint32_t *n,
                                  uint8_t *data)
{
    uint8_t tmp[8];
    uint32_t k = 0;
    for (; k < *n; k++) {
        uint8_t *dst = data ? data + (size_t)k * size : tmp;
        if (!e->mem->read(e->mem->ctx, element(e, start, size, k), dst, size))
            break;
    }
    if (k == 0)
        return pk_emu_read(e, start, tmp, size, 0);
    *n = k;
    return PK_EMU_DONE;
}

/* ---- IN, OUT, INS, OUTS -------------------------------------------------------- */

static pk_emu_status port_io(pk_emu *e, bool in, bool string)
{
    const ZydisDecodedOperand *data;
    uint16_t port = 0;
    io_operands(e, &port, &data);
    if (!data)
        return pk_emu_unsupported(e, "I/O operands not found");
    unsigned size = data->size / 8;
    uint32_t n = 1;
    uint64_t start = 0;

    PK_EMU_TRY(io_allowed(e, port, size));
    if (string) {
        if (is_rep(e)) {
            uint64_t count = pk_emu_gpr_get(e, PK_RCX, e->insn->address_width);
            if (count == 0) {
                e->regs.rip = pk_emu_next_rip(e);
                return pk_emu_effect(e, "rep %s with rCX=0", in ? "ins" : "outs");
            }
            n = count < PK_IO_MAX_DATA / size ? (uint32_t)count : PK_IO_MAX_DATA / size;
        }
        PK_EMU_TRY(pk_emu_op_addr(e, data, &start));
        PK_EMU_TRY(string_probe(e, start, size, &n, in ? NULL : e->res.io.data));
    } else if (!in) {
        memcpy(e->res.io.data, &e->regs.gpr[PK_RAX], size);
    }
    e->res.io.port = port;
    e->res.io.size = (uint8_t)size;
    e->res.io.in = in;
    e->res.io.count = n;
    e->res.status = PK_EMU_IO;
    if (in) { /* pk_emulate_io_in completes it */
        pk_emu_effect(e, "port 0x%x -> %u x %u bytes pending", port, n, size);
        return PK_EMU_IO;
    }
    if (string) {
        string_advance(e, PK_RSI, size, n);
        string_finish(e);
        pk_emu_effect(e, "port 0x%x <- %u x %u bytes", port, n, size);
    } else {
        e->regs.rip = pk_emu_next_rip(e);
        uint64_t v = 0;
        memcpy(&v, e->res.io.data, size);
        pk_emu_effect(e, "port 0x%x <- 0x%llx", port, (unsigned long long)v);
    }
    return PK_EMU_IO;
}

pk_emu_status pk_emu_io_insn(pk_emu *e, pk_class_id row)
{
    switch (row) {
    case PK_CLASS_IN: return port_io(e, true, false);
    case PK_CLASS_OUT: return port_io(e, false, false);
    case PK_CLASS_INS: return port_io(e, true, true);
    case PK_CLASS_OUTS: return port_io(e, false, true);
    default: return pk_emu_unsupported(e, "not a port I/O instruction");
    }
}

/* ---- completing IN and INS --------------------------------------------------------- */

pk_emu_status pk_emu_io_complete(pk_emu *e, const pk_io *io)
{
    const ZydisDecodedOperand *data;
    uint16_t port = 0;
    pk_class_id row = pk_classify(e->insn);
    io_operands(e, &port, &data);

    if ((row != PK_CLASS_IN && row != PK_CLASS_INS) || !data || !io->in ||
        io->size != data->size / 8 || port != io->port || io->count == 0 ||
        (size_t)io->count * io->size > PK_IO_MAX_DATA ||
        (row == PK_CLASS_IN && io->count != 1))
        return pk_emu_unsupported(e, "I/O data does not match the instruction");
    if (row == PK_CLASS_IN) {
        uint64_t v = 0;
        memcpy(&v, io->data, io->size);
        pk_emu_reg_set(e, data->reg.value, v);
        e->regs.rip = pk_emu_next_rip(e);
        return pk_emu_effect(e, "port 0x%x -> 0x%llx", port, (unsigned long long)v);
    }
    uint64_t start;
    PK_EMU_TRY(pk_emu_op_addr(e, data, &start));
    for (uint32_t i = 0; i < io->count; i++)
        PK_EMU_TRY(pk_emu_write(e, element(e, start, io->size, i),
                                io->data + (size_t)i * io->size, io->size, 0));
    string_advance(e, PK_RDI, io->size, io->count);
    string_finish(e);
    return pk_emu_effect(e, "port 0x%x -> %u x %u bytes", port, io->count, io->size);
}
