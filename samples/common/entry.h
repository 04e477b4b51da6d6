/* samples/common/entry.h — assembler macros for the guests' entry.S files,
 * for what reads the same in 32- and 64-bit code.
 *
 * (The functions that read the same in both are in helpers.S, compiled
 * into each guest.)
 *
 * ISR_STUBS lays out the 256 interrupt stubs, 16 bytes each, at isr_stubs + 16 * vector. Each
 * makes the stack look the same (an error code, real or 0, then the
 * vector) and jumps to the guest's own isr_common, which saves the
 * registers its mode has and calls trap_entry. PUSH of an immediate is as
 * wide as the mode, so the stubs read the same in 32- and 64-bit code. The
 * CPU pushes an error code for vectors 8, 10-14, 17, 21, 29 and 30 (SDM
 * Vol. 3A §6.15).
 *
 * The table is typed as a function: popek's scanner starts its recursive
 * descent at function symbols, and a linear sweep alone can fall out of
 * step in the zero fill that .org leaves after the last stub. */
#ifndef SAMPLES_ENTRY_H
#define SAMPLES_ENTRY_H

.macro ISR_STUB vec
    .align 16
    .if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    push $0
    .endif
    push $\vec
    jmp isr_common
.endm

.macro ISR_STUBS
    .altmacro                   /* so that ISR_STUB %vec passes the number */
    .align 16
    .globl isr_stubs
    .type isr_stubs, @function
isr_stubs:
    .set vec, 0
    .rept 256
    ISR_STUB %vec
    .set vec, vec + 1
    .endr
    .org isr_stubs + 256 * 16   /* an error here: a stub outgrew 16 bytes */
    .noaltmacro
.endm

/* CLEAR_BSS: zeroes __bss_start..__bss_end (link.ld), so that a guest does
 * not depend on its loader doing it. Uses EAX, ECX, EDI. */
.macro CLEAR_BSS
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
.endm

/* STOP: for after `call kmain`, which never returns; if it did: stop. */
.macro STOP
1:  cli
    hlt
    jmp 1b
.endm

/* Registers and sizes as wide as the mode, after Linux's asm/asm.h
 * (_ASM_AX, _ASM_SP): one text for 32- and 64-bit code. */
#ifdef __x86_64__
#define ASM_AX      %rax
#define ASM_CX      %rcx
#define ASM_SP      %rsp
#define WORD_SIZE   8
#define LRET_NATIVE lretq
#else
#define ASM_AX      %eax
#define ASM_CX      %ecx
#define ASM_SP      %esp
#define WORD_SIZE   4
#define LRET_NATIVE lret
#endif

/* ENTER_RING3 flags: from ring 0 to ring3_code at CPL 3 on ring3_stack_top,
 * with IRET (the only way down: its frame carries SS and the stack
 * pointer, so the CPU switches to the ring-3 stack) and EFLAGS = flags.
 * DS, ES and GS get the ring-3 data selector first. FS gets the ring-0 one
 * on purpose: IRET to an outer level must null every data segment
 * register whose DPL is below the new CPL (SDM Vol. 2, IRET,
 * "RETURN-TO-OUTER-PRIVILEGE-LEVEL"), so ring 3 finds FS = 0. Selectors
 * from the guest's layout.h. */
#ifdef __x86_64__
#define IRET_NATIVE iretq
#else
#define IRET_NATIVE iret
#endif

.macro ENTER_RING3 flags
    mov $SEL_UDATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %gs
    mov $SEL_KDATA, %eax
    mov %eax, %fs
    push $SEL_UDATA             /* SS */
    push $ring3_stack_top       /* ESP or RSP */
    push $\flags                /* EFLAGS or RFLAGS */
    push $SEL_UCODE             /* CS */
    push $ring3_code            /* EIP or RIP */
    IRET_NATIVE
.endm

#endif
