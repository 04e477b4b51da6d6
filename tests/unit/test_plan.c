/* popek — unit tests: the patch plan's choice of tactic (patch.c), on an
 * ELF file assembled here: one function per rule, each with a PUSHF site. */
#include <criterion/criterion.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "popek/popek.h"

static const char source[] =
    "    .text\n"
    "    .globl _start\n"
    "_start: mov $60, %eax\n"
    "    xor %edi, %edi\n"
    "    syscall\n"
    /* The instruction after PUSHF moves: a RIP-relative load. */
    "    .p2align 4\n"
    "    .type moves_load, @function\n"
    "moves_load: pushf\n"
    "    mov var(%rip), %rax\n"
    "    pop %rcx\n"
    "    ret\n"
    "    .size moves_load, .-moves_load\n"
    /* A loop lands right after PUSHF, at the function's start: INT3. */
    "    .p2align 4\n"
    "    .type loop_inside, @function\n"
    "loop_inside: pushf\n"
    "1:  dec %ecx\n"
    "    jnz 1b\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size loop_inside, .-loop_inside\n"
    /* The same, with an instruction before PUSHF: the jump starts there. */
    "    .p2align 4\n"
    "    .type starts_before, @function\n"
    "starts_before: mov $3, %ecx\n"
    "    pushf\n"
    "1:  dec %ecx\n"
    "    jnz 1b\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size starts_before, .-starts_before\n"
    /* RET within five bytes: the bytes after it are dead padding. */
    "    .p2align 4\n"
    "    .type dead_after_ret, @function\n"
    "dead_after_ret: pushf\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size dead_after_ret, .-dead_after_ret\n"
    /* A relative call ends the jump: it returns to the original code. */
    "    .p2align 4\n"
    "    .type calls, @function\n"
    "calls: pushf\n"
    "    call moves_load\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size calls, .-calls\n"
    /* A call through a register would return into the trampoline. */
    "    .p2align 4\n"
    "    .type calls_indirect, @function\n"
    "calls_indirect: pushf\n"
    "    call *%rdi\n"
    "    pop %rax\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size calls_indirect, .-calls_indirect\n"
    /* An instruction that would read the jump's own bytes never moves. */
    "    .p2align 4\n"
    "    .type reads_itself, @function\n"
    "reads_itself: pushf\n"
    "    movzbl reads_itself(%rip), %eax\n"
    "    pop %rcx\n"
    "    ret\n"
    "    .size reads_itself, .-reads_itself\n"
    /* SYSCALL leaves its return address in RCX: it never moves. */
    "    .p2align 4\n"
    "    .type moves_syscall, @function\n"
    "moves_syscall: pushf\n"
    "    syscall\n"
    "    pop %rcx\n"
    "    pop %rcx\n"
    "    ret\n"
    "    .size moves_syscall, .-moves_syscall\n"
    /* A call through memory is no relative call: it cannot end a jump. */
    "    .p2align 4\n"
    "    .type calls_memory, @function\n"
    "calls_memory: pushf\n"
    "    call *var(%rip)\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size calls_memory, .-calls_memory\n"
    /* A far return often continues at the next byte (push %rax; lret):
     * the bytes after a site are never taken as dead. */
    "    .p2align 4\n"
    "    .type far_return, @function\n"
    "far_return: lretl\n"
    "    nop\n"
    "    nop\n"
    "    nop\n"
    "    ret\n"
    "    .size far_return, .-far_return\n"
    /* Bytes the stream from the function's start reads out of step (the
     * MOV recursive descent reaches starts after the data byte) never
     * start a jump. */
    "    .p2align 4\n"
    "    .type out_of_step, @function\n"
    "out_of_step: jmp 1f\n"
    "    .byte 0x3c\n"
    "1:  mov $0x90909090, %eax\n"
    "    pushf\n"
    "2:  popf\n"
    "    dec %ecx\n"
    "    jnz 2b\n"
    "    ret\n"
    "    .size out_of_step, .-out_of_step\n"
    /* IRET to the next byte, which push $1f names: no jump of its own
     * fits, but the segment load's jump grows to cover it. */
    "    .p2align 4\n"
    "    .type iret_to_self, @function\n"
    "iret_to_self: mov %cs, %eax\n"
    "    push %rax\n"
    "    push $1f\n"
    "    iretq\n"
    "1:  ret\n"
    "    .size iret_to_self, .-iret_to_self\n"
    /* An ENDBR64 after PUSHF marks an indirect-branch target. */
    "    .p2align 4\n"
    "    .type endbr, @function\n"
    "endbr: pushf\n"
    "    endbr64\n"
    "    pop %rax\n"
    "    ret\n"
    "    .size endbr, .-endbr\n"
    /* A jump through a register: its targets are unknown. */
    "    .p2align 4\n"
    "    .type opaque, @function\n"
    "opaque: pushf\n"
    "    pop %rax\n"
    "    mov %rdi, %rax\n"
    "    jmp *%rax\n"
    "    .size opaque, .-opaque\n"
    /* A switch through a table of offsets from the table: its cases are
     * known, so code moves; a case right after PUSHF is a target. */
    "    .p2align 4\n"
    "    .type switch_far, @function\n"
    "switch_far: pushf\n"
    "    pop %rcx\n"
    "    lea cases_far(%rip), %rdx\n"
    "    movslq (%rdx,%rdi,4), %rax\n"
    "    add %rdx, %rax\n"
    "    jmp *%rax\n"
    "1:  mov $1, %eax\n"
    "    ret\n"
    "2:  mov $2, %eax\n"
    "    ret\n"
    "    .size switch_far, .-switch_far\n"
    "    .pushsection .rodata\n"
    "cases_far: .long 1b - cases_far, 2b - cases_far\n"
    "    .popsection\n"
    "    .p2align 4\n"
    "    .type switch_near, @function\n"
    "switch_near: pushf\n"
    "1:  pop %rcx\n"
    "    lea cases_near(%rip), %rdx\n"
    "    movslq (%rdx,%rdi,4), %rax\n"
    "    add %rdx, %rax\n"
    "    jmp *%rax\n"
    "2:  ret\n"
    "    .size switch_near, .-switch_near\n"
    "    .pushsection .rodata\n"
    "cases_near: .long 1b - cases_near, 2b - cases_near\n"
    "    .popsection\n"
    /* A pointer in data names the instruction after PUSHF. */
    "    .p2align 4\n"
    "    .type pointed_at, @function\n"
    "pointed_at: pushf\n"
    "pointed_at_pop: pop %rax\n"
    "    add $1, %rax\n"
    "    ret\n"
    "    .size pointed_at, .-pointed_at\n"
    /* The kernel's exception table names the instruction after PUSHF. */
    "    .p2align 4\n"
    "    .type in_ex_table, @function\n"
    "in_ex_table: pushf\n"
    "2:  mov (%rdi), %rax\n"
    "    pop %rcx\n"
    "    ret\n"
    "    .size in_ex_table, .-in_ex_table\n"
    "    .pushsection __ex_table, \"a\"\n"
    "    .balign 4\n"
    "    .long 2b - ., in_ex_table - ., 0\n"
    "    .popsection\n"
    "    .data\n"
    "    .p2align 3\n"
    "var: .quad 42\n"
    "    .quad pointed_at_pop\n";

