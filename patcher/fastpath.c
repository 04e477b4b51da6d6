/* popek — fast-path blocks: a patched instruction emulated in its
 * trampoline against the vcpu page, with instructions from the Zydis
 * encoder.
 *
 * A block may not disturb what the guest has: its registers, its flags,
 * its stack. In 64-bit code the stack below RSP may hold a leaf function's
 * data (the red zone), so a block first moves RSP 128 bytes down, then
 * saves the scratch registers it needs there; in 32-bit code there is no
 * red zone. The arithmetic flags are saved in AH and AL (LAHF, SETO) and
 * put back (ADD AL, 0x7f; SAHF) around the instructions that change them:
 * much cheaper than PUSHF and POPF, which only POPF's block uses.
 *
 * PUSHF (pushfq shown; pushfw and pushfd alike):
 *
 *     pushfq                          the real flags, as the site pushes
 *     lea rsp, [rsp - 128]
 *     push rax
 *     push rcx
 *     lahf
 *     seto al
 *     mov rcx, [rsp + 144]            the real image
 *     and rcx, 0x48dff                less IF, IOPL, NT, ID, RF, VM, VIF, VIP
 *     or rcx, [page.vflags]           the virtual IF, IOPL, NT, ID
 *     mov [rsp + 144], rcx
 *     add al, 0x7f
 *     sahf
 *     pop rcx
 *     pop rax
 *     lea rsp, [rsp + 128]
 *
 * POPF computes the image pk_emu_flags_load computes, stores the virtual
 * bits in the page, and loads the real bits with a real POPF of a value
 * that keeps the real NT and ID (which belong to the vcpu), from a slot of
 * its own (the guest's stack keeps the value it popped). It goes to the
 * monitor when the value sets TF (the trap must follow the next
 * instruction of the guest's, not of the block's), or sets IF while an
 * interrupt waits.
 *
 * SMSW, SLDT, STR and MOV from a segment register load a register from
 * the page (MOV keeps the flags: nothing else to do), or store through the
 * instruction's own memory operand (its segment, base, index and
 * displacement; RSP-based ones moved by what the block pushed), with a
 * scratch register the operand does not use. SGDT and SIDT store 10 bytes
 * (6 in 32-bit code) the same way. With check, these test
 * PK_VCPU_PAGE_UMIP first and go to the monitor when it is set.
 *
 * CLI and STI (patched with --patch-privileged) clear and set the virtual
 * IF when the virtual CPL may (else the monitor raises #GP); an STI that
 * opens the window for an interrupt already waiting goes to the monitor. */
#include "popek/fastpath.h"

#include <string.h>

#include "../monitor/internal/emu.h"
#include "../scanner/internal/decoder.h"

enum {
    REAL_IMAGE = 0x3FFFFF & ~(PK_FLAG_IF | PK_FLAG_IOPL | PK_FLAG_NT | PK_FLAG_ID |
                              PK_FLAG_RF | PK_FLAG_VM | PK_FLAG_VIF | PK_FLAG_VIP),
    RED_ZONE = 128,
};

/* ---- the vcpu page ------------------------------------------------------------- */

void pk_vcpu_page_store(pk_vcpu_page *page, const pk_vcpu *vcpu, bool pending)
{
    unsigned iopl = (vcpu->vflags >> 12) & 3;
    uint64_t mask = PK_FLAG_CF | PK_FLAG_PF | PK_FLAG_AF | PK_FLAG_ZF | PK_FLAG_SF |
                    PK_FLAG_TF | PK_FLAG_DF | PK_FLAG_OF | PK_FLAG_NT | PK_FLAG_AC | PK_FLAG_ID;
    if (vcpu->cpl <= iopl)
        mask |= PK_FLAG_IF;
    if (vcpu->cpl == 0)
        mask |= PK_FLAG_IOPL;
    page->vflags = vcpu->vflags & PK_VFLAGS_MASK;
    page->popf_mask = mask;
    page->slow = (pending ? PK_VCPU_PAGE_PENDING : 0) |
                 ((vcpu->cr4 & PK_CR4_UMIP) && vcpu->cpl > 0 ? PK_VCPU_PAGE_UMIP : 0);
    page->cr0 = vcpu->cr0;
    for (int i = 0; i < PK_SEG_COUNT; i++)
        page->sel[i] = vcpu->seg[i].selector;
    memset(page->gdtr, 0, sizeof page->gdtr);
    memset(page->idtr, 0, sizeof page->idtr);
    memcpy(page->gdtr, &vcpu->gdtr.limit, 2);
    memcpy(page->gdtr + 2, &vcpu->gdtr.base, 8);
    memcpy(page->idtr, &vcpu->idtr.limit, 2);
    memcpy(page->idtr + 2, &vcpu->idtr.base, 8);
}

