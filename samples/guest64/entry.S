/* samples/guest64/entry.S — what cannot be written in C: the Multiboot
 * header and the 32-bit stub that takes QEMU into long mode, the 64-bit
 * entry, the 256 interrupt stubs, the far-call targets, the SYSCALL entry,
 * and the trip to ring 3 and back.
 *
 * The selectors are layout.h's, as guest64.c's. */
#include "layout.h"
#include "../common/entry.h"
#include "../common/multiboot.h"

/* ---- Multiboot v1 header (Multiboot spec §3.1.1) ------------------------
 * Memory information, and the address fields below (the "a.out kludge",
 * common/multiboot.h). QEMU refuses to load an ELF64 Multiboot kernel ("give a 32bit
 * one") unless bit 16 is set; it then copies the file from this header's
 * offset into load_addr..load_end_addr, zeroes up to bss_end_addr and
 * jumps to entry_addr in 32-bit protected mode. popek ignores the header
 * of a 64-bit guest: it loads the ELF segments and enters _start in long
 * mode (DESIGN.md, the guest model). link.ld makes the two agree. */
#define MB_FLAGS (MB_FLAGS_MEMINFO | MB_FLAG_ADDRESS)

    .section .multiboot, "a"
    .align 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header             /* header_addr */
    .long __load_start          /* load_addr: this header's address */
    .long __load_end            /* load_end_addr: the end of .data */
    .long __bss_end_all         /* bss_end_addr */
    .long boot32_entry          /* entry_addr: QEMU only */

/* ---- The 32-bit stub: QEMU only -----------------------------------------
 * In a section without the execute flag, so popek's scanner never decodes
 * it as 64-bit code; popek never runs it. From Multiboot's state (32-bit
 * protected mode, paging off, IF 0, EBX = the Multiboot information) it
 * makes exactly the state popek's 64-bit boot contract gives: identity
 * page tables for the first GiB (2 MiB pages), CR4 = PAE (0x20), EFER =
 * LME (then LMA: 0x500), CR3, CR0 |= PG (0x80000011), a GDT whose 0x08 is
 * 64-bit code, and a far jump to _start with RDI = the Multiboot info. */
    .section .boot32, "a"
    .code32
    .globl boot32_entry
boot32_entry:
    cli
    cld
    mov $boot32_pml4, %edi      /* three zeroed pages (bss_end_addr) */
    mov $(3 * 4096 / 4), %ecx
    xor %eax, %eax
    rep stosl
    movl $(boot32_pdpt + 7), boot32_pml4    /* P, R/W, U/S */
    movl $(boot32_pd + 7), boot32_pdpt
    mov $boot32_pd, %edi
    mov $0x87, %eax             /* P, R/W, U/S, PS: 2 MiB */
    mov $512, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b
    mov $0x20, %eax             /* CR4.PAE and nothing else */
    mov %eax, %cr4
    mov $boot32_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx       /* EFER.LME and nothing else */
    mov $0x100, %eax
    xor %edx, %edx
    wrmsr
    mov %cr0, %eax              /* 0x11 -> 0x80000011: long mode is on */
    or $0x80000000, %eax
    mov %eax, %cr0
    lgdt boot32_gdtr
    mov %ebx, %edi              /* the Multiboot info, for _start */
    ljmp $SEL_KCODE, $_start

    .align 8
boot32_gdt:                     /* accessed bits preset: never written */
    .quad 0
    .quad 0x00AF9B000000FFFF    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF93000000FFFF    /* 0x10: data */
boot32_gdtr:
    .word 3 * 8 - 1
    .long boot32_gdt

    .section .boot32.bss, "aw", @nobits
    .align 4096
boot32_pml4:
    .skip 4096
boot32_pdpt:
    .skip 4096
boot32_pd:
    .skip 4096

/* ---- Entry: 64-bit ------------------------------------------------------
 * Long mode, CPL 0, IF 0, CS 0x08, RDI = the Multiboot information (below
 * 1 MiB). We clear our own .bss, take our own stack and call
 * kmain(info). */
    .code64
    .text
    .globl _start
    .type _start, @function
_start:
    cld
    mov %edi, %ebp              /* the info lies below 4 GiB */
    mov $boot_stack_top, %esp
    CLEAR_BSS
    mov %ebp, %edi
    call kmain
    STOP

/* ---- Interrupt stubs ------------------------------------------------------
 * ISR_STUBS (common/entry.h): one 16-byte stub per vector, each joining
 * isr_common, which saves the general registers and calls
 * trap_entry(struct trap_frame *). In 64-bit mode the CPU always pushes
 * SS:RSP, on a stack aligned to 16 bytes (SDM Vol. 3A §6.14.2).
 * far_target and save_fault are in common/helpers.S. */
    ISR_STUBS

    .type isr_common, @function
isr_common:
    .irp reg, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15
    push %\reg                  /* struct trap_frame, read from the end */
    .endr
    mov %rsp, %rdi              /* struct trap_frame *; 16-byte aligned */
    call trap_entry
    .irp reg, r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax
    pop %\reg
    .endr
    add $16, %rsp               /* vector and error code */
    iretq

