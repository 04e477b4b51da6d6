/* popek — the fast path against pk_emulate, on random states.
 *
 * Each fast-path block (patcher/fastpath.c) runs here for real, in this
 * process, from a page of code beside its vcpu page: a small harness loads
 * every general register and the flags from a state, jumps to the block,
 * and saves them again where the block falls through (or where it jumps to
 * the monitor). The same instruction, from the same state, goes through
 * pk_emulate with the vcpu the page was made from. The two must agree bit
 * for bit: registers, the flags the process really holds, the virtual
 * flags, and memory (the stack and a data buffer the memory operands point
 * into). A block that goes to the monitor must do so exactly when the
 * emulation cannot be done in place, and leave everything as it was.
 *
 * The real flags are random but for TF (it would trap here) and AC (Linux
 * runs with CR0.AM: an unaligned access would fault); the virtual CPU's
 * CPL, IOPL, IF, NT and ID, CR0, CR4.UMIP, selectors and tables are
 * random too. Blocks of 32-bit code run in the compatibility mode this
 * process can enter (a far return to the 32-bit user code segment, 0x23),
 * from a harness built in the arena below 4 GiB. */
#include <criterion/criterion.h>

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "popek/fastpath.h"
#include "popek/vcpu.h"

/* ---- the harness ------------------------------------------------------------------ */

/* The virtual flags the vcpu page holds. */
#define PK_VFLAGS_BITS ((uint64_t)(PK_FLAG_IF | PK_FLAG_IOPL | PK_FLAG_NT | PK_FLAG_ID))

typedef struct fp_state {
    uint64_t gpr[PK_GPR_COUNT];
    uint64_t rflags;
} fp_state;

fp_state fp_in, fp_out;
uint64_t fp_saved_rsp, fp_target;
int fp_went_slow;

void fp_enter(uint64_t code);
void fp_exit(void);
void fp_slow(void);

/* fp_enter(code): callee-saved registers kept, the state of fp_in loaded
 * (RSP too: a stack of the test's), then a jump to code. fp_exit and
 * fp_slow save every register and the flags into fp_out and return from
 * fp_enter; fp_slow also notes that the block went to the monitor. Neither
 * touches the test's stack above its red zone. */
__asm__(".text\n"
        ".globl fp_enter\n"
        "fp_enter:\n"
        "    push %rbp\n    push %rbx\n    push %r12\n    push %r13\n    push %r14\n"
        "    push %r15\n"
        "    mov %rsp, fp_saved_rsp(%rip)\n"
        "    mov %rdi, fp_target(%rip)\n"
        "    lea fp_in(%rip), %rax\n"
        "    pushq 128(%rax)\n"
        "    popfq\n"
        "    mov 32(%rax), %rsp\n"
        "    mov 8(%rax), %rcx\n    mov 16(%rax), %rdx\n    mov 24(%rax), %rbx\n"
        "    mov 40(%rax), %rbp\n    mov 48(%rax), %rsi\n    mov 56(%rax), %rdi\n"
        "    mov 64(%rax), %r8\n    mov 72(%rax), %r9\n    mov 80(%rax), %r10\n"
        "    mov 88(%rax), %r11\n    mov 96(%rax), %r12\n    mov 104(%rax), %r13\n"
        "    mov 112(%rax), %r14\n    mov 120(%rax), %r15\n"
        "    mov 0(%rax), %rax\n"
        "    jmp *fp_target(%rip)\n"
        ".globl fp_slow\n"
        "fp_slow:\n"
        "    movl $1, fp_went_slow(%rip)\n"
        ".globl fp_exit\n"
        "fp_exit:\n"
        "    lea -128(%rsp), %rsp\n"
        "    pushfq\n"
        "    popq fp_out+128(%rip)\n"
        "    lea 128(%rsp), %rsp\n"
        "    mov %rax, fp_out+0(%rip)\n    mov %rcx, fp_out+8(%rip)\n"
        "    mov %rdx, fp_out+16(%rip)\n    mov %rbx, fp_out+24(%rip)\n"
        "    mov %rsp, fp_out+32(%rip)\n    mov %rbp, fp_out+40(%rip)\n"
        "    mov %rsi, fp_out+48(%rip)\n    mov %rdi, fp_out+56(%rip)\n"
        "    mov %r8, fp_out+64(%rip)\n    mov %r9, fp_out+72(%rip)\n"
        "    mov %r10, fp_out+80(%rip)\n    mov %r11, fp_out+88(%rip)\n"
        "    mov %r12, fp_out+96(%rip)\n    mov %r13, fp_out+104(%rip)\n"
        "    mov %r14, fp_out+112(%rip)\n    mov %r15, fp_out+120(%rip)\n"
        "    mov fp_saved_rsp(%rip), %rsp\n"
        "    pushfq\n" /* C wants DF 0, and AC 0 (a POPF may set it) */
        "    andq $~0x40400, (%rsp)\n"
        "    popfq\n"
        "    pop %r15\n    pop %r14\n    pop %r13\n    pop %r12\n    pop %rbx\n"
        "    pop %rbp\n"
        "    ret\n");