static char dir[] = "/tmp/popek-plan-XXXXXX";
static char path[300], shstk_path[300];

static void build(void)
{
    cr_assert_not_null(mkdtemp(dir));
    char src[300], cmd[1024];
    snprintf(src, sizeof src, "%s/plan.S", dir);
    snprintf(path, sizeof path, "%s/plan", dir);
    FILE *f = fopen(src, "w");
    cr_assert_not_null(f);
    fputs(source, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "gcc -nostdlib -static -no-pie -Wl,--build-id=none %s -o %s", src,
             path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    /* The same, marked as running with IBT and a shadow stack. */
    snprintf(shstk_path, sizeof shstk_path, "%s/plan-shstk", dir);
    snprintf(cmd, sizeof cmd, "gcc -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,shstk "
             "-Wl,-z,ibt %s -o %s", src, shstk_path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void clean(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(plan, .init = build, .fini = clean);

typedef struct planned {
    pk_image img;
    pk_scan scan;
    pk_flow flow;
    pk_plan plan;
} planned;

static void plan_path(planned *p, const char *file, pk_tactic_choice tactic, bool passthrough)
{
    pk_error err;
    cr_assert_eq(pk_image_load_file(&p->img, file, &err), PK_OK, "%s", err.msg);
    pk_scan_options so = { .sets = PK_SET_PG, .flow = true };
    cr_assert_eq(pk_scan_image(&p->img, &so, &p->scan, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_flow_build(&p->img, &p->flow, &err), PK_OK, "%s", err.msg);
    uint64_t code;
    cr_assert_eq(pk_elf_code_vaddr(p->img.data, p->img.data_len, &code, &err), PK_OK);
    pk_plan_options po = { .tactic = tactic, .passthrough = passthrough };
    cr_assert_eq(pk_patch_plan(&p->img, &p->scan, &p->flow, code, &po, &p->plan, &err), PK_OK,
                 "%s", err.msg);
}

static void plan_file(planned *p, pk_tactic_choice tactic, bool passthrough)
{
    plan_path(p, path, tactic, passthrough);
}

static void planned_free(planned *p)
{
    pk_plan_free(&p->plan);
    pk_flow_free(&p->flow);
    pk_scan_free(&p->scan);
    pk_image_free(&p->img);
}

static uint64_t symbol(const pk_image *img, const char *name)
{
    for (size_t i = 0; i < img->nsymbols; i++)
        if (!strcmp(img->symbols[i].name, name))
            return img->symbols[i].addr;
    cr_assert_fail("no symbol %s", name);
    return 0;
}

/* The tactic of the PUSHF at the start of function name (+ skip bytes). */
static const pk_patch *pushf_patch(const planned *p, const char *name, unsigned skip)
{
    const pk_patch *patch = pk_patch_table_find(&p->plan.table, symbol(&p->img, name) + skip);
    cr_assert_not_null(patch, "no patch in %s", name);
    cr_assert_eq(patch->cls, PK_CLASS_PUSHF);
    return patch;
}

/* Decodes the trampoline instruction at addr from the plan's code. */
static void decode_trampoline(const pk_plan *plan, uint64_t addr, ZydisDecodedInstruction *insn,
                              ZydisDecodedOperand *ops)
{
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    cr_assert(addr >= plan->code_vaddr && addr < plan->code_vaddr + plan->code_len);
    size_t off = addr - plan->code_vaddr;
    cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, plan->code + off, plan->code_len - off,
                                                  insn, ops)));
}

Test(plan, a_rip_relative_load_moved_reads_the_same_address)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    const pk_patch *patch = pushf_patch(&p, "moves_load", 0);
    cr_assert_eq(patch->tactic, PK_TACTIC_JMP_DISPLACED);
    const pk_jump *j = pk_patch_table_jump_at(&p.plan.table, patch->site);
    cr_assert_not_null(j);
    cr_assert_eq(j->site, patch->site);
    cr_assert_eq(j->len, 8, "pushf and the 7-byte load");
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    decode_trampoline(&p.plan, patch->trampoline, &insn, ops);
    cr_assert_eq(insn.mnemonic, ZYDIS_MNEMONIC_INT3, "the monitor's entry for the PUSHF");
    decode_trampoline(&p.plan, patch->trampoline + 1, &insn, ops);
    cr_assert_eq(insn.mnemonic, ZYDIS_MNEMONIC_MOV);
    ZyanU64 addr;
    cr_assert(ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn, &ops[1], patch->trampoline + 1,
                                                    &addr)));
    cr_assert_eq(addr, symbol(&p.img, "var"));
    planned_free(&p);
}