void pk_vcpu_page_load(const pk_vcpu_page *page, pk_vcpu *vcpu)
{
    vcpu->vflags = page->vflags & PK_VFLAGS_MASK;
}

/* ---- emitting ------------------------------------------------------------------ */

/* What the block has put on the stack so far, as depths below the guest's
 * RSP (the block's first instruction's), in its straight run to the end
 * (the way to the monitor, laid out after it, is not followed). */
typedef struct stack_state {
    int64_t depth;          /* the stack pointer */
    int64_t saved[4];       /* where rax, rcx, rdx, rbx were pushed, or -1 */
    int64_t flags;          /* where the guest's flags were pushed, or -1 */
} stack_state;

/* A block being written: at is where the next instruction goes. */
typedef struct emitter {
    unsigned bits;
    uint64_t at, page;
    uint8_t *buf;           /* NULL: measuring */
    size_t len;
    bool ok;
    ZydisRegister sp;       /* rsp or esp */
    unsigned word;          /* 8 or 4: the stack slot */
    bool user;              /* for a user program: NT and ID are real */
    stack_state stack;
    uint64_t fault_at;      /* an instruction whose stack state is wanted, or 0 */
    bool found;             /* it may fault, and fault_stack holds its state */
    stack_state fault_stack;
} emitter;

/* The bits of a flags image that the real flags hold. */
static int64_t real_image(const emitter *m)
{
    return REAL_IMAGE | (m->user ? PK_FLAG_NT | PK_FLAG_ID : 0);
}

static void request(emitter *m, ZydisEncoderRequest *r, ZydisMnemonic mnemonic)
{
    memset(r, 0, sizeof *r);
    r->machine_mode = m->bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32;
    r->mnemonic = mnemonic;
}

