/* samples/common/helpers.S — the small assembly functions that read the
 * same in guest32 and guest64 (registers and sizes as wide as the mode:
 * ASM_AX, WORD_SIZE, ... in entry.h). Compiled into each guest. */
#include "entry.h"

    .text

/* ---- Far-call targets ------------------------------------------------------
 * far_target: the callee of the far-CALL checks: records the return address
 * and the CS the call pushed (a word each: a far call pushes CS,
 * zero-extended, then EIP or RIP) and the CS it runs with, then returns
 * with a far RET. far_target_imm: the same, returning with a far RET that
 * also drops the two words the caller pushed (`lret $8`, `lretq $16`). */
    .globl far_target, far_target_imm
    .type far_target, @function
far_target:
    mov 0(ASM_SP), ASM_AX
    mov ASM_AX, far_pushed_ip
    mov WORD_SIZE(ASM_SP), ASM_AX
    mov ASM_AX, far_pushed_cs
    mov %cs, %eax
    mov ASM_AX, far_callee_cs
    LRET_NATIVE

    .type far_target_imm, @function
far_target_imm:
    mov WORD_SIZE(ASM_SP), ASM_AX
    mov ASM_AX, far_pushed_cs
    LRET_NATIVE $(2 * WORD_SIZE)

/* ---- save_fault(AX = destination) -------------------------------------------
 * Copies the four-word last_fault record (common/faults.h) for ring3_code,
 * which cannot call C without a C-compatible stack frame. Uses CX. */
    .globl save_fault
    .type save_fault, @function
save_fault:
    .irp i, 0, 1, 2, 3
    mov last_fault + \i * WORD_SIZE, ASM_CX
    mov ASM_CX, \i * WORD_SIZE(ASM_AX)
    .endr
    ret

    .section .note.GNU-stack, "", @progbits
