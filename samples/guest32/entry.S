/* samples/guest32/entry.S — what cannot be written in C: the Multiboot
 * header and entry, the 256 interrupt stubs, the far-call targets of the
 * control-transfer checks, and the trip to ring 3 and back.
 *
 * Selectors (guest32.c builds the GDT; keep the two in step): */
#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_UCODE   0x1b    /* 0x18 | RPL 3 */
#define SEL_UDATA   0x23    /* 0x20 | RPL 3 */

/* ---- Multiboot v1 header (Multiboot spec §3.1.1) ------------------------
 * flags bit 0: modules page-aligned; bit 1: the loader gives mem_lower and
 * mem_upper. No bit 16: the loader reads our ELF program headers (no
 * a.out kludge). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

/* ---- Entry --------------------------------------------------------------
 * The loader leaves us in 32-bit protected mode with flat segments, IF 0,
 * EAX = 0x2BADB002 and EBX = the Multiboot information. We clear our own
 * .bss (so we do not depend on the loader doing it), take our own stack and
 * call kmain(magic, info). Run natively as a Linux program, this part works
 * too; the first port access in kmain is where it dies with SIGSEGV. */
    .text
    .globl _start
    .type _start, @function
_start:
    cld
    mov %eax, %esi              /* Multiboot magic */
    mov %ebx, %ebp              /* Multiboot information */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov $boot_stack_top, %esp
    push %ebp
    push %esi
    call kmain
1:  cli                         /* kmain never returns; if it did: stop */
    hlt
    jmp 1b

/* ---- Interrupt stubs ------------------------------------------------------
 * One 16-byte stub per vector, at isr_stubs + 16 * vector. Each makes the
 * stack look the same (an error code, real or 0, then the vector) and joins
 * isr_common, which saves the registers, loads the kernel data segment and
 * calls trap_entry(struct trap_frame *). The CPU pushes an error code for
 * vectors 8, 10-14, 17, 21, 29 and 30 (SDM Vol. 3A §6.15). */
.macro STUB vec
    .align 16
    .if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    push $0
    .endif
    push $\vec
    jmp isr_common
.endm

/* Code labels are typed as functions here: popek's scanner starts its
 * recursive descent at function symbols, and a linear sweep alone can fall
 * out of step in the zero fill that .org leaves before isr_common. */
    .altmacro                   /* so that STUB %vec passes the number */
    .align 16
    .globl isr_stubs
    .type isr_stubs, @function
isr_stubs:
    .set vec, 0
    .rept 256
    STUB %vec
    .set vec, vec + 1
    .endr
    .org isr_stubs + 256 * 16   /* an error here: a stub outgrew 16 bytes */
    .noaltmacro

    .type isr_common, @function
isr_common:
    pusha
    push %ds
    push %es
    mov $SEL_KDATA, %eax        /* the interrupted code may run with DS = */
    mov %eax, %ds               /* a ring-3 selector                      */
    mov %eax, %es
    push %esp                   /* struct trap_frame * */
    call trap_entry
    add $4, %esp
    pop %es
    pop %ds
    popa
    add $8, %esp                /* vector and error code */
    iret

/* ---- Far-call targets ------------------------------------------------------
 * far_target: the callee of `lcall`: records the CS and EIP the call pushed
 * (a far call pushes CS, zero-extended to 32 bits, then EIP) and the CS it
 * runs with, then returns with `lret`.
 * far_target_imm: the same, returning with `lret $8`, which also drops the
 * two arguments the caller pushed. */
    .globl far_target, far_target_imm
    .type far_target, @function
far_target:
    mov 0(%esp), %eax
    mov %eax, far_pushed_eip
    mov 4(%esp), %eax
    mov %eax, far_pushed_cs
    mov %cs, %eax
    mov %eax, far_callee_cs
    lret

    .type far_target_imm, @function
far_target_imm:
    mov 4(%esp), %eax
    mov %eax, far_pushed_cs
    lret $8

/* ---- Ring 3 and back ---------------------------------------------------------
 * uint32_t ring3_run(void): enters ring3_code at CPL 3 with IRET (the only
 * way down: the frame carries SS:ESP, so the CPU switches to the ring-3
 * stack). ring3_code ends with `int $0x80`, which climbs back to ring 0
 * through a DPL-3 trap gate on the TSS's ss0:esp0 stack; trap_entry then
 * calls ring3_leave(), which drops that stack and returns from ring3_run.
 *
 * FS is loaded with the ring-0 data selector on purpose: IRET to an outer
 * level must zero every data segment register whose DPL is below the new
 * CPL (SDM Vol. 2, IRET, "RETURN-TO-OUTER-PRIVILEGE-LEVEL"), so ring 3 finds
 * FS = 0. */
    .globl ring3_run, ring3_leave, ring3_code
    .type ring3_run, @function
ring3_run:
    push %ebx
    push %esi
    push %edi
    push %ebp
    mov %esp, ring3_saved_esp
    mov $SEL_UDATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %gs
    mov $SEL_KDATA, %eax
    mov %eax, %fs
    push $SEL_UDATA             /* SS */
    push $ring3_stack_top       /* ESP */
    push $0x00000002            /* EFLAGS: IF 0, IOPL 0 */
    push $SEL_UCODE             /* CS */
    push $ring3_code            /* EIP */
    iret

    .type ring3_code, @function
ring3_code:                     /* CPL 3 from here to the int $0x80 */
    mov %cs, %eax
    mov %eax, ring3_cs
    mov %ss, %eax
    mov %eax, ring3_ss
    mov %fs, %eax
    mov %eax, ring3_fs
    movl $1f, recover_eip       /* IOPL 0 < CPL 3: CLI raises #GP(0) */
    cli
1:  mov $ring3_faults, %eax     /* the #GP handler left its record in */
    call save_fault             /* last_fault: keep a copy            */
    movl $2f, recover_eip       /* and IN raises #GP(0) too: the TSS  */
    mov $0x21, %dx              /* has no I/O permission bitmap       */
    inb %dx, %al
2:  mov $ring3_faults + 16, %eax
    call save_fault
    int $0x80                   /* back to ring 0 */
3:  jmp 3b                      /* never reached */

/* save_fault(EAX = destination): copies the 16-byte last_fault record
 * (ring-3 code cannot call C without a C-compatible stack frame; this is
 * simpler). */
    .type save_fault, @function
save_fault:
    mov last_fault, %ecx
    mov %ecx, 0(%eax)
    mov last_fault + 4, %ecx
    mov %ecx, 4(%eax)
    mov last_fault + 8, %ecx
    mov %ecx, 8(%eax)
    mov last_fault + 12, %ecx
    mov %ecx, 12(%eax)
    ret

    .type ring3_leave, @function
ring3_leave:                    /* called from trap_entry on the ring-0 */
    mov ring3_saved_esp, %esp   /* stack; that frame is abandoned       */
    mov $SEL_KDATA, %eax
    mov %eax, %fs
    mov %eax, %gs
    pop %ebp
    pop %edi
    pop %esi
    pop %ebx
    ret

/* ---- Stacks ------------------------------------------------------------------ */
    .bss
    .align 16
    .globl boot_stack_top, ring0_stack_top, ring3_stack_top, lss_stack_top
    .skip 16384
boot_stack_top:
    .skip 4096                  /* TSS esp0: ring 3 -> ring 0 */
ring0_stack_top:
    .skip 4096
ring3_stack_top:
    .skip 256                   /* the LSS check switches to it and back */
lss_stack_top:
ring3_saved_esp:
    .long 0

    .section .note.GNU-stack, "", @progbits