static void put(emitter *m, ZydisEncoderRequest *r)
{
    uint8_t b[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZyanUSize n = sizeof b;
    if (!m->ok || ZYAN_FAILED(ZydisEncoderEncodeInstructionAbsolute(r, b, &n, m->at))) {
        m->ok = false;
        return;
    }
    if (m->buf)
        memcpy(m->buf + m->len, b, n);
    m->len += n;
    m->at += n;
}

static ZydisEncoderOperand reg(ZydisRegister r)
{
    return (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_REGISTER, .reg.value = r };
}

static ZydisEncoderOperand imm(int64_t v)
{
    return (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_IMMEDIATE, .imm.s = v };
}

/* size bytes at base + disp. */
static ZydisEncoderOperand mem(ZydisRegister base, int64_t disp, unsigned size)
{
    return (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_MEMORY,
                                  .mem = { .base = base, .displacement = disp,
                                           .size = (ZyanU16)size } };
}

/* size bytes of the page's field at offset: RIP-relative in 64-bit code,
 * absolute in 32-bit code. */
static ZydisEncoderOperand field(const emitter *m, size_t offset, unsigned size)
{
    return mem(m->bits == 64 ? ZYDIS_REGISTER_RIP : ZYDIS_REGISTER_NONE,
               (int64_t)(m->page + offset), size);
}

static void op0(emitter *m, ZydisMnemonic mn)
{
    ZydisEncoderRequest r;
    request(m, &r, mn);
    put(m, &r);
}

static void op1(emitter *m, ZydisMnemonic mn, ZydisEncoderOperand a)
{
    ZydisEncoderRequest r;
    request(m, &r, mn);
    r.operand_count = 1;
    r.operands[0] = a;
    put(m, &r);
}

static void op2(emitter *m, ZydisMnemonic mn, ZydisEncoderOperand a, ZydisEncoderOperand b)
{
    ZydisEncoderRequest r;
    request(m, &r, mn);
    r.operand_count = 2;
    r.operands[0] = a;
    r.operands[1] = b;
    put(m, &r);
}

/* PUSHF or POPF of a given width (2, 4 or 8 bytes). */
static void flags_op(emitter *m, bool pop, unsigned width)
{
    ZydisMnemonic mn = pop ? (width == 2 ? ZYDIS_MNEMONIC_POPF
                              : width == 4 ? ZYDIS_MNEMONIC_POPFD : ZYDIS_MNEMONIC_POPFQ)
                           : (width == 2 ? ZYDIS_MNEMONIC_PUSHF
                              : width == 4 ? ZYDIS_MNEMONIC_PUSHFD : ZYDIS_MNEMONIC_PUSHFQ);
    op0(m, mn);
}

/* The next instruction may fault on the guest's memory (the stack it
 * grows, an operand): the state a fault there leaves, when wanted. */
static void may_fault(emitter *m)
{
    if (m->at == m->fault_at) {
        m->found = true;
        m->fault_stack = m->stack;
    }
}

/* The stack pointer moved down by n bytes (up, for negative n). */
static void move_sp(emitter *m, int64_t n)
{
    op2(m, ZYDIS_MNEMONIC_LEA, reg(m->sp), mem(m->sp, -n, m->word));
    m->stack.depth += n;
}

/* The guest's flags saved and put back: pushfq in 64-bit code, pushfd in
 * 32. */
static void save_flags(emitter *m)
{
    may_fault(m);
    flags_op(m, false, m->word);
    m->stack.depth += m->word;
    m->stack.flags = m->stack.depth;
}

static void restore_flags(emitter *m)
{
    flags_op(m, true, m->word);
    m->stack.depth -= m->word;
    m->stack.flags = -1;
}

/* The general register of encoding number n at size bytes. */
static ZydisRegister gpr(unsigned n, unsigned size)
{
    static const ZydisRegister r64[] = { ZYDIS_REGISTER_RAX, ZYDIS_REGISTER_RCX,
                                         ZYDIS_REGISTER_RDX, ZYDIS_REGISTER_RBX };
    ZydisRegister r = r64[n];
    ZydisRegisterClass cls = size == 8 ? ZYDIS_REGCLASS_GPR64
                             : size == 4 ? ZYDIS_REGCLASS_GPR32 : ZYDIS_REGCLASS_GPR16;
    return ZydisRegisterEncode(cls, ZydisRegisterGetId(r));
}

/* Scratch register id (encoding 0..3) saved on the stack and taken back. */
static void push_scratch(emitter *m, unsigned id)
{
    may_fault(m);
    op1(m, ZYDIS_MNEMONIC_PUSH, reg(gpr(id, m->word)));
    m->stack.depth += m->word;
    m->stack.saved[id] = m->stack.depth;
}

static void pop_scratch(emitter *m, unsigned id)
{
    op1(m, ZYDIS_MNEMONIC_POP, reg(gpr(id, m->word)));
    m->stack.depth -= m->word;
    m->stack.saved[id] = -1;
}

/* Moves the stack past the red zone (64-bit code) and saves n scratch
 * registers: rax, rcx, rdx, rbx in that order, or those of ids. */
static void enter(emitter *m, const unsigned *ids, unsigned n)
{
    if (m->bits == 64)
        move_sp(m, RED_ZONE);
    for (unsigned i = 0; i < n; i++)
        push_scratch(m, ids[i]);
}

static void leave(emitter *m, const unsigned *ids, unsigned n)
{
    for (unsigned i = n; i-- > 0;)
        pop_scratch(m, ids[i]);
    if (m->bits == 64)
        move_sp(m, -RED_ZONE);
}

/* How far RSP is below where it was once enter saved n registers. */
static int64_t below(const emitter *m, unsigned n)
{
    return (m->bits == 64 ? RED_ZONE : 0) + (int64_t)n * m->word;
}

/* A conditional jump to target (rel32). */
static void jcc(emitter *m, ZydisMnemonic mn, uint64_t target)
{
    ZydisEncoderRequest r;
    request(m, &r, mn);
    r.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
    r.branch_width = ZYDIS_BRANCH_WIDTH_32;
    r.operand_count = 1;
    r.operands[0] = imm((int64_t)target);
    put(m, &r);
}

/* ---- the blocks ------------------------------------------------------------------ */

static const unsigned scratch4[] = { 0, 1, 2, 3 }; /* rax, rcx, rdx, rbx */

/* The arithmetic flags (all an ALU instruction changes) saved in AH and
 * AL, and put back: cheaper than PUSHF and POPF, and enough where the
 * block changes no other flag. */
static void save_arith(emitter *m)
{
    op0(m, ZYDIS_MNEMONIC_LAHF);
    op1(m, ZYDIS_MNEMONIC_SETO, reg(ZYDIS_REGISTER_AL));
}

static void restore_arith(emitter *m)
{
    op2(m, ZYDIS_MNEMONIC_ADD, reg(ZYDIS_REGISTER_AL), imm(0x7f)); /* OF from AL */
    op0(m, ZYDIS_MNEMONIC_SAHF);
}

static void pushf_block(emitter *m, unsigned width)
{
    unsigned w = m->word;
    ZydisRegister c = gpr(1, w);
    may_fault(m);
    flags_op(m, false, width);
    m->stack.depth += width;
    enter(m, scratch4, 2);
    save_arith(m);
    int64_t image = below(m, 2);
    if (width == 2)
        op2(m, ZYDIS_MNEMONIC_MOVZX, reg(gpr(1, 4)), mem(m->sp, image, 2));
    else
        op2(m, ZYDIS_MNEMONIC_MOV, reg(c), mem(m->sp, image, w));
    /* (bit 1, always set, stays) */
    op2(m, ZYDIS_MNEMONIC_AND, reg(c), imm(real_image(m)));
    op2(m, ZYDIS_MNEMONIC_OR, reg(c), field(m, offsetof(pk_vcpu_page, vflags), w));
    op2(m, ZYDIS_MNEMONIC_MOV, mem(m->sp, image, width), reg(gpr(1, width)));
    restore_arith(m);
    leave(m, scratch4, 2);
}

/* An unconditional jump to target (rel32, so that its length does not
 * depend on the target: blocks are laid out in two passes). */
static void jmp(emitter *m, uint64_t target)
{
    jcc(m, ZYDIS_MNEMONIC_JMP, target);
}

/* A block's labels: where they fell on the first pass, used on the
 * second (every jump is rel32, so nothing moves between passes). */
typedef struct labels {
    uint64_t slow;          /* registers and flags back, then to the monitor */
    uint64_t compute;
    uint64_t end;
} labels;

/* A block's two ends: the fast one jumps to the end; the way to the
 * monitor puts back the flags (restore: restore_flags for PUSHF's save,
 * restore_arith for LAHF's) and the n scratch registers of ids, then jumps
 * to slow. */
static void two_ends(emitter *m, labels *l, void (*restore)(emitter *), const unsigned *ids,
                     unsigned n, uint64_t slow)
{
    jmp(m, l->end);
    l->slow = m->at;
    restore(m);
    leave(m, ids, n);
    jmp(m, slow);
    l->end = m->at;
}

static void popf_block(emitter *m, labels *l, unsigned width, uint64_t slow)
{
    unsigned w = m->word;
    ZydisRegister a = gpr(0, w), c = gpr(1, w), d = gpr(2, w);
    ZydisEncoderOperand mask = field(m, offsetof(pk_vcpu_page, popf_mask), w);
    /* a slot of the block's own, under the scratch registers, for the
     * value the real POPF loads: the guest's stack keeps what it held */
    enter(m, scratch4, 0);
    move_sp(m, w);
    for (unsigned i = 0; i < 3; i++)
        push_scratch(m, i);
    save_flags(m);
    op2(m, ZYDIS_MNEMONIC_MOV, reg(c), mem(m->sp, 0, w)); /* c: the real flags */
    int64_t own = 4 * (int64_t)w;                 /* the block's slot */
    int64_t value = own + w + (m->bits == 64 ? RED_ZONE : 0); /* the guest's */
    /* a = V & M */
    may_fault(m);
    if (width == 2)
        op2(m, ZYDIS_MNEMONIC_MOVZX, reg(gpr(0, 4)), mem(m->sp, value, 2));
    else
        op2(m, ZYDIS_MNEMONIC_MOV, reg(a), mem(m->sp, value, w));
    op2(m, ZYDIS_MNEMONIC_AND, reg(a), mask);
    /* To the monitor: TF set, or IF going from 0 to 1 while an interrupt
     * waits. */
    op2(m, ZYDIS_MNEMONIC_TEST, reg(gpr(0, 4)), imm(PK_FLAG_TF));
    jcc(m, ZYDIS_MNEMONIC_JNZ, l->slow);
    op2(m, ZYDIS_MNEMONIC_TEST, reg(gpr(0, 4)), imm(PK_FLAG_IF));
    jcc(m, ZYDIS_MNEMONIC_JZ, l->compute);
    op2(m, ZYDIS_MNEMONIC_TEST, field(m, offsetof(pk_vcpu_page, vflags) + 1, 1),
        imm(PK_FLAG_IF >> 8));
    jcc(m, ZYDIS_MNEMONIC_JNZ, l->compute);
    op2(m, ZYDIS_MNEMONIC_TEST, field(m, offsetof(pk_vcpu_page, slow), 1),
        imm(PK_VCPU_PAGE_PENDING));
    jcc(m, ZYDIS_MNEMONIC_JNZ, l->slow);
    /* d = the image before: the real flags with the virtual ones */
    l->compute = m->at;
    op2(m, ZYDIS_MNEMONIC_MOV, reg(d), reg(c));
    op2(m, ZYDIS_MNEMONIC_AND, reg(d), imm(real_image(m)));
    op2(m, ZYDIS_MNEMONIC_OR, reg(d), field(m, offsetof(pk_vcpu_page, vflags), w));
    /* d = (d & ~M) | (V & M) = d ^ ((d ^ V) & M), with M 16 bits wide for
     * a 16-bit POPF */
    if (width == 2)
        op2(m, ZYDIS_MNEMONIC_MOVZX, reg(gpr(0, 4)), mem(m->sp, value, 2));
    else
        op2(m, ZYDIS_MNEMONIC_MOV, reg(a), mem(m->sp, value, w));
    op2(m, ZYDIS_MNEMONIC_XOR, reg(a), reg(d));
    op2(m, ZYDIS_MNEMONIC_AND, reg(a), mask);
    if (width == 2)
        op2(m, ZYDIS_MNEMONIC_AND, reg(a), imm(0xFFFF));
    op2(m, ZYDIS_MNEMONIC_XOR, reg(d), reg(a));
    /* the virtual bits to the page */
    op2(m, ZYDIS_MNEMONIC_MOV, reg(a), reg(d));
    op2(m, ZYDIS_MNEMONIC_AND, reg(a), imm(PK_VFLAGS_MASK & ~real_image(m)));
    op2(m, ZYDIS_MNEMONIC_MOV, field(m, offsetof(pk_vcpu_page, vflags), w), reg(a));
    /* the real ones by a real POPF, of a value with the real NT and ID
     * where those are the page's */
    if (!m->user) {
        op2(m, ZYDIS_MNEMONIC_AND, reg(d), imm(~(int64_t)(PK_FLAG_NT | PK_FLAG_ID)));
        op2(m, ZYDIS_MNEMONIC_AND, reg(c), imm(PK_FLAG_NT | PK_FLAG_ID));
        op2(m, ZYDIS_MNEMONIC_OR, reg(d), reg(c));
    }
    op2(m, ZYDIS_MNEMONIC_MOV, mem(m->sp, own, width), reg(gpr(2, width)));
    stack_state before = m->stack;
    move_sp(m, -(int64_t)w); /* the saved flags */
    for (unsigned i = 3; i-- > 0;)
        pop_scratch(m, i);
    flags_op(m, true, width);
    /* to where the guest's POPF leaves it: past its value */
    move_sp(m, own - value);
    jmp(m, l->end);
    l->slow = m->at;
    m->stack = before;
    restore_flags(m);
    for (unsigned i = 3; i-- > 0;)
        pop_scratch(m, i);
    move_sp(m, own - value);
    jmp(m, slow);
    l->end = m->at;
}

/* CLI and STI, allowed when CPL <= IOPL (then POPF may load IF: the
 * page's popf_mask has it), else #GP from the monitor. STI that sets IF
 * while an interrupt waits goes to the monitor too (the interrupt comes
 * after the next instruction). */
static void cli_sti_block(emitter *m, labels *l, bool sti, uint64_t slow)
{
    ZydisEncoderOperand vif = field(m, offsetof(pk_vcpu_page, vflags) + 1, 1);
    enter(m, scratch4, 1);
    save_arith(m);
    op2(m, ZYDIS_MNEMONIC_TEST, field(m, offsetof(pk_vcpu_page, popf_mask) + 1, 1),
        imm(PK_FLAG_IF >> 8));
    jcc(m, ZYDIS_MNEMONIC_JZ, l->slow);
    if (sti) {
        op2(m, ZYDIS_MNEMONIC_TEST, vif, imm(PK_FLAG_IF >> 8));
        jcc(m, ZYDIS_MNEMONIC_JNZ, l->compute);
        op2(m, ZYDIS_MNEMONIC_TEST, field(m, offsetof(pk_vcpu_page, slow), 1),
            imm(PK_VCPU_PAGE_PENDING));
        jcc(m, ZYDIS_MNEMONIC_JNZ, l->slow);
        op2(m, ZYDIS_MNEMONIC_OR, vif, imm(PK_FLAG_IF >> 8));
    } else {
        op2(m, ZYDIS_MNEMONIC_AND, vif, imm((int8_t)~(PK_FLAG_IF >> 8)));
    }
    l->compute = m->at;
    restore_arith(m);
    leave(m, scratch4, 1);
    two_ends(m, l, restore_arith, scratch4, 1, slow);
}

/* A register of operand op, at its own size: loaded from the page's field
 * at offset (zero-extended to 32 bits as a 32-bit load is in 64-bit code;
 * a 16-bit register keeps its upper bits). */
static void load_register(emitter *m, const ZydisDecodedOperand *op, size_t offset)
{
    ZydisMachineMode mode = m->bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64
                                          : ZYDIS_MACHINE_MODE_LEGACY_32;
    unsigned size = ZydisRegisterGetWidth(mode, op->reg.value) / 8;
    op2(m, ZYDIS_MNEMONIC_MOV, reg(op->reg.value), field(m, offset, size));
}

/* A scratch register (encoding 0..3) that memory operand op does not use. */
static unsigned scratch_for(const ZydisDecodedOperand *op)
{
    for (unsigned n = 0; n < 4; n++) {
        ZydisRegister r = gpr(n, 8);
        if (ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, op->mem.base) != r &&
            ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, op->mem.index) != r)
            return n;
    }
    return 0; /* (two registers cannot use four) */
}