/* fp_enter32(entry): callee-saved registers kept, then a far return into
 * 32-bit code (the compatibility mode's user code segment, 0x23) at entry,
 * which the test builds in the arena, as it builds the way back. */
void fp_enter32(uint64_t entry);
__asm__(".text\n"
        ".globl fp_enter32\n"
        "fp_enter32:\n"
        "    push %rbp\n    push %rbx\n    push %r12\n    push %r13\n    push %r14\n"
        "    push %r15\n"
        "    mov %rsp, fp_saved_rsp(%rip)\n"
        "    pushq $0x23\n"
        "    push %rdi\n"
        "    lretq\n");

/* ---- the arena: code, vcpu page, stack, data ---------------------------------------- */

enum {
    ARENA_SIZE = 0x10000,
    CODE_OFF = 0x0000,      /* the block, then a jump to fp_exit */
    SLOW_OFF = 0x0f00,      /* a jump to fp_slow, within the blocks' reach */
    PAGE_OFF = 0x1000,      /* the vcpu page */
    STACK_OFF = 0x2000,     /* a stack of 0x2000 bytes, its top at 0x4000 */
    STACK_TOP_OFF = 0x4000,
    DATA_OFF = 0x4000,      /* what memory operands point into */
    DATA_SIZE = 0x1000,
    SITE_OFF = 0x8000,      /* where the instruction "was" (RIP-relative operands) */
    /* 32-bit code: the harness's state, its code, and a stack of its own */
    STATE32_OFF = 0x9000,
    ENTER32_OFF = 0x9100,
    SLOW32_OFF = 0x9200,
    EXIT32_OFF = 0x9300,
    EXIT64_OFF = 0x9400,
    STACK32_TOP_OFF = 0xa000,
    /* faults: a stack page between two pages nothing may touch */
    GUARD_BELOW_OFF = 0xb000,
    FAULT_STACK_OFF = 0xc000,
    GUARD_ABOVE_OFF = 0xd000,
};

/* The 32-bit harness's state, in the arena. */
typedef struct fp_state32 {
    uint32_t in[8], in_flags;
    uint32_t out[8], out_flags;
    uint32_t target, went_slow;
} fp_state32;

static uint8_t *arena;

static void build_harness32(void);

static void arena_setup(void)
{
    arena = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    cr_assert_neq(arena, MAP_FAILED);
    build_harness32();
}

static void arena_teardown(void)
{
    munmap(arena, ARENA_SIZE);
}

static uint64_t at(size_t off)
{
    return (uint64_t)(uintptr_t)(arena + off);
}

/* pk_emulate's memory: this process's, inside the arena only. */
static bool arena_read(void *ctx, uint64_t addr, void *buf, size_t n)
{
    (void)ctx;
    if (addr < at(STACK_OFF) || addr + n > at(DATA_OFF + DATA_SIZE))
        return false;
    memcpy(buf, (void *)(uintptr_t)addr, n);
    return true;
}

static bool arena_write(void *ctx, uint64_t addr, const void *buf, size_t n)
{
    (void)ctx;
    if (addr < at(STACK_OFF) || addr + n > at(DATA_OFF + DATA_SIZE))
        return false;
    memcpy((void *)(uintptr_t)addr, buf, n);
    return true;
}

static const pk_guest_mem arena_mem = { NULL, arena_read, arena_write };

/* ---- random states ------------------------------------------------------------------ */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void random_vcpu(pk_vcpu *v)
{
    pk_vcpu_reset(v, 64);
    v->cpl = next() & 1 ? 3 : 0;
    v->vflags = next() & (PK_FLAG_IF | PK_FLAG_IOPL | PK_FLAG_NT | PK_FLAG_ID);
    v->cr0 = next();
    v->cr4 = next() & 3 ? 0x20 : 0x20 | (1u << 11); /* UMIP now and then */
    for (int i = 0; i < PK_SEG_COUNT; i++)
        v->seg[i].selector = (uint16_t)next();
    v->gdtr.base = next();
    v->gdtr.limit = (uint16_t)next();
    v->idtr.base = next();
    v->idtr.limit = (uint16_t)next();
}

/* Real flags the harness can load: no TF, no AC; IF is 1 in any case. */
static uint64_t random_flags(void)
{
    uint64_t f = next() & (PK_FLAG_CF | PK_FLAG_PF | PK_FLAG_AF | PK_FLAG_ZF | PK_FLAG_SF |
                           PK_FLAG_DF | PK_FLAG_OF | PK_FLAG_NT | PK_FLAG_ID);
    return f | PK_FLAG_IF | 2;
}