Test(plan, a_branch_target_inside_forces_int3)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    cr_assert_eq(pushf_patch(&p, "loop_inside", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "pointed_at", 0)->tactic, PK_TACTIC_INT3,
                 "a pointer in data is a target");
    cr_assert_geq(p.plan.nojump[PK_NOJUMP_TARGET], 2);
    planned_free(&p);
}

Test(plan, switch_tables_are_read)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    cr_assert_eq(pushf_patch(&p, "switch_far", 0)->tactic, PK_TACTIC_JMP_DISPLACED,
                 "its cases are known and far from the pushf");
    cr_assert_eq(pushf_patch(&p, "switch_near", 0)->tactic, PK_TACTIC_INT3,
                 "a case lands right after the pushf");
    planned_free(&p);
}

Test(plan, a_jump_may_start_before_the_site)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    uint64_t fn = symbol(&p.img, "starts_before");
    const pk_patch *patch = pushf_patch(&p, "starts_before", 5);
    cr_assert_eq(patch->tactic, PK_TACTIC_JMP_DISPLACED);
    const pk_jump *j = pk_patch_table_jump_at(&p.plan.table, patch->site);
    cr_assert_eq(j->site, fn, "the jump replaces the mov before the pushf");
    cr_assert_eq(j->len, 6, "and ends before the loop's target");
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    decode_trampoline(&p.plan, j->trampoline, &insn, ops);
    cr_assert_eq(insn.mnemonic, ZYDIS_MNEMONIC_MOV, "the moved mov runs first");
    cr_assert_eq(patch->trampoline, j->trampoline + insn.length);
    planned_free(&p);
}