/* To the monitor (l->slow, with the flags saved on the stack) when UMIP
 * forbids the instruction; else on, the flags as they were. */
static void umip_check(emitter *m, labels *l)
{
    save_flags(m);
    op2(m, ZYDIS_MNEMONIC_TEST, field(m, offsetof(pk_vcpu_page, slow), 1),
        imm(PK_VCPU_PAGE_UMIP));
    jcc(m, ZYDIS_MNEMONIC_JNZ, l->slow);
    restore_flags(m);
}

/* Memory operand op of insn (decoded at site), size bytes at disp further,
 * for the block once enter has moved the stack by moved bytes. */
static bool store_operand(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *op,
                          uint64_t site, int64_t moved, int64_t disp, unsigned size,
                          ZydisEncoderOperand *out)
{
    *out = (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_MEMORY };
    out->mem.base = op->mem.base;
    out->mem.index = op->mem.index;
    out->mem.scale = op->mem.index ? op->mem.scale : 0;
    out->mem.size = (ZyanU16)size;
    int64_t d = op->mem.disp.value;
    if (op->mem.base == ZYDIS_REGISTER_RIP) {
        ZyanU64 a;
        if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(insn, op, site, &a)))
            return false;
        d = (int64_t)a;
    } else if (ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, op->mem.base) ==
               ZYDIS_REGISTER_RSP) {
        d += moved;
    }
    out->mem.displacement = d + disp;
    return true;
}

