/* samples/common/multiboot.h — the Multiboot v1 handshake of the sample
 * guests (Multiboot spec §3.1): the header a loader looks for in the first
 * 8 KiB of the file, and the information it hands over in EBX.
 *
 * Usable from C and from .S files. The small guests (hostile32, probe32)
 * have no entry.S: MULTIBOOT_SMALL_GUEST gives them the header, a stack
 * and an _start that calls their main function with the information. */
#ifndef SAMPLES_MULTIBOOT_H
#define SAMPLES_MULTIBOOT_H

#define MB_MAGIC        0x1BADB002  /* in the header */
#define MB_BOOT_MAGIC   0x2BADB002  /* in EAX at entry */
/* Header flags. Bit 0: modules page-aligned; bit 1: the loader gives
 * mem_lower and mem_upper; bit 16: the header's address fields are valid
 * (the "a.out kludge"; without it the loader reads the ELF program
 * headers). */
#define MB_FLAGS_MEMINFO 0x00000003
#define MB_FLAG_ADDRESS  0x00010000
/* Information flags: bit 0, mem_lower/mem_upper valid; bit 2, cmdline. */
#define MB_INFO_MEM      0x1
#define MB_INFO_CMDLINE  0x4

#ifndef __ASSEMBLER__
#include <stdint.h>

struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

#define MB_STR_(x) #x
#define MB_STR(x) MB_STR_(x)

/* Top-level asm for a guest without an entry.S: the header (flags bits 0
 * and 1, the ELF program headers place the file), a 16 KiB stack in .bss,
 * and _start: take the stack, call main(info), and should it return, HLT
 * for good. */
#define MULTIBOOT_SMALL_GUEST(main)                                          \
    __asm__(".pushsection .multiboot, \"a\"\n"                               \
            ".align 4\n"                                                     \
            ".long " MB_STR(MB_MAGIC) ", " MB_STR(MB_FLAGS_MEMINFO) ", "     \
            "-(" MB_STR(MB_MAGIC) " + " MB_STR(MB_FLAGS_MEMINFO) ")\n"       \
            ".popsection\n"                                                  \
            ".pushsection .text\n"                                           \
            ".globl _start\n"                                                \
            "_start:\n"                                                      \
            "    mov $stack_top, %esp\n"                                     \
            "    push %ebx\n"                                                \
            "    call " #main "\n"                                           \
            "1:  hlt\n"                                                      \
            "    jmp 1b\n"                                                   \
            ".popsection\n"                                                  \
            ".pushsection .bss\n"                                            \
            ".align 16\n"                                                    \
            "    .skip 16384\n"                                              \
            "stack_top:\n"                                                   \
            ".popsection\n")
#endif

#endif
