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
    /* The kernel's exception table names the instruction after PUSHF: a
     * monitor delivers its fault at this address when it has moved (its
     * fixup is the function's start, where the jump begins). */
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
    /* A fixup resumes at the POP after PUSHF (pushf 1 + pop 1 + mov 3: a
     * jump of 5 bytes); the faulting load is elsewhere. */
    "    .p2align 4\n"
    "    .type ex_resume, @function\n"
    "ex_resume: pushf\n"
    "1:  pop %rcx\n"
    "    mov %rcx, %rax\n"
    "    ret\n"
    "2:  movzbl (%rdi), %eax\n"
    "    ret\n"
    "    .size ex_resume, .-ex_resume\n"
    "    .pushsection __ex_table, \"a\"\n"
    "    .long 2b - ., 1b - ., 0\n"
    "    .popsection\n"
    /* A fixup inside the MOV after PUSHF: no instruction of the
     * trampoline is there. */
    "    .p2align 4\n"
    "    .type ex_resume_inside, @function\n"
    "ex_resume_inside: pushf\n"
    "1:  mov %rcx, %rax\n"
    "    pop %rcx\n"
    "    ret\n"
    "2:  movzbl (%rdi), %eax\n"
    "    ret\n"
    "    .size ex_resume_inside, .-ex_resume_inside\n"
    "    .pushsection __ex_table, \"a\"\n"
    "    .long 2b - ., 1b + 1 - ., 0\n"
    "    .popsection\n"
    /* A fixup in the dead bytes after a RET: not copied. */
    "    .p2align 4\n"
    "    .type ex_resume_dead, @function\n"
    "ex_resume_dead: pushf\n"
    "    pop %rax\n"
    "    ret\n"
    "1:  nop\n"
    "    nop\n"
    "    ret\n"
    "2:  movzbl (%rdi), %eax\n"
    "    ret\n"
    "    .size ex_resume_dead, .-ex_resume_dead\n"
    "    .pushsection __ex_table, \"a\"\n"
    "    .long 2b - ., 1b - ., 0\n"
    "    .popsection\n"
    /* A fixup that is a loop's target too: the loop reaches it natively. */
    "    .p2align 4\n"
    "    .type ex_resume_loop, @function\n"
    "ex_resume_loop: pushf\n"
    "1:  dec %ecx\n"
    "    jnz 1b\n"
    "    pop %rax\n"
    "    ret\n"
    "2:  movzbl (%rdi), %eax\n"
    "    ret\n"
    "    .size ex_resume_loop, .-ex_resume_loop\n"
    "    .pushsection __ex_table, \"a\"\n"
    "    .long 2b - ., 1b - ., 0\n"
    "    .popsection\n"
    /* A MOV load whose fixup is the next instruction may be
     * load_unaligned_zeropad's, whose handler decodes it where it was. */
    "    .p2align 4\n"
    "    .type ex_zeropad, @function\n"
    "ex_zeropad: pushf\n"
    "2:  mov (%rdi), %eax\n"
    "3:  pop %rcx\n"
    "    ret\n"
    "    .size ex_zeropad, .-ex_zeropad\n"
    "    .pushsection __ex_table, \"a\"\n"
    "    .long 2b - ., 3b - ., 0\n"
    "    .popsection\n"
    /* A BUG's UD2 after PUSHF: handle_bug reads it where it was. */
    "    .p2align 4\n"
    "    .type bug_ud2, @function\n"
    "bug_ud2: pushf\n"
    "2:  ud2\n"
    "    pop %rcx\n"
    "    ret\n"
    "    .size bug_ud2, .-bug_ud2\n"
    "    .pushsection __bug_table, \"aw\"\n"
    "    .long 2b - ., 0\n"
    "    .word 0, 0\n"
    "    .popsection\n"
    /* Jumps through a register that the MOV right before sets: to a
     * label, and through one fixed pointer. */
    "    .p2align 4\n"
    "    .type set_jump, @function\n"
    "set_jump: pushf\n"
    "    pop %rax\n"
    "    mov $1f, %rax\n"
    "    jmp *%rax\n"
    "1:  ret\n"
    "    .size set_jump, .-set_jump\n"
    "    .p2align 4\n"
    "    .type saved_jump, @function\n"
    "saved_jump: pushf\n"
    "    pop %rax\n"
    "    mov saved(%rip), %rax\n"
    "    jmp *%rax\n"
    "    .size saved_jump, .-saved_jump\n"
    /* The same, but something else jumps to the JMP: its register may
     * come from there. */
    "    .p2align 4\n"
    "    .type set_jump_joined, @function\n"
    "set_jump_joined: pushf\n"
    "    pop %rax\n"
    "    test %rdi, %rdi\n"
    "    jz 2f\n"
    "    mov $1f, %rax\n"
    "2:  jmp *%rax\n"
    "1:  ret\n"
    "    .size set_jump_joined, .-set_jump_joined\n"
    /* A switch whose JMP a linear walk from the function's start does not
     * see (the stray 48 B8 makes a 10-byte MOV swallow it): its table must
     * still be read, and its case 2 bytes after the PUSHF (a label no
     * symbol names) keeps a jump off the PUSHF. */
    "    .p2align 4\n"
    "    .type hidden_switch, @function\n"
    "hidden_switch: cmp $3, %edi\n"
    "    ja 3f\n"
    "    lea hidden_table(%rip), %rdx\n"
    "    movslq (%rdx,%rdi,4), %rax\n"
    "    add %rdx, %rax\n"
    "    jmp 1f\n"
    "    .byte 0x48, 0xb8\n"
    "1:  jmp *%rax\n"
    "    .byte 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc\n"
    ".Lhidden_case0: pushf\n"
    "    pop %rcx\n"
    ".Lhidden_case1: mov $1, %eax\n"
    "    ret\n"
    "3:  xor %eax, %eax\n"
    "    ret\n"
    "    .size hidden_switch, .-hidden_switch\n"
    "    .pushsection .rodata\n"
    "hidden_table: .long .Lhidden_case0 - hidden_table, .Lhidden_case1 - hidden_table\n"
    "    .long .Lhidden_case0 - hidden_table, .Lhidden_case1 - hidden_table\n"
    "    .popsection\n"
    "    .data\n"
    "    .p2align 3\n"
    "var: .quad 42\n"
    "    .quad pointed_at_pop\n"
    "saved: .quad 0\n";

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