/* ---- one trial ---------------------------------------------------------------------- */

/* jmp [rip+d] to an aligned .quad to: an absolute jump that changes no
 * register (and reads its target aligned: the block's POPF may have set
 * AC). */
static void jump_to(uint8_t *at_, void (*to)(void))
{
    uint8_t *next = at_ + 6, *quad = (uint8_t *)(((uintptr_t)next + 7) & ~(uintptr_t)7);
    int32_t d = (int32_t)(quad - next);
    uint64_t target = (uint64_t)(uintptr_t)to;
    at_[0] = 0xff;
    at_[1] = 0x25;
    memcpy(at_ + 2, &d, 4);
    memcpy(quad, &target, 8);
}

/* Runs code assembled at the arena's start (a block, or nothing) from
 * fp_in; fp_out gets the state after. */
static void run_code(const uint8_t *code, size_t len)
{
    uint8_t *c = arena + CODE_OFF;
    if (len)
        memcpy(c, code, len);
    jump_to(c + len, fp_exit);
    jump_to(arena + SLOW_OFF, fp_slow);
    fp_went_slow = 0;
    fp_enter(at(CODE_OFF));
}

static uint8_t memory_before[STACK_TOP_OFF - STACK_OFF + DATA_SIZE];

static void save_memory(uint8_t *into)
{
    memcpy(into, arena + STACK_OFF, sizeof memory_before);
}

static void load_memory(const uint8_t *from)
{
    memcpy(arena + STACK_OFF, from, sizeof memory_before);
}

/* The offset in the arena's stack and data of the first byte that differs,
 * from from on. */
static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t from)
{
    for (size_t i = from; i < sizeof memory_before; i++)
        if (a[i] != b[i])
            return i + STACK_OFF;
    return 0;
}

/* An instruction to try: its bytes, decoded at the site. */
typedef struct form {
    const char *name;
    uint8_t bytes[15];
    size_t len;
} form;

/* ---- 32-bit code ------------------------------------------------------------------------ */

static fp_state32 *state32(void)
{
    return (fp_state32 *)(arena + STATE32_OFF);
}

static ZydisEncoderOperand r_(ZydisRegister r)
{
    return (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_REGISTER, .reg.value = r };
}

static ZydisEncoderOperand m_(ZydisRegister base, uint64_t disp, unsigned size)
{
    return (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_MEMORY,
                                  .mem = { .base = base, .displacement = (int64_t)disp,
                                           .size = (ZyanU16)size } };
}

static ZydisEncoderOperand i_(uint64_t v)
{
    return (ZydisEncoderOperand){ .type = ZYDIS_OPERAND_TYPE_IMMEDIATE, .imm.u = v };
}

/* Encodes one instruction at *p (mode 32 or 64) and moves *p past it. */
static void put(uint8_t **p, unsigned bits, ZydisMnemonic mn, unsigned count,
                ZydisEncoderOperand a, ZydisEncoderOperand b)
{
    ZydisEncoderRequest r;
    memset(&r, 0, sizeof r);
    r.machine_mode = bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32;
    r.mnemonic = mn;
    r.operand_count = (ZyanU8)count;
    r.operands[0] = a;
    r.operands[1] = b;
    if (mn == ZYDIS_MNEMONIC_JMP && a.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        r.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
        r.branch_width = ZYDIS_BRANCH_WIDTH_32;
    }
    ZyanUSize n = ZYDIS_MAX_INSTRUCTION_LENGTH;
    cr_assert(ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&r, *p, &n,
                                                                 (uint64_t)(uintptr_t)*p)),
              "the 32-bit harness encodes (%s)", ZydisMnemonicGetString(mn));
    *p += n;
}

/* The 32-bit harness, in the arena: ENTER32 loads the state (as fp_enter
 * does) and jumps to the target; SLOW32 notes the way to the monitor;
 * EXIT32 saves the state and far-jumps to EXIT64, which returns from
 * fp_enter32 in 64-bit code. */