/* ---- SYSCALL entry (IA32_LSTAR) ---------------------------------------------
 * SYSCALL from ring 3 lands here at CPL 0 with CS and SS from IA32_STAR,
 * RCX = the return address, R11 = RFLAGS, and RFLAGS masked by IA32_FMASK;
 * RSP is still the ring-3 stack (SYSCALL does not switch stacks). It
 * records what it found and goes back with SYSRETQ: CS = STAR[63:48] + 16,
 * SS = STAR[63:48] + 8, both with RPL 3, RIP = RCX, RFLAGS = R11. */
/* SEE_CS_SS_RFLAGS where: stores CS, SS and RFLAGS, in that order, in the
 * three quadwords at `where` (uses RAX). */
.macro SEE_CS_SS_RFLAGS where
    mov %cs, %eax
    mov %rax, \where(%rip)
    mov %ss, %eax
    mov %rax, \where+8(%rip)
    pushfq
    popq %rax
    mov %rax, \where+16(%rip)
.endm

    .globl syscall_entry
    .type syscall_entry, @function
syscall_entry:
    mov %rcx, syscall_seen+0(%rip)
    mov %r11, syscall_seen+8(%rip)
    SEE_CS_SS_RFLAGS syscall_seen+16
    sysretq

/* ---- Ring 3 and back ---------------------------------------------------------
 * uint64_t ring3_run(void): enters ring3_code at CPL 3 with IRETQ
 * (ENTER_RING3, common/entry.h, which also says why FS holds a ring-0
 * selector). ring3_code checks that CLI and IN fault, makes a
 * SYSCALL (and comes back with SYSRETQ), then ends with `int $0x80`, which
 * climbs back to ring 0 through a DPL-3 trap gate on the TSS's RSP0;
 * trap_entry then calls ring3_leave(), which drops that stack and returns
 * from ring3_run. */
    .globl ring3_run, ring3_leave, ring3_code, ring3_after_syscall
    .type ring3_run, @function
ring3_run:
    .irp reg, rbx, rbp, r12, r13, r14, r15     /* callee-saved */
    push %\reg
    .endr
    mov %rsp, ring3_saved_rsp(%rip)
    ENTER_RING3 0x202           /* RFLAGS: IF 1, IOPL 0 */

    .type ring3_code, @function
ring3_code:                     /* CPL 3 from here to the int $0x80 */
    mov %cs, %eax
    mov %rax, ring3_seen+0(%rip)
    mov %ss, %eax
    mov %rax, ring3_seen+8(%rip)
    mov %fs, %eax
    mov %rax, ring3_seen+16(%rip)
    mov %ds, %eax
    mov %rax, ring3_seen+24(%rip)
    /* Each of these faults at CPL 3; the #GP handler records it in
     * last_fault and resumes at recover_ip; save_fault keeps a copy. */
    lea 1f(%rip), %rax          /* IOPL 0 < CPL 3: CLI raises #GP(0) */
    mov %rax, recover_ip(%rip)
    cli
1:  lea ring3_faults+0*32(%rip), %rax
    call save_fault
    lea 1f(%rip), %rax          /* and IN: the TSS has no I/O bitmap */
    mov %rax, recover_ip(%rip)
    mov $0x21, %dx
    inb %dx, %al
1:  lea ring3_faults+1*32(%rip), %rax
    call save_fault
    lea 1f(%rip), %rax          /* SWAPGS and SYSRET: CPL 0 only */
    mov %rax, recover_ip(%rip)
    swapgs
1:  lea ring3_faults+2*32(%rip), %rax
    call save_fault
    lea 1f(%rip), %rax
    mov %rax, recover_ip(%rip)
    sysretq
1:  lea ring3_faults+3*32(%rip), %rax
    call save_fault
    syscall                     /* to syscall_entry at CPL 0 and back */
ring3_after_syscall:
    SEE_CS_SS_RFLAGS ring3_seen+32
    int $0x80                   /* back to ring 0 */
3:  jmp 3b                      /* never reached */

    .type ring3_leave, @function
ring3_leave:                    /* called from trap_entry on the ring-0 */
    cli                         /* stack; that frame is abandoned. The  */
    mov ring3_saved_rsp(%rip), %rsp /* trap gate left IF as ring 3 had it */
    mov $SEL_KDATA, %eax
    mov %eax, %ss               /* the interrupt left SS null (RPL 0) */
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %fs
    mov %eax, %gs
    .irp reg, r15, r14, r13, r12, rbp, rbx
    pop %\reg
    .endr
    ret

/* ---- Stacks ------------------------------------------------------------------ */
    .bss
    .align 16
    .globl boot_stack_top, ring0_stack_top, ring3_stack_top, ist1_stack_top
    .globl lss_stack_top
    .skip 16384
boot_stack_top:
    .skip 4096                  /* TSS RSP0: ring 3 -> ring 0 */
ring0_stack_top:
    .skip 4096                  /* TSS IST1: vector 0x83 */
ist1_stack_top:
    .skip 4096
ring3_stack_top:
    .skip 256                   /* the LSS and IRETQ checks switch to it */
lss_stack_top:
ring3_saved_rsp:
    .quad 0

    .section .note.GNU-stack, "", @progbits