static void plan_with(planned *p, const char *file, const pk_plan_options *po)
{
    pk_error err;
    cr_assert_eq(pk_image_load_file(&p->img, file, &err), PK_OK, "%s", err.msg);
    pk_scan_options so = { .sets = PK_SET_PG, .flow = true };
    cr_assert_eq(pk_scan_image(&p->img, &so, &p->scan, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_flow_build(&p->img, &p->flow, &err), PK_OK, "%s", err.msg);
    uint64_t code;
    cr_assert_eq(pk_elf_code_vaddr(p->img.data, p->img.data_len, false, &code, NULL, &err), PK_OK);
    cr_assert_eq(pk_patch_plan(&p->img, &p->scan, &p->flow, code, po, &p->plan, &err), PK_OK,
                 "%s", err.msg);
}

static void plan_path(planned *p, const char *file, pk_tactic_choice tactic, bool passthrough)
{
    pk_plan_options po = { .tactic = tactic, .passthrough = passthrough };
    plan_with(p, file, &po);
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
    cr_assert_eq(pushf_patch(&p, "set_jump_joined", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "ex_zeropad", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "bug_ud2", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_RELOCATE], 3);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_ENDBR], 1);
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_OPAQUE], 2, "opaque and set_jump_joined");
    cr_assert_eq(p.plan.nojump[PK_NOJUMP_PINNED], 2, "ex_zeropad and bug_ud2");
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

/* Why the plan left the site at addr alone (passthrough), or NULL. */
static const char *left_because(const planned *p, uint64_t addr)
{
    for (size_t i = 0; i < p->plan.nskips; i++)
        if (p->plan.skips[i].site == addr)
            return p->plan.skips[i].reason;
    return NULL;
}