/* Stores n bytes of the page's field at offset through memory operand
 * op (segment override included). */
static void store_block(emitter *m, labels *l, const ZydisDecodedInstruction *insn,
                        const ZydisDecodedOperand *op, uint64_t site, size_t offset,
                        unsigned n, bool check, uint64_t slow)
{
    unsigned s = scratch_for(op);
    unsigned ids[1] = { s };
    enter(m, ids, 1);
    int64_t moved = below(m, 1);
    if (check)
        umip_check(m, l);
    /* 8- (or 4-) byte pieces, then a 2-byte one */
    for (unsigned done = 0; done < n;) {
        unsigned piece = n - done >= m->word ? m->word : n - done >= 4 ? 4 : 2;
        ZydisEncoderOperand dst;
        if (!store_operand(insn, op, site, moved, done, piece, &dst)) {
            m->ok = false;
            return;
        }
        ZydisRegister r = gpr(s, piece);
        op2(m, ZYDIS_MNEMONIC_MOV, reg(r), field(m, offset + done, piece));
        ZydisEncoderRequest req;
        request(m, &req, ZYDIS_MNEMONIC_MOV);
        req.operand_count = 2;
        req.operands[0] = dst;
        may_fault(m);
        req.operands[1] = reg(r);
        if (op->mem.segment != ZYDIS_REGISTER_DS && op->mem.segment != ZYDIS_REGISTER_SS &&
            op->mem.segment != ZYDIS_REGISTER_NONE)
            req.prefixes = op->mem.segment == ZYDIS_REGISTER_FS ? ZYDIS_ATTRIB_HAS_SEGMENT_FS
                           : op->mem.segment == ZYDIS_REGISTER_GS ? ZYDIS_ATTRIB_HAS_SEGMENT_GS
                           : op->mem.segment == ZYDIS_REGISTER_ES ? ZYDIS_ATTRIB_HAS_SEGMENT_ES
                                                                  : ZYDIS_ATTRIB_HAS_SEGMENT_CS;
        put(m, &req);
        done += piece;
    }
    leave(m, ids, 1);
    if (check)
        two_ends(m, l, restore_flags, ids, 1, slow);
}