static void build_harness32(void)
{
    static const ZydisRegister regs[8] = { ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_ECX,
                                           ZYDIS_REGISTER_EDX, ZYDIS_REGISTER_EBX,
                                           ZYDIS_REGISTER_ESP, ZYDIS_REGISTER_EBP,
                                           ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_EDI };
    uint64_t st = at(STATE32_OFF);
    const ZydisEncoderOperand none = { 0 };
    uint8_t *p = arena + ENTER32_OFF;
    put(&p, 32, ZYDIS_MNEMONIC_MOV, 2, r_(ZYDIS_REGISTER_ESP), i_(at(STACK32_TOP_OFF)));
    /* a 64-bit process has null DS and ES, which 32-bit code cannot use */
    put(&p, 32, ZYDIS_MNEMONIC_MOV, 2, r_(ZYDIS_REGISTER_EAX), r_(ZYDIS_REGISTER_SS));
    put(&p, 32, ZYDIS_MNEMONIC_MOV, 2, r_(ZYDIS_REGISTER_DS), r_(ZYDIS_REGISTER_AX));
    put(&p, 32, ZYDIS_MNEMONIC_MOV, 2, r_(ZYDIS_REGISTER_ES), r_(ZYDIS_REGISTER_AX));
    put(&p, 32, ZYDIS_MNEMONIC_PUSH, 1, m_(ZYDIS_REGISTER_NONE, st + offsetof(fp_state32, in_flags), 4), none);
    put(&p, 32, ZYDIS_MNEMONIC_POPFD, 0, none, none);
    for (int i = 0; i < 8; i++)
        put(&p, 32, ZYDIS_MNEMONIC_MOV, 2, r_(regs[i]),
            m_(ZYDIS_REGISTER_NONE, st + offsetof(fp_state32, in) + 4 * (unsigned)i, 4));
    put(&p, 32, ZYDIS_MNEMONIC_JMP, 1, m_(ZYDIS_REGISTER_NONE, st + offsetof(fp_state32, target), 4), none);

    p = arena + SLOW32_OFF;
    put(&p, 32, ZYDIS_MNEMONIC_MOV, 2, m_(ZYDIS_REGISTER_NONE, st + offsetof(fp_state32, went_slow), 4),
        i_(1));
    put(&p, 32, ZYDIS_MNEMONIC_JMP, 1, i_(at(EXIT32_OFF)), none);

    p = arena + EXIT32_OFF;
    for (int i = 0; i < 8; i++)
        put(&p, 32, ZYDIS_MNEMONIC_MOV, 2,
            m_(ZYDIS_REGISTER_NONE, st + offsetof(fp_state32, out) + 4 * (unsigned)i, 4), r_(regs[i]));
    put(&p, 32, ZYDIS_MNEMONIC_PUSHFD, 0, none, none);
    put(&p, 32, ZYDIS_MNEMONIC_POP, 1, m_(ZYDIS_REGISTER_NONE, st + offsetof(fp_state32, out_flags), 4), none);
    ZydisEncoderOperand far = { .type = ZYDIS_OPERAND_TYPE_POINTER,
                                .ptr = { .segment = 0x33, .offset = (ZyanU32)at(EXIT64_OFF) } };
    put(&p, 32, ZYDIS_MNEMONIC_JMP, 1, far, none);

    p = arena + EXIT64_OFF;
    put(&p, 64, ZYDIS_MNEMONIC_MOV, 2, r_(ZYDIS_REGISTER_RAX), i_((uint64_t)(uintptr_t)&fp_saved_rsp));
    put(&p, 64, ZYDIS_MNEMONIC_MOV, 2, r_(ZYDIS_REGISTER_RSP), m_(ZYDIS_REGISTER_RAX, 0, 8));
    put(&p, 64, ZYDIS_MNEMONIC_PUSHFQ, 0, none, none);
    put(&p, 64, ZYDIS_MNEMONIC_AND, 2, m_(ZYDIS_REGISTER_RSP, 0, 8), i_((uint64_t)~0x40400ull));
    put(&p, 64, ZYDIS_MNEMONIC_POPFQ, 0, none, none);
    static const ZydisRegister saved[] = { ZYDIS_REGISTER_R15, ZYDIS_REGISTER_R14,
                                           ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R12,
                                           ZYDIS_REGISTER_RBX, ZYDIS_REGISTER_RBP };
    for (int i = 0; i < 6; i++)
        put(&p, 64, ZYDIS_MNEMONIC_POP, 1, r_(saved[i]), none);
    put(&p, 64, ZYDIS_MNEMONIC_RET, 0, none, none);
}

/* Runs code (a block, or nothing) at the arena's start in 32-bit code. */
static void run_code32(const uint8_t *code, size_t len)
{
    uint8_t *c = arena + CODE_OFF;
    if (len)
        memcpy(c, code, len);
    uint8_t *p = c + len;
    put(&p, 32, ZYDIS_MNEMONIC_JMP, 1, i_(at(EXIT32_OFF)), (ZydisEncoderOperand){ 0 });
    state32()->target = (uint32_t)at(CODE_OFF);
    state32()->went_slow = 0;
    fp_enter32(at(ENTER32_OFF));
}

/* The registers and flags of a run, and whether it went to the monitor. */
typedef struct machine {
    uint64_t gpr[PK_GPR_COUNT];
    uint64_t flags;
    bool slow;
} machine;

