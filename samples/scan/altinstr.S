/* samples/scan/altinstr.S — a miniature of a Linux kernel's alternatives:
 * replacement code in .altinstr_replacement, and .altinstructions entries
 * telling where the kernel copies it at boot. LAYOUT picks the entry format
 * of struct alt_instr: 12 (Linux 5.x–6.1), 13 (4.x, with padlen) or 14
 * (later 6.x, with ft_flags). ENTRIES repeats the table so that its size is
 * also a multiple of another layout's size (7 x 36 = 18 x 14 bytes). Like
 * real kernels, the table has an entry with no replacement code at all
 * (replacementlen 0: the original becomes NOPs), here at the same address
 * as a real replacement. */
    .text
    .globl _start
_start:
    nop
orig_irqsave:
    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00      /* 5-byte NOP until boot */
    ret
orig_sti:
    .byte 0x66, 0x90
    ret

    .section .altinstr_replacement, "ax"
repl_irqsave:
    pushf
    cli
repl_sti:
    sti

    .section .altinstructions, "a"
    .rept ENTRIES
    .long orig_irqsave - .
    .long repl_irqsave - .
#if LAYOUT == 14
    .long 0x00010123                        /* ft_flags */
#else
    .word 0x0123                            /* cpuid */
#endif
    .byte 5, 2                              /* instrlen, replacementlen */
#if LAYOUT == 13
    .byte 3                                 /* padlen */
#endif
    .long orig_sti - .
    .long repl_sti - .
#if LAYOUT == 14
    .long 0x00010124
#else
    .word 0x0124
#endif
    .byte 2, 1
#if LAYOUT == 13
    .byte 1
#endif
    .long orig_sti - .
    .long repl_irqsave - .                  /* no bytes: NOPs out orig_sti */
#if LAYOUT == 14
    .long 0x00010125
#else
    .word 0x0125
#endif
    .byte 2, 0
#if LAYOUT == 13
    .byte 2
#endif
    .endr