/* ---- which instruction, which block ---------------------------------------------- */

/* The page's field an instruction reads, and how many bytes it stores to
 * memory; false for one without a fast path. */
static bool source(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                   unsigned bits, size_t *offset, unsigned *stored, bool *check)
{
    *check = true;
    *stored = 2;
    switch (insn->mnemonic) {
    case ZYDIS_MNEMONIC_SMSW:
        *offset = offsetof(pk_vcpu_page, cr0);
        return true;
    case ZYDIS_MNEMONIC_SLDT:
        *offset = offsetof(pk_vcpu_page, sel) + PK_LDTR * 8;
        return true;
    case ZYDIS_MNEMONIC_STR:
        *offset = offsetof(pk_vcpu_page, sel) + PK_TR * 8;
        return true;
    case ZYDIS_MNEMONIC_SGDT:
    case ZYDIS_MNEMONIC_SIDT:
        *offset = insn->mnemonic == ZYDIS_MNEMONIC_SGDT ? offsetof(pk_vcpu_page, gdtr)
                                                       : offsetof(pk_vcpu_page, idtr);
        *stored = bits == 64 ? 10 : 6;
        return ops[0].type == ZYDIS_OPERAND_TYPE_MEMORY;
    case ZYDIS_MNEMONIC_MOV:
        if (ops[1].type != ZYDIS_OPERAND_TYPE_REGISTER ||
            ZydisRegisterGetClass(ops[1].reg.value) != ZYDIS_REGCLASS_SEGMENT)
            return false;
        *offset = offsetof(pk_vcpu_page, sel) +
                  (size_t)(ops[1].reg.value - ZYDIS_REGISTER_ES) * 8;
        *check = false;
        return true;
    default:
        return false;
    }
}