/* Runs code (a block, or nothing) from in, in bits-bit code. */
static machine run_bits(unsigned bits, const uint8_t *code, size_t len, const machine *in)
{
    machine out = { .flags = 0 };
    if (bits == 64) {
        memcpy(fp_in.gpr, in->gpr, sizeof fp_in.gpr);
        fp_in.rflags = in->flags;
        run_code(code, len);
        memcpy(out.gpr, fp_out.gpr, sizeof out.gpr);
        out.flags = fp_out.rflags;
        out.slow = fp_went_slow;
        return out;
    }
    fp_state32 *st = state32();
    for (int i = 0; i < 8; i++)
        st->in[i] = (uint32_t)in->gpr[i];
    st->in_flags = (uint32_t)in->flags;
    run_code32(code, len);
    for (int i = 0; i < 8; i++)
        out.gpr[i] = st->out[i];
    out.flags = st->out_flags;
    out.slow = st->went_slow;
    return out;
}

/* One trial of form f in bits-bit code: the block and pk_emulate from the
 * same random state. A user program's block (user) keeps NT and ID in the
 * real flags: pk_emulate gets them from there and gives them back. */
static void trial(const form *f, int n, unsigned bits, bool user)
{
    unsigned nregs = bits == 64 ? PK_GPR_COUNT : 8, word = bits / 8;
    uint64_t wide = bits == 64 ? ~0ull : 0xffffffffull;
    int64_t red_zone = bits == 64 ? 128 : 0;
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (bits == 64)
        ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    else
        ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
    cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, f->bytes, f->len, &insn, ops)),
              "%s decodes", f->name);
    if (!pk_fastpath_has(&insn, ops, bits, user)) {
        cr_assert(user, "%s has a fast path", f->name);
        return;
    }

    pk_vcpu v;
    random_vcpu(&v);
    v.bits = bits;
    if (user)
        v.vflags &= ~(uint64_t)(PK_FLAG_NT | PK_FLAG_ID);
    bool pending = next() & 1;
    pk_vcpu_page *page = (pk_vcpu_page *)(arena + PAGE_OFF);
    pk_vcpu_page_store(page, &v, pending);

    uint8_t block[512];
    size_t len = 0;
    pk_error err;
    cr_assert_eq(pk_fastpath_emit(&insn, ops, bits, user, at(SITE_OFF), at(CODE_OFF),
                                  at(PAGE_OFF), at(bits == 64 ? SLOW_OFF : SLOW32_OFF), block,
                                  &len, &err),
                 PK_OK, "%s: %s", f->name, err.msg);

    /* The state: random registers, base and index registers inside the
     * data buffer (the displacements of the forms are small), a stack
     * whose top holds random values for POPF. */
    machine in = { .flags = random_flags() };
    for (unsigned i = 0; i < nregs; i++)
        in.gpr[i] = next() & wide;
    for (int i = 0; i < 2; i++) {
        const ZydisDecodedOperand *op = &ops[0];
        ZydisRegister r = i ? op->mem.index : op->mem.base;
        if (op->type != ZYDIS_OPERAND_TYPE_MEMORY || r == ZYDIS_REGISTER_NONE ||
            r == ZYDIS_REGISTER_RIP || ZydisRegisterGetId(r) == PK_RSP)
            continue;
        in.gpr[ZydisRegisterGetId(r)] = i ? next() % 16 : at(DATA_OFF + 0x400) + next() % 0x200;
    }
    in.gpr[PK_RSP] = at(STACK_TOP_OFF - 0x400) - (next() % 64) * word;
    for (size_t i = 0; i < sizeof memory_before; i++)
        arena[STACK_OFF + i] = (uint8_t)next();
    /* the flags the process really holds with those: loaded and read back */
    in.flags = run_bits(bits, NULL, 0, &in).flags;

    save_memory(memory_before);
    machine fast = run_bits(bits, block, len, &in);
    uint64_t fast_vflags = page->vflags;
    static uint8_t memory_fast[sizeof memory_before];
    save_memory(memory_fast);

    /* The same through pk_emulate. */
    load_memory(memory_before);
    pk_regs regs;
    memset(&regs, 0, sizeof regs);
    memcpy(regs.gpr, in.gpr, sizeof regs.gpr);
    regs.rflags = in.flags;
    regs.rip = at(SITE_OFF);
    pk_vcpu emu = v;
    const uint64_t nt_id = PK_FLAG_NT | PK_FLAG_ID;
    if (user)
        emu.vflags |= in.flags & nt_id;
    pk_emu_result r = pk_emulate(&insn, ops, &emu, &regs, &arena_mem);
    if (user) {
        regs.rflags = (regs.rflags & ~nt_id) | (emu.vflags & nt_id);
        emu.vflags &= ~nt_id;
    }
    static uint8_t memory_emu[sizeof memory_before];
    save_memory(memory_emu);

    bool window = r.status == PK_EMU_DONE && r.interrupt_window && pending;
    bool tf = r.status == PK_EMU_DONE && (regs.rflags & PK_FLAG_TF);
    bool must_go_slow = r.status != PK_EMU_DONE || window || tf;
    cr_assert_eq(fast.slow, must_go_slow, "%s (%u-bit), trial %d: went to the monitor %d, "
                 "emulation %d (interrupt window %d, TF %d)", f->name, bits, n, fast.slow,
                 r.status, window, tf);
    /* Going to the monitor, nothing may change. */
    const uint64_t *want = must_go_slow ? in.gpr : regs.gpr;
    uint64_t want_flags = must_go_slow ? in.flags : regs.rflags;
    uint64_t want_vflags = must_go_slow ? v.vflags & PK_VFLAGS_BITS : emu.vflags;
    const uint8_t *want_memory = must_go_slow ? memory_before : memory_emu;
    for (unsigned i = 0; i < nregs; i++)
        cr_assert_eq(fast.gpr[i], want[i] & wide, "%s (%u-bit), trial %d: register %u "
                     "0x%llx, expected 0x%llx", f->name, bits, n, i,
                     (unsigned long long)fast.gpr[i], (unsigned long long)(want[i] & wide));
    cr_assert_eq(fast.flags, want_flags & wide, "%s (%u-bit), trial %d: flags 0x%llx, "
                 "expected 0x%llx", f->name, bits, n, (unsigned long long)fast.flags,
                 (unsigned long long)want_flags);
    cr_assert_eq(fast_vflags, want_vflags, "%s (%u-bit), trial %d: virtual flags 0x%llx, "
                 "expected 0x%llx", f->name, bits, n, (unsigned long long)fast_vflags,
                 (unsigned long long)want_vflags);
    /* Memory from the red zone of the stack as it ends up: below it, the
     * block keeps its own scratch data, as any code may. */
    size_t live = (want[PK_RSP] & wide) - red_zone - at(STACK_OFF);
    cr_assert_arr_eq(memory_fast + live, want_memory + live, sizeof memory_before - live,
                     "%s (%u-bit), trial %d: memory (first difference at +0x%zx)", f->name,
                     bits, n, first_difference(memory_fast, want_memory, live));
}