Test(plan, a_jump_grows_to_cover_the_next_site)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    uint64_t fn = symbol(&p.img, "iret_to_self");
    const pk_patch *mov = pk_patch_table_find(&p.plan.table, fn);
    const pk_patch *iret = pk_patch_table_find(&p.plan.table, fn + 2 + 1 + 5);
    cr_assert_not_null(mov);
    cr_assert_not_null(iret);
    cr_assert_eq(iret->cls, PK_CLASS_IRET);
    cr_assert_eq(iret->tactic, PK_TACTIC_JMP_DISPLACED);
    const pk_jump *j = pk_patch_table_jump_at(&p.plan.table, iret->site);
    cr_assert_eq(j->site, fn, "one jump over the load, the pushes and the iret");
    cr_assert_eq(j->len, 10);
    cr_assert_eq(pk_patch_table_jump_at(&p.plan.table, mov->site), j);
    planned_free(&p);
}

Test(plan, bytes_after_a_ret_are_dead)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    const pk_patch *patch = pushf_patch(&p, "dead_after_ret", 0);
    cr_assert_eq(patch->tactic, PK_TACTIC_JMP_DISPLACED);
    const pk_jump *j = pk_patch_table_jump_at(&p.plan.table, patch->site);
    cr_assert_eq(j->len, 5, "pushf, pop, ret and two bytes of padding");
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    decode_trampoline(&p.plan, patch->trampoline + 2, &insn, ops);
    cr_assert_eq(insn.mnemonic, ZYDIS_MNEMONIC_RET);
    planned_free(&p);
}

Test(plan, a_relative_call_moved_still_calls_the_same_target)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    const pk_patch *patch = pushf_patch(&p, "calls", 0);
    cr_assert_eq(patch->tactic, PK_TACTIC_JMP_DISPLACED);
    const pk_jump *j = pk_patch_table_jump_at(&p.plan.table, patch->site);
    cr_assert_eq(j->len, 6, "pushf and the call");
    /* int3; push rax; lea rax, [return address]; xchg [rsp], rax; jmp target */
    static const ZydisMnemonic want[] = { ZYDIS_MNEMONIC_INT3, ZYDIS_MNEMONIC_PUSH,
                                          ZYDIS_MNEMONIC_LEA, ZYDIS_MNEMONIC_XCHG,
                                          ZYDIS_MNEMONIC_JMP };
    uint64_t at = j->trampoline;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    ZyanU64 addr;
    for (unsigned i = 0; i < 5; i++, at += insn.length) {
        decode_trampoline(&p.plan, at, &insn, ops);
        cr_assert_eq(insn.mnemonic, want[i], "instruction %u", i);
        if (insn.mnemonic == ZYDIS_MNEMONIC_LEA) {
            cr_assert(ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn, &ops[1], at, &addr)));
            cr_assert_eq(addr, j->site + j->len, "the return address is the original code's");
        }
    }
    cr_assert(ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn, &ops[0], at - insn.length, &addr)));
    cr_assert_eq(addr, symbol(&p.img, "moves_load"), "the call's target");
    planned_free(&p);
}

Test(plan, no_call_moves_under_a_shadow_stack)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    cr_assert_eq(p.img.x86_features, 0);
    planned_free(&p);
    plan_path(&p, shstk_path, PK_CHOOSE_AUTO, false);
    cr_assert_eq(p.img.x86_features,
                 GNU_PROPERTY_X86_FEATURE_1_IBT | GNU_PROPERTY_X86_FEATURE_1_SHSTK,
                 "read from the GNU property note");
    cr_assert_eq(pushf_patch(&p, "calls", 0)->tactic, PK_TACTIC_INT3,
                 "the callee's RET would find no shadow-stack entry");
    cr_assert_eq(pushf_patch(&p, "moves_load", 0)->tactic, PK_TACTIC_JMP_DISPLACED);
    planned_free(&p);
}