bool pk_fastpath_has(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                     unsigned bits, bool user)
{
    size_t offset;
    unsigned stored;
    bool check;
    if ((bits != 32 && bits != 64) || (user && insn->mnemonic == ZYDIS_MNEMONIC_MOV))
        return false;
    return insn->mnemonic == ZYDIS_MNEMONIC_CLI || insn->mnemonic == ZYDIS_MNEMONIC_STI ||
           insn->mnemonic == ZYDIS_MNEMONIC_PUSHF || insn->mnemonic == ZYDIS_MNEMONIC_PUSHFD ||
           insn->mnemonic == ZYDIS_MNEMONIC_PUSHFQ || insn->mnemonic == ZYDIS_MNEMONIC_POPF ||
           insn->mnemonic == ZYDIS_MNEMONIC_POPFD || insn->mnemonic == ZYDIS_MNEMONIC_POPFQ ||
           source(insn, ops, bits, &offset, &stored, &check);
}

static void emit_block(emitter *m, labels *l, const ZydisDecodedInstruction *insn,
                       const ZydisDecodedOperand *ops, uint64_t site, uint64_t slow)
{
    unsigned width = insn->operand_width / 8;
    size_t offset;
    unsigned stored;
    bool check;
    switch (insn->mnemonic) {
    case ZYDIS_MNEMONIC_PUSHF: case ZYDIS_MNEMONIC_PUSHFD: case ZYDIS_MNEMONIC_PUSHFQ:
        pushf_block(m, width);
        return;
    case ZYDIS_MNEMONIC_POPF: case ZYDIS_MNEMONIC_POPFD: case ZYDIS_MNEMONIC_POPFQ:
        popf_block(m, l, width, slow);
        return;
    case ZYDIS_MNEMONIC_CLI: case ZYDIS_MNEMONIC_STI:
        cli_sti_block(m, l, insn->mnemonic == ZYDIS_MNEMONIC_STI, slow);
        return;
    default:
        break;
    }
    source(insn, ops, m->bits, &offset, &stored, &check);
    if (ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER && !check) {
        load_register(m, &ops[0], offset);
    } else if (ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER) {
        /* the UMIP test needs the flags saved, and so the stack */
        enter(m, scratch4, 0);
        umip_check(m, l);
        leave(m, scratch4, 0);
        load_register(m, &ops[0], offset);
        two_ends(m, l, restore_flags, scratch4, 0, slow);
    } else {
        store_block(m, l, insn, &ops[0], site, offset, stored, check, slow);
    }
}

