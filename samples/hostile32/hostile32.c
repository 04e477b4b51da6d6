/* samples/hostile32 — a guest kernel that tries to get out.
 *
 * Each attempt below, made by a guest running under `popek boot`, would
 * reach the host if the monitor let it: a host system call (INT 0x80,
 * SYSCALL, SYSENTER, or SYSCALL after a far jump into the host's 64-bit
 * code segment), a jump into the middle of a patched instruction whose
 * tail bytes are INT 0x80, code written over a patched page, and a read
 * past the end of guest RAM. Every system call it tries is creat() of a
 * file named escaped-*, so a test can check from outside, in the file
 * system, that none ran. The guest prints what it saw of each attempt and
 * exits through port 0xF4.
 *
 * It is not meant for QEMU: at real ring 0 there is no host to reach. */
#include <stdint.h>

#include "../guest32/arch.h"
#include "../common/multiboot.h"

#define COM1 0x3f8
#define SYS32_CREAT 8       /* i386 system call numbers */
#define SYS64_CREAT 85      /* x86-64 */
#define HOST_CODE64 0x33    /* Linux's 64-bit user code segment */

/* ---- Output ------------------------------------------------------------ */

static void putc_uart(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (uint8_t)c);
}

static void puts_uart(const char *s)
{
    while (*s)
        putc_uart(*s++);
}

static void put_hex(uint32_t v)
{
    puts_uart("0x");
    for (int shift = 28; shift >= 0; shift -= 4)
        if ((v >> shift) || shift == 0)
            putc_uart("0123456789abcdef"[(v >> shift) & 0xf]);
}

/* ---- Tables: flat ring-0 code and data; gates for what the attempts raise */

struct gate { uint16_t off_lo, sel; uint8_t zero, type; uint16_t off_hi; };

static uint64_t gdt[3] __attribute__((aligned(8))) = {
    0,
    0x00cf9b000000ffffull,  /* 0x08: code, base 0, 4 GiB, DPL 0 */
    0x00cf93000000ffffull,  /* 0x10: data */
};
static struct gate idt[256] __attribute__((aligned(8)));

/* What the last event was, set by the handler, read by the attempt: its
 * vector, error code, and the EIP and ESP it interrupted. */
static volatile uint32_t seen_vector, seen_error, seen_eip, seen_esp;
static volatile uint32_t resume_at;

/* One stub per vector the attempts can raise; each records its vector and
 * the error code (NO_ERROR pushes a 0 where the CPU pushes none) and
 * resumes at resume_at. */
#define NO_ERROR "    push $0\n"
#define STUB(name, vector, push_zero)                                           \
    void name(void);                                                           \
    __asm__(".pushsection .text\n" #name ":\n"                                              \
            push_zero                                                          \
            "    movl $" #vector ", seen_vector\n"                             \
            "    popl seen_error\n"                                            \
            "    pushl %eax\n"                                                 \
            "    movl 4(%esp), %eax\n"                                         \
            "    movl %eax, seen_eip\n"                                        \
            "    leal 16(%esp), %eax\n" /* past eax, EIP, CS, EFLAGS */        \
            "    movl %eax, seen_esp\n"                                        \
            "    movl resume_at, %eax\n"                                       \
            "    movl %eax, 4(%esp)\n"  /* the frame's EIP */                   \
            "    popl %eax\n"                                                  \
            "    iret\n"                                                      \
            ".popsection\n")
STUB(on_ud, 6, NO_ERROR);
STUB(on_gp, 13, "");
STUB(on_pf, 14, "");
STUB(on_int80, 128, NO_ERROR);
STUB(on_other, 255, NO_ERROR);

static void set_gate(int vector, void (*handler)(void), uint8_t type)
{
    uint32_t off = (uint32_t)handler;
    idt[vector] = (struct gate){ (uint16_t)off, 0x08, 0, type, (uint16_t)(off >> 16) };
}

static void setup_tables(void)
{
    struct { uint16_t limit; uint32_t base; } __attribute__((packed))
        gdtr = { sizeof gdt - 1, (uint32_t)gdt }, idtr = { sizeof idt - 1, (uint32_t)idt };
    for (int v = 0; v < 256; v++)
        set_gate(v, on_other, 0x8e);
    set_gate(6, on_ud, 0x8e);
    set_gate(13, on_gp, 0x8e);
    set_gate(14, on_pf, 0x8e);
    set_gate(0x80, on_int80, 0xef);   /* a DPL-3 trap gate, as a kernel's */
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $0x08, $1f\n"
                     "1:\n\t"
                     "mov $0x10, %%eax\n\t"
                     "mov %%eax, %%ds\n\t"
                     "mov %%eax, %%es\n\t"
                     "mov %%eax, %%ss\n\t"
                     "lidt %1"
                     : : "m"(gdtr), "m"(idtr) : "eax", "memory");
}

/* ---- Attempts ------------------------------------------------------------
 * Each sets resume_at to the label after it, so a fault ends the attempt. */

static void report(const char *name)
{
    puts_uart("hostile ");
    puts_uart(name);
    puts_uart(": ");
    if (seen_vector == 0xffffffffu) {
        puts_uart("no event");
    } else {
        puts_uart("vector ");
        put_hex(seen_vector);
        puts_uart(" error ");
        put_hex(seen_error);
    }
    putc_uart('\n');
    seen_vector = 0xffffffffu;
}

static const char path_int80[] = "escaped-int80";
static const char path_syscall[] = "escaped-syscall";
static const char path_gate[] = "escaped-64bit";
static const char path_middle[] = "escaped-middle";
static const char path_written[] = "escaped-written";
static const char path_sysenter[] = "escaped-sysenter";