/* The jump over the PUSHF of name: its site and length. */
static const pk_jump *pushf_jump(const planned *p, const char *name)
{
    const pk_patch *patch = pushf_patch(p, name, 0);
    cr_assert_eq(patch->tactic, PK_TACTIC_JMP_DISPLACED, "%s", name);
    const pk_jump *j = pk_patch_table_jump_at(&p->plan.table, patch->site);
    cr_assert_not_null(j);
    return j;
}

Test(plan, an_exception_fixup_inside_a_jump_is_mapped_by_the_monitor)
{
    /* ex_resume: pushf (1), pop (1) = the fixup, mov %rcx, %rax (3): a
     * monitor sends the IRET to the fixup on to the POP in the trampoline,
     * one byte after the PUSHF's INT3. */
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    const pk_jump *j = pushf_jump(&p, "ex_resume");
    cr_assert_eq(j->site, symbol(&p.img, "ex_resume"));
    cr_assert_eq(j->len, 5);
    uint64_t counterparts[PK_JUMP_MAX_LEN];
    cr_assert_eq(pk_trampoline_check(j, pk_patch_table_find(&p.plan.table, j->site), 1, 64, false, 0,
                                     p.plan.code + (j->trampoline - p.plan.code_vaddr),
                                     j->trampoline_len, counterparts, NULL), PK_OK);
    cr_assert_eq(counterparts[1], j->trampoline + 1, "the POP follows the INT3");
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    decode_trampoline(&p.plan, counterparts[1], &insn, ops);
    cr_assert_eq(insn.mnemonic, ZYDIS_MNEMONIC_POP);
    cr_assert(p.plan.table.flags & PK_TABLE_MAPPED, "the table says it needs the mapping");
    /* The faulting load, moved, is found at its own address by the
     * monitor: in_ex_table's MOV moves (pushf 1 + mov 3 + pop 1). */
    j = pushf_jump(&p, "in_ex_table");
    cr_assert_eq(j->len, 5);
    /* Nothing there to send it to: inside the MOV, or after a RET. */
    cr_assert_eq(pushf_patch(&p, "ex_resume_inside", 0)->tactic, PK_TACTIC_INT3);
    cr_assert_eq(pushf_patch(&p, "ex_resume_dead", 0)->tactic, PK_TACTIC_INT3);
    /* A loop reaches the fixup natively: a target all the same. */
    cr_assert_eq(pushf_patch(&p, "ex_resume_loop", 0)->tactic, PK_TACTIC_INT3);
    planned_free(&p);
    /* Jumps only, for a monitor: the reasons. */
    pk_plan_options po = { .tactic = PK_CHOOSE_JMP, .allow_skip = true };
    plan_with(&p, path, &po);
    static const char *const at_target[] = { "ex_resume_inside", "ex_resume_dead",
                                             "ex_resume_loop" };
    for (unsigned i = 0; i < 3; i++) {
        const char *why = left_because(&p, symbol(&p.img, at_target[i]));
        cr_assert_not_null(why, "%s", at_target[i]);
        cr_assert_str_eq(why, pk_nojump_reason(PK_NOJUMP_TARGET), "%s", at_target[i]);
    }
    cr_assert_null(left_because(&p, symbol(&p.img, "ex_resume")));
    cr_assert_null(left_because(&p, symbol(&p.img, "in_ex_table")));
    planned_free(&p);
}

Test(plan, exception_tables_still_stop_jumps_without_a_monitor)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, true);
    cr_assert(!(p.plan.table.flags & PK_TABLE_MAPPED), "passthrough maps nothing");
    const char *target = pk_nojump_reason(PK_NOJUMP_TARGET);
    const char *pinned = pk_nojump_reason(PK_NOJUMP_PINNED);
    static const struct { const char *name; pk_nojump why; } left[] = {
        { "ex_resume", PK_NOJUMP_TARGET },        /* nothing maps the fixup */
        { "in_ex_table", PK_NOJUMP_PINNED },      /* nor the fault */
        { "ex_resume_inside", PK_NOJUMP_TARGET },
        { "ex_resume_dead", PK_NOJUMP_TARGET },
        { "ex_resume_loop", PK_NOJUMP_TARGET },
        { "ex_zeropad", PK_NOJUMP_PINNED },
        { "bug_ud2", PK_NOJUMP_PINNED },
        { "loop_inside", PK_NOJUMP_TARGET },
    };
    for (unsigned i = 0; i < sizeof left / sizeof left[0]; i++) {
        uint64_t site = symbol(&p.img, left[i].name);
        cr_assert_null(pk_patch_table_find(&p.plan.table, site), "%s", left[i].name);
        const char *why = left_because(&p, site);
        cr_assert_not_null(why, "%s is listed", left[i].name);
        cr_assert_str_eq(why, left[i].why == PK_NOJUMP_TARGET ? target : pinned, "%s",
                         left[i].name);
    }
    planned_free(&p);
}