static emitter emitter_for(unsigned bits, bool user, uint64_t at, uint64_t page, uint8_t *buf)
{
    emitter m = { .bits = bits, .at = at, .page = page, .buf = buf, .ok = true,
                  .sp = bits == 64 ? ZYDIS_REGISTER_RSP : ZYDIS_REGISTER_ESP,
                  .word = bits / 8, .user = user, .stack = { .saved = { -1, -1, -1, -1 }, .flags = -1 } };
    return m;
}

pk_status pk_fastpath_emit(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                           unsigned bits, bool user, uint64_t site, uint64_t at, uint64_t page,
                           uint64_t slow, uint8_t *buf, size_t *len, pk_error *err)
{
    if (!pk_fastpath_has(insn, ops, bits, user))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "%s has no fast path",
                       ZydisMnemonicGetString(insn->mnemonic));
    if (bits == 64) {
        int64_t reach = (int64_t)(page - at);
        if (reach > INT32_MAX / 2 || reach < INT32_MIN / 2)
            return pk_fail(err, PK_ERR_UNSUPPORTED, "the vcpu page at 0x%llx is out of reach "
                           "of 0x%llx", (unsigned long long)page, (unsigned long long)at);
    } else if (page > UINT32_MAX - sizeof(pk_vcpu_page)) {
        return pk_fail(err, PK_ERR_UNSUPPORTED, "the vcpu page at 0x%llx is above 4 GiB",
                       (unsigned long long)page);
    }
    labels l = { at, at, at };
    for (int pass = 0; pass < 2; pass++) {
        emitter m = emitter_for(bits, user, at, page, pass ? buf : NULL);
        labels found = l;
        emit_block(&m, &found, insn, ops, site, slow);
        if (!m.ok)
            return pk_fail(err, PK_ERR_UNSUPPORTED, "cannot encode the fast path of %s at "
                           "0x%llx", ZydisMnemonicGetString(insn->mnemonic),
                           (unsigned long long)site);
        l = found;
        *len = m.len;
        if (!buf)
            break;
    }
    return PK_OK;
}

bool pk_fastpath_unwind(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                        unsigned bits, bool user, uint64_t site, uint64_t at, uint64_t page,
                        uint64_t rip, pk_fastpath_frame *frame)
{
    if (!pk_fastpath_has(insn, ops, bits, user) || rip == at)
        return false;
    /* Every jump is rel32: one pass places each instruction where it is. */
    emitter m = emitter_for(bits, user, at, page, NULL);
    m.fault_at = rip;
    labels l = { at, at, at };
    emit_block(&m, &l, insn, ops, site, at);
    if (!m.ok || !m.found)
        return false;
    const stack_state *s = &m.fault_stack;
    frame->below = s->depth;
    for (int i = 0; i < 4; i++)
        frame->saved[i] = s->saved[i] < 0 ? -1 : s->depth - s->saved[i];
    frame->flags = s->flags < 0 ? -1 : s->depth - s->flags;
    return true;
}

bool pk_fastpath_undo(const pk_patch *p, unsigned bits, bool user, uint64_t block,
                      uint64_t page, pk_regs *regs, const pk_guest_mem *mem)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    pk_fastpath_frame fr;
    if (!pk_decoder_init(&dec, bits, false) ||
        ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, p->bytes, p->len, &insn, ops)) ||
        !pk_fastpath_unwind(&insn, ops, bits, user, p->site, block, page, regs->rip, &fr))
        return false;
    uint64_t sp = regs->gpr[PK_RSP], value[5] = { 0 };
    for (int r = 0; r < 5; r++) {
        int64_t at = r < 4 ? fr.saved[r] : fr.flags;
        if (at >= 0 && !mem->read(mem->ctx, sp + (uint64_t)at, &value[r], bits / 8))
            return false;
    }
    for (int r = 0; r < 4; r++)
        if (fr.saved[r] >= 0)
            regs->gpr[r] = value[r];
    if (fr.flags >= 0)
        regs->rflags = value[4];
    regs->gpr[PK_RSP] = sp + (uint64_t)fr.below;
    regs->rip = p->trampoline;
    return true;
}