/* INT 0x80 with creat(): the guest's own gate 0x80 must get it. */
static void try_int80(void)
{
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "int $0x80\n"
                     "1:"
                     : : "a"(SYS32_CREAT), "b"(path_int80), "c"(0644) : "memory");
    report("int80");
}

/* SYSCALL from 32-bit code: #UD on Intel CPUs and with EFER.SCE clear. */
static void try_syscall(void)
{
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "syscall\n"
                     "1:"
                     : : "a"(SYS32_CREAT), "b"(path_syscall), "c"(0644) : "memory", "edx");
    report("syscall");
}

/* A far jump to the host's 64-bit code segment, then SYSCALL there: the
 * guest's GDT has no entry 6, so a faithful CPU raises #GP(0x30). */
static void try_far_jump_to_64bit(void)
{
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "ljmp $" "0x33" ", $2f\n"
                     "2:\n\t"
                     ".byte 0x48, 0x89, 0xdf\n\t"   /* mov %rbx, %rdi */
                     ".byte 0x48, 0x89, 0xce\n\t"   /* mov %rcx, %rsi */
                     "syscall\n"
                     "1:"
                     : : "a"(SYS64_CREAT), "b"(path_gate), "c"(0644)
                     : "memory", "edx", "esi", "edi");
    report("far_jump_64bit");
}

/* SMSW 0x80cd(%eax): a patched site whose bytes 3 and 4 are CD 80, INT
 * 0x80. An indirect jump there runs bytes the monitor never decoded as an
 * instruction: the blind spot of scan-and-patch. The sandbox holds. */
static void try_jump_into_site(void)
{
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "mov $2f + 3, %%edx\n\t"
                     "jmp *%%edx\n"
                     "2:\n\t"
                     ".byte 0x0f, 0x01, 0xa0, 0xcd, 0x80, 0x00, 0x00\n"
                     "1:"
                     : : "a"(SYS32_CREAT), "b"(path_middle), "c"(0644) : "memory", "edx");
    report("jump_into_site");
}

/* Writes INT 0x80 over a code page, then runs it: the write releases the
 * page, and the page is scanned again (INT 0x80 patched) before it runs. */
void written_code(void);
__asm__(".pushsection .text\n.align 4096\nwritten_code:\n    ret\n    .fill 15, 1, 0x90\n"
        ".align 4096\n.popsection\n");

static void try_write_code(void)
{
    volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)written_code;
    p[0] = 0xcd;    /* int $0x80 */
    p[1] = 0x80;
    p[2] = 0xc3;    /* ret */
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "call written_code\n"
                     "1:"
                     : : "a"(SYS32_CREAT), "b"(path_written), "c"(0644) : "memory");
    report("written_code");
}

/* A read past the end of RAM (64 MiB): no memory there. */
static void try_read_past_ram(void)
{
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "movl 0x10000000, %%eax\n"
                     "1:"
                     : : : "eax", "memory");
    report("read_past_ram");
}

/* SGDT storing past the end of RAM: #PF at the SGDT itself, with the
 * stack and registers as they were before it, whether the monitor
 * emulated it or a fast-path block in its trampoline did the store (and
 * borrowed a register and the stack for it). Not an escape: what a block
 * leaves must not show. */
extern char sgdt_site[];
__attribute__((noinline)) static void try_store_past_ram(void)
{
    uint32_t esp_before, eax_after, ebx_after;
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "movl %%esp, %0\n\t"
                     "movl $0x5a5a5a5a, %%eax\n\t"
                     "movl $0x10000000, %%ebx\n"
                     "sgdt_site:\n\t"
                     "sgdt (%%ebx)\n\t"
                     "movl %%ebx, %%ecx\n" /* a neighbour: a jump fits */
                     "1:\n\t"
                     "movl %%eax, %1\n\t"
                     "movl %%ebx, %2"
                     : "=m"(esp_before), "=m"(eax_after), "=m"(ebx_after)
                     : : "eax", "ebx", "ecx", "memory");
    report("store_past_ram");
    puts_uart("hostile store_past_ram: at the site ");
    puts_uart(seen_eip == (uint32_t)sgdt_site ? "yes" : "no");
    puts_uart(", stack as it was ");
    puts_uart(seen_esp == esp_before ? "yes" : "no");
    puts_uart(", registers as they were ");
    puts_uart(eax_after == 0x5a5a5a5a && ebx_after == 0x10000000 ? "yes\n" : "no\n");
}

/* SYSENTER with creat(): with IA32_SYSENTER_CS 0, #GP(0). */
static void try_sysenter(void)
{
    __asm__ volatile("movl $1f, resume_at\n\t"
                     "mov %%esp, %%ebp\n\t"
                     "sysenter\n"
                     "1:"
                     : : "a"(SYS32_CREAT), "b"(path_sysenter), "c"(0644) : "memory", "ebp", "edx");
    report("sysenter");
}

void kmain(void);

void kmain(void)
{
    seen_vector = 0xffffffffu;
    setup_tables();
    puts_uart("hostile32: start\n");
    try_int80();
    try_far_jump_to_64bit();
    try_jump_into_site();
    try_write_code();
    try_read_past_ram();
    try_store_past_ram();
    /* Last: from 32-bit code these enter the host without leaving their
     * address, so a monitor that does not patch them can only stop. */
    try_syscall();
    try_sysenter();
    puts_uart("hostile32: done\n");
    outl(0xf4, 0);
    for (;;)
        ;
}

/* The Multiboot header, a stack and _start, which calls kmain. */
MULTIBOOT_SMALL_GUEST(kmain);