static void trials(const form *forms, size_t count, unsigned bits)
{
    for (size_t i = 0; i < count; i++)
        for (int n = 0; n < 300; n++) {
            trial(&forms[i], n, bits, false);
            trial(&forms[i], n, bits, true);
        }
}

TestSuite(fastpath, .init = arena_setup, .fini = arena_teardown);

Test(fastpath, pushf_popf)
{
    static const form forms[] = {
        { "pushfq", { 0x9c }, 1 },
        { "pushfw", { 0x66, 0x9c }, 2 },
        { "popfq", { 0x9d }, 1 },
        { "popfw", { 0x66, 0x9d }, 2 },
    };
    trials(forms, sizeof forms / sizeof forms[0], 64);
}

Test(fastpath, cli_sti)
{
    static const form forms[] = {
        { "cli", { 0xfa }, 1 },
        { "sti", { 0xfb }, 1 },
    };
    trials(forms, sizeof forms / sizeof forms[0], 64);
    trials(forms, sizeof forms / sizeof forms[0], 32);
}

Test(fastpath, smsw_sldt_str_registers)
{
    static const form forms[] = {
        { "smsw eax", { 0x0f, 0x01, 0xe0 }, 3 },
        { "smsw ax", { 0x66, 0x0f, 0x01, 0xe0 }, 4 },
        { "smsw rax", { 0x48, 0x0f, 0x01, 0xe0 }, 4 },
        { "smsw r13", { 0x49, 0x0f, 0x01, 0xe5 }, 4 },
        { "sldt ecx", { 0x0f, 0x00, 0xc1 }, 3 },
        { "sldt r9w", { 0x66, 0x41, 0x0f, 0x00, 0xc1 }, 5 },
        { "str edx", { 0x0f, 0x00, 0xca }, 3 },
        { "str rsi", { 0x48, 0x0f, 0x00, 0xce }, 4 },
    };
    trials(forms, sizeof forms / sizeof forms[0], 64);
}

Test(fastpath, stores_to_memory)
{
    static const form forms[] = {
        { "smsw [rbx]", { 0x0f, 0x01, 0x23 }, 3 },
        { "sldt [rax+rcx*4+0x10]", { 0x0f, 0x00, 0x44, 0x88, 0x10 }, 5 },
        { "str [rsp+8]", { 0x0f, 0x00, 0x4c, 0x24, 0x08 }, 5 },
        { "sgdt [rdx]", { 0x0f, 0x01, 0x02 }, 3 },
        { "sgdt [rax+rbx*2+0x7f]", { 0x0f, 0x01, 0x44, 0x58, 0x7f }, 5 },
        { "sidt [rsp-0x20]", { 0x0f, 0x01, 0x4c, 0x24, 0xe0 }, 5 },
        { "sidt [r12+r15*8]", { 0x43, 0x0f, 0x01, 0x0c, 0xfc }, 5 },
        /* RIP-relative: from the site to the data buffer */
        { "sgdt [rip+d]", { 0x0f, 0x01, 0x05, 0x00, 0xc5, 0xff, 0xff }, 7 },
        { "mov [rbx+0x20], cs", { 0x8c, 0x4b, 0x20 }, 3 },
        { "mov [rsp], ss", { 0x8c, 0x14, 0x24 }, 3 },
    };
    trials(forms, sizeof forms / sizeof forms[0], 64);
}