Test(plan, what_cannot_move_forces_int3)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    cr_assert_eq(pushf_patch(&p, "calls_indirect", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "calls_memory", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "reads_itself", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "moves_syscall", 0)->tactic, PK_TACTIC_INT3);
    const pk_patch *lret = pk_patch_table_find(&p.plan.table, symbol(&p.img, "far_return"));
    cr_assert_not_null(lret);
    cr_assert_eq(lret->tactic, PK_TACTIC_INT3, "no dead bytes after a far return");
    /* The jump before out_of_step's PUSHF may start at the real MOV, not in it. */
    uint64_t mov = symbol(&p.img, "out_of_step") + 3;
    const pk_patch *oos = pk_patch_table_find(&p.plan.table, mov + 5);
    cr_assert_not_null(oos);
    const pk_jump *j = pk_patch_table_jump_at(&p.plan.table, oos->site);
    cr_assert(!j || j->site == mov || j->site == oos->site, "jump at 0x%llx",
              (unsigned long long)(j ? j->site : 0));
    cr_assert_eq(pushf_patch(&p, "endbr", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "opaque", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "in_ex_table", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_RELOCATE], 3);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_ENDBR], 1);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_OPAQUE], 1);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_PINNED], 1);
    planned_free(&p);
}

Test(plan, tactics_as_asked)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_INT3, false);
    cr_assert_eq(p.plan.table.njumps, 0);
    cr_assert_eq(p.plan.code_len, 0);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_CHOSEN], p.plan.table.count);
    planned_free(&p);

    /* Jumps only: a site none fits is an error, or, allowed, a skip. */
    pk_error err;
    cr_assert_eq(pk_image_load_file(&p.img, path, &err), PK_OK);
    pk_scan_options so = { .sets = PK_SET_PG, .flow = true };
    cr_assert_eq(pk_scan_image(&p.img, &so, &p.scan, &err), PK_OK);
    cr_assert_eq(pk_flow_build(&p.img, &p.flow, &err), PK_OK);
    pk_plan_options po = { .tactic = PK_CHOOSE_JMP };
    cr_assert_eq(pk_patch_plan(&p.img, &p.scan, &p.flow, 0x800000, &po, &p.plan, &err),
                 PK_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "no jump fits"), "%s", err.msg);
    po.allow_skip = true;
    cr_assert_eq(pk_patch_plan(&p.img, &p.scan, &p.flow, 0x800000, &po, &p.plan, &err), PK_OK);
    for (size_t i = 0; i < p.plan.table.count; i++)
        cr_assert_neq(p.plan.table.patches[i].tactic, PK_TACTIC_INT3);
    cr_assert_geq(p.plan.nskips, 6);
    planned_free(&p);
}

Test(plan, passthrough_leaves_int3_sites_alone)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, true);
    cr_assert(p.plan.table.flags & PK_TABLE_PASSTHROUGH);
    for (size_t i = 0; i < p.plan.table.count; i++)
        cr_assert_neq(p.plan.table.patches[i].tactic, PK_TACTIC_INT3);
    cr_assert_null(pk_patch_table_find(&p.plan.table, symbol(&p.img, "loop_inside")));
    bool listed = false;
    for (size_t i = 0; i < p.plan.nskips; i++)
        listed |= p.plan.skips[i].site == symbol(&p.img, "loop_inside");
    cr_assert(listed, "a site left alone is listed with its reason");
    /* The PUSHF itself runs in the trampoline. */
    const pk_patch *patch = pushf_patch(&p, "moves_load", 0);
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    decode_trampoline(&p.plan, patch->trampoline, &insn, ops);
    cr_assert_eq(insn.mnemonic, ZYDIS_MNEMONIC_PUSHFQ);
    planned_free(&p);
}

Test(plan, a_jump_never_reaches_past_its_region)
{
    /* nop; pushf; ret, and the region ends: the bytes a jump would call
     * dead after the RET are not there. */
    static const uint8_t code[] = { 0x90, 0x9c, 0xc3 };
    planned p = { 0 };
    pk_error err;
    cr_assert_eq(pk_image_load_raw_memory(&p.img, code, sizeof code, "raw", 64, 0x1000, &err),
                 PK_OK);
    pk_scan_options so = { .sets = PK_SET_PG, .flow = true };
    cr_assert_eq(pk_scan_image(&p.img, &so, &p.scan, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_flow_build(&p.img, &p.flow, &err), PK_OK, "%s", err.msg);
    pk_plan_options po = { .tactic = PK_CHOOSE_AUTO };
    cr_assert_eq(pk_patch_plan(&p.img, &p.scan, &p.flow, 0x100000, &po, &p.plan, &err), PK_OK,
                 "%s", err.msg);
    cr_assert_eq(p.plan.table.count, 1);
    cr_assert_eq(p.plan.table.patches[0].tactic, PK_TACTIC_INT3);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_SHORT], 1);
    planned_free(&p);
}