Test(plan, a_switch_out_of_step_with_the_walk_is_still_read)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    /* cmp (3), ja (2), lea (7), movslq (4), add (3), jmp (2), 48 B8,
     * jmp *%rax (2), six INT3: the PUSHF is 31 bytes in. */
    cr_assert_eq(pushf_patch(&p, "hidden_switch", 31)->tactic, PK_TACTIC_INT3);
    planned_free(&p);
}

Test(plan, a_jump_through_a_register_set_right_before_is_known)
{
    planned p = { 0 };
    plan_file(&p, PK_CHOOSE_AUTO, false);
    /* pushf (1), pop (1), mov $1f, %rax (7): one jump of 9 bytes. */
    cr_assert_eq(pushf_jump(&p, "set_jump")->len, 9);
    /* pushf, pop, mov saved(%rip), %rax (7), as jmp *saved(%rip). */
    cr_assert_eq(pushf_jump(&p, "saved_jump")->len, 9);
    planned_free(&p);
}

/* A monitor may lay trampolines out below a file's first address: at
 * "negative" file addresses, which a rel32 reaches modulo 2^64 as well
 * (popek run maps them just below a library). Out of reach is out of
 * reach either way. */
Test(plan, trampolines_below_address_zero_are_in_reach)
{
    planned normal = { 0 }, below = { 0 }, far = { 0 };
    pk_plan_options po = { .tactic = PK_CHOOSE_AUTO };
    plan_with(&normal, path, &po);
    cr_assert_gt(normal.plan.table.njumps, 0);

    pk_error err;
    planned *ps[2] = { &below, &far };
    const uint64_t at[2] = { (uint64_t)-0x10000, 0x400000ull + (3ull << 30) };
    for (int k = 0; k < 2; k++) {
        planned *p = ps[k];
        cr_assert_eq(pk_image_load_file(&p->img, path, &err), PK_OK);
        pk_scan_options so = { .sets = PK_SET_PG, .flow = true };
        cr_assert_eq(pk_scan_image(&p->img, &so, &p->scan, &err), PK_OK);
        cr_assert_eq(pk_flow_build(&p->img, &p->flow, &err), PK_OK);
        cr_assert_eq(pk_patch_plan(&p->img, &p->scan, &p->flow, at[k], &po, &p->plan, &err),
                     PK_OK, "%s", err.msg);
    }
    cr_assert_eq(below.plan.table.njumps, normal.plan.table.njumps);
    cr_assert_eq(far.plan.table.njumps, 0);
    cr_assert_gt(far.plan.nojump[PK_NOJUMP_REACH], 0);

    /* Each jump's rel32, taken modulo 2^64, lands on its trampoline. */
    for (size_t i = 0; i < below.plan.table.njumps; i++) {
        const pk_jump *j = &below.plan.table.jumps[i];
        cr_assert_geq(j->trampoline, (uint64_t)-0x10000);
        uint8_t code[PK_JUMP_MAX_LEN];
        cr_assert_eq(pk_jump_emit(j, 64, code, &err), PK_OK, "%s", err.msg);
        int32_t rel;
        memcpy(&rel, code + 1, 4);
        cr_assert_eq(code[0], 0xe9);
        cr_assert_eq(j->site + 5 + (uint64_t)(int64_t)rel, j->trampoline);
    }
    planned_free(&normal);
    planned_free(&below);
    planned_free(&far);
}