Test(fastpath, mov_from_segment_registers)
{
    static const form forms[] = {
        { "mov eax, es", { 0x8c, 0xc0 }, 2 },
        { "mov ax, cs", { 0x66, 0x8c, 0xc8 }, 3 },
        { "mov rcx, ss", { 0x48, 0x8c, 0xd1 }, 3 },
        { "mov r10d, ds", { 0x41, 0x8c, 0xda }, 3 },
        { "mov edi, fs", { 0x8c, 0xe7 }, 2 },
        { "mov esi, gs", { 0x8c, 0xee }, 2 },
    };
    trials(forms, sizeof forms / sizeof forms[0], 64);
}


Test(fastpath, blocks_of_32_bit_code)
{
    static const form forms[] = {
        { "pushfd", { 0x9c }, 1 },
        { "pushfw", { 0x66, 0x9c }, 2 },
        { "popfd", { 0x9d }, 1 },
        { "popfw", { 0x66, 0x9d }, 2 },
        { "smsw eax", { 0x0f, 0x01, 0xe0 }, 3 },
        { "smsw si", { 0x66, 0x0f, 0x01, 0xe6 }, 4 },
        { "str edx", { 0x0f, 0x00, 0xca }, 3 },
        { "sldt [ebx+ecx*4+0x10]", { 0x0f, 0x00, 0x44, 0x8b, 0x10 }, 5 },
        { "str [esp+8]", { 0x0f, 0x00, 0x4c, 0x24, 0x08 }, 5 },
        { "sgdt [edx]", { 0x0f, 0x01, 0x02 }, 3 },
        { "sidt [esp+0x20]", { 0x0f, 0x01, 0x4c, 0x24, 0x20 }, 5 },
        { "mov [ebx+0x20], cs", { 0x8c, 0x4b, 0x20 }, 3 },
        { "mov eax, ss", { 0x8c, 0xd0 }, 2 },
        { "mov di, gs", { 0x66, 0x8c, 0xef }, 3 },
    };
    trials(forms, sizeof forms / sizeof forms[0], 32);
}

/* ---- faults inside a block ------------------------------------------------------- */

static sigjmp_buf fault_return;
static greg_t fault_regs[NGREG];

static void on_fault(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    memcpy(fault_regs, ((ucontext_t *)ctx)->uc_mcontext.gregs, sizeof fault_regs);
    siglongjmp(fault_return, 1);
}

/* The registers of a fault, in pk_regs' order. */
static void fault_gprs(uint64_t *gpr)
{
    static const int order[PK_GPR_COUNT] = {
        REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
        REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
    };
    for (int i = 0; i < PK_GPR_COUNT; i++)
        gpr[i] = (uint64_t)fault_regs[order[i]];
}

/* Runs form f's block from in with the pages around the fault stack
 * closed: when it faults, pk_fastpath_unwind must give back in exactly
 * (registers, RSP, the arithmetic and control flags). Returns whether it
 * faulted past the block's first instruction (with something to undo). */
