/* samples/guest32/entry.S — what cannot be written in C: the Multiboot
 * header and entry, the 256 interrupt stubs, the far-call targets of the
 * control-transfer checks, and the trip to ring 3 and back.
 *
 * The selectors are layout.h's, as guest32.c's. */
#include "layout.h"
#include "../common/entry.h"
#include "../common/multiboot.h"

/* ---- Multiboot v1 header (Multiboot spec §3.1.1) ------------------------
 * Memory information, and no address fields: the loader reads our ELF
 * program headers. */
    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS_MEMINFO
    .long -(MB_MAGIC + MB_FLAGS_MEMINFO)

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
    CLEAR_BSS
    mov $boot_stack_top, %esp
    push %ebp
    push %esi
    call kmain
    STOP

/* ---- Interrupt stubs ------------------------------------------------------
 * ISR_STUBS (common/entry.h): one 16-byte stub per vector, each joining
 * isr_common, which saves the registers, loads the kernel data segment and
 * calls trap_entry(struct trap_frame *). far_target and save_fault are in
 * common/helpers.S. */
    ISR_STUBS

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

/* ---- Ring 3 and back ---------------------------------------------------------
 * uint32_t ring3_run(void): enters ring3_code at CPL 3 with IRET
 * (ENTER_RING3, common/entry.h, which also says why FS holds a ring-0
 * selector). ring3_code ends with `int $0x80`, which climbs back to ring 0
 * through a DPL-3 trap gate on the TSS's ss0:esp0 stack; trap_entry then
 * calls ring3_leave(), which drops that stack and returns from ring3_run. */
    .globl ring3_run, ring3_leave, ring3_code
    .type ring3_run, @function
ring3_run:
    push %ebx
    push %esi
    push %edi
    push %ebp
    mov %esp, ring3_saved_esp
    ENTER_RING3 0x00000002      /* EFLAGS: IF 0, IOPL 0 */

    .type ring3_code, @function
ring3_code:                     /* CPL 3 from here to the int $0x80 */
    mov %cs, %eax
    mov %eax, ring3_cs
    mov %ss, %eax
    mov %eax, ring3_ss
    mov %fs, %eax
    mov %eax, ring3_fs
    movl $1f, recover_ip       /* IOPL 0 < CPL 3: CLI raises #GP(0) */
    cli
1:  mov $ring3_faults, %eax     /* the #GP handler left its record in */
    call save_fault             /* last_fault: keep a copy            */
    movl $2f, recover_ip       /* and IN raises #GP(0) too: the TSS  */
    mov $0x21, %dx              /* has no I/O permission bitmap       */
    inb %dx, %al
2:  mov $ring3_faults + 16, %eax
    call save_fault
    int $0x80                   /* back to ring 0 */
3:  jmp 3b                      /* never reached */

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