static bool fault_trial(const form *f, const machine *in)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, f->bytes, f->len, &insn, ops)));
    uint8_t block[512];
    size_t len;
    pk_error err;
    cr_assert_eq(pk_fastpath_emit(&insn, ops, 64, false, at(SITE_OFF), at(CODE_OFF),
                                  at(PAGE_OFF), at(SLOW_OFF), block, &len, &err), PK_OK, "%s",
                 err.msg);
    mprotect(arena + GUARD_BELOW_OFF, 0x1000, PROT_NONE);
    mprotect(arena + GUARD_ABOVE_OFF, 0x1000, PROT_NONE);
    bool faulted = sigsetjmp(fault_return, 1) != 0;
    if (!faulted)
        run_bits(64, block, len, in);
    mprotect(arena + GUARD_BELOW_OFF, 0x3000, PROT_READ | PROT_WRITE);
    if (!faulted)
        return false;
    uint64_t gpr[PK_GPR_COUNT], rip = (uint64_t)fault_regs[REG_RIP];
    uint64_t flags = (uint64_t)fault_regs[REG_EFL];
    fault_gprs(gpr);
    cr_assert(rip >= at(CODE_OFF) && rip < at(CODE_OFF) + len, "%s: a fault outside the block",
              f->name);
    pk_fastpath_frame fr;
    bool undone = pk_fastpath_unwind(&insn, ops, 64, false, at(SITE_OFF), at(CODE_OFF),
                                     at(PAGE_OFF), rip, &fr);
    if (undone) {
        uint64_t rsp = gpr[PK_RSP];
        for (int i = 0; i < 4; i++)
            if (fr.saved[i] >= 0)
                memcpy(&gpr[i], (void *)(uintptr_t)(rsp + fr.saved[i]), 8);
        if (fr.flags >= 0)
            memcpy(&flags, (void *)(uintptr_t)(rsp + fr.flags), 8);
        gpr[PK_RSP] = rsp + fr.below;
    } else {
        cr_assert_eq(rip, at(CODE_OFF), "%s: no frame for a fault at +0x%llx", f->name,
                     (unsigned long long)(rip - at(CODE_OFF)));
    }
    for (int i = 0; i < PK_GPR_COUNT; i++)
        cr_assert_eq(gpr[i], in->gpr[i], "%s, RSP 0x%llx: register %d 0x%llx after the fault "
                     "at +0x%llx, 0x%llx before", f->name, (unsigned long long)in->gpr[PK_RSP],
                     i, (unsigned long long)gpr[i], (unsigned long long)(rip - at(CODE_OFF)),
                     (unsigned long long)in->gpr[i]);
    uint64_t kept = 0xcd5; /* CF PF AF ZF SF DF OF */
    cr_assert_eq(flags & kept, in->flags & kept, "%s: flags 0x%llx after the fault at +0x%llx, "
                 "0x%llx before", f->name, (unsigned long long)flags,
                 (unsigned long long)(rip - at(CODE_OFF)), (unsigned long long)in->flags);
    return undone;
}

Test(fastpath, faults_inside_blocks_unwind_to_the_site)
{
    /* Each block with RSP at every distance above the closed page below
     * the stack that makes one of its pushes fault (and under the one
     * above, where POPF's value lies); the memory operands point at the
     * closed page above. */
    static const form forms[] = {
        { "pushfq", { 0x9c }, 1 },
        { "pushfw", { 0x66, 0x9c }, 2 },
        { "popfq", { 0x9d }, 1 },
        { "popfw", { 0x66, 0x9d }, 2 },
        { "cli", { 0xfa }, 1 },
        { "sti", { 0xfb }, 1 },
        { "smsw eax", { 0x0f, 0x01, 0xe0 }, 3 },
        { "sgdt [rdx]", { 0x0f, 0x01, 0x02 }, 3 },
        { "sldt [rax+rcx*4+0x10]", { 0x0f, 0x00, 0x44, 0x88, 0x10 }, 5 },
        { "sidt [rsp-0x20]", { 0x0f, 0x01, 0x4c, 0x24, 0xe0 }, 5 },
        { "mov [rbx+0x20], cs", { 0x8c, 0x4b, 0x20 }, 3 },
    };
    struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_ONSTACK };
    struct sigaction old;
    static uint8_t altstack[65536];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack }, old_ss;
    cr_assert_eq(sigaltstack(&ss, &old_ss), 0);
    cr_assert_eq(sigaction(SIGSEGV, &sa, &old), 0);
    pk_vcpu v;
    pk_vcpu_reset(&v, 64);
    v.cpl = 0;
    v.vflags |= PK_FLAG_IF;
    pk_vcpu_page_store((pk_vcpu_page *)(arena + PAGE_OFF), &v, false);
    uint64_t below = at(FAULT_STACK_OFF), above = at(GUARD_ABOVE_OFF);
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        int faults = 0;
        for (int d = -16; d <= 200; d += 8) {
            machine in = { .flags = 0x202 | (next() & 0xcd5) };
            memset(arena + FAULT_STACK_OFF, 0, 0x1000); /* POPF's value: no TF, no AC */
            for (int i = 0; i < PK_GPR_COUNT; i++)
                in.gpr[i] = next();
            in.gpr[PK_RAX] = above - 0x10 - 4 * 3; /* [rax+rcx*4+0x10]: 6 bytes below */
            in.gpr[PK_RCX] = 3;
            in.gpr[PK_RDX] = above - 4;            /* sgdt's 10 bytes straddle it */
            in.gpr[PK_RBX] = above - 0x20;
            /* the pushes, 128 bytes below RSP and more, fault below; or
             * RSP right under the page above */
            in.gpr[PK_RSP] = d < 0 ? above + d : below + 128 + (uint64_t)d;
            faults += fault_trial(&forms[k], &in);
        }
        cr_assert_gt(faults, 0, "%s: no fault to undo", forms[k].name);
    }
    sigaction(SIGSEGV, &old, NULL);
    sigaltstack(&old_ss, NULL);
}
