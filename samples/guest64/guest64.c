/* samples/guest64/guest64.c — a small 64-bit kernel that checks, one line
 * each, what the x86 instructions a monitor must virtualize return at
 * ring 0 in long mode.
 *
 * The same file boots on `qemu-system-x86_64 -kernel` (through the 32-bit
 * stub in entry.S) and under `popek boot` (entered in long mode at _start).
 * It sets up its own page tables, GDT, LDT, 64-bit TSS and IDT, the PIC
 * and the PIT, and prints `check NAME: VALUE` lines on the UART. Every
 * value is fixed by the architecture and by what the guest itself loaded,
 * never by timing, so the transcript from QEMU (real ring 0) is the
 * reference a monitor's transcript must equal. README.md lists every
 * check, what it shows, and what differs from guest32.
 *
 * One function per family of instructions; kmain() at the end calls them in
 * order. SDM references are to the Intel SDM (Vol. 2 for instructions,
 * Vol. 3A for descriptors, interrupts, paging and the TSS). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch64.h"

/* ======================================================================
 * Selectors and descriptor tables
 * ====================================================================== */

/* GDT selectors (index * 8 | RPL). entry.S has the same numbers. The
 * order 0x18, 0x20, 0x28 is the one SYSRET needs: STAR[63:48] = 0x18 gives
 * SS = 0x20 | 3 and, for a 64-bit SYSRET, CS = 0x28 | 3 (as Linux). */
#define SEL_NULL        0x00
#define SEL_KCODE       0x08    /* ring-0 code, 64-bit (L = 1) */
#define SEL_KDATA       0x10    /* ring-0 data, flat */
#define SEL_UCODE32     0x1b    /* ring-3 code, 32-bit (compatibility mode) */
#define SEL_UDATA       0x23    /* ring-3 data, flat */
#define SEL_UCODE       0x2b    /* ring-3 code, 64-bit */
#define SEL_CONFORMING  0x30    /* ring-0 conforming code, 64-bit */
#define SEL_SMALL       0x38    /* ring-0 data, byte-granular limit 0xff */
#define SEL_NOTPRESENT  0x40    /* ring-0 data with P = 0 */
#define SEL_EXECONLY    0x48    /* ring-0 code, execute-only, 64-bit */
#define SEL_LDT         0x50    /* the LDT's descriptor (16 bytes) */
#define SEL_LDT_UPPER   0x58    /* its upper half */
#define SEL_TSS         0x60    /* the 64-bit TSS (16 bytes) */
#define SEL_TSS_UPPER   0x68    /* its upper half */
#define SEL_CALLGATE    0x70    /* a 64-bit call gate (16 bytes), never called */
#define GDT_ENTRIES     16
#define SEL_BEYOND      0x80    /* past the GDT limit (0x7f), and past the
                                   end of Linux's own 16-entry GDT too */
/* LDT selectors: TI (bit 2) = 1. */
#define SEL_LDT_KDATA   0x04    /* LDT entry 0: ring-0 data, flat */
#define SEL_LDT_UDATA   0x0f    /* LDT entry 1 | RPL 3: ring-3 data, limit 0xfff */
#define LDT_ENTRIES     2

/* Interrupt vectors: exceptions 0-31, the PIC's IRQs at 0x20-0x2f (ICW2),
 * then the software interrupts of the checks. */
#define VEC_DE          0
#define VEC_BP          3
#define VEC_UD          6
#define VEC_GP          13
#define VEC_IRQ0        0x20
#define VEC_SYSCALL     0x80    /* DPL-3 trap gate: ring 3 calls ring 0 */
#define VEC_SOFT_TRAP   0x81    /* DPL-0 trap gate */
#define VEC_SOFT_INTR   0x82    /* DPL-0 interrupt gate */
#define VEC_SOFT_IST    0x83    /* DPL-0 interrupt gate on IST1 */

/* All tables in one struct at a fixed address (link.ld puts .data.tables at
 * 0x00120000), so the CR3, SIDT and SGDT lines do not move: the page
 * tables (0x120000-0x122fff), the IDT (0x123000), then the GDT
 * (0x124000), LDT and TSS. The CPU writes to the GDT (LTR sets the TSS
 * busy bit), so all of it lives on data pages. */
struct tables {
    uint64_t pml4[512], pdpt[512], pd[512];
    gate64 idt[256];
    seg_desc gdt[GDT_ENTRIES];
    seg_desc ldt[LDT_ENTRIES];
    tss64 tss;
};
__attribute__((section(".data.tables"), aligned(4096)))
struct tables tables;

/* From entry.S. */
extern const uint8_t isr_stubs[];       /* 256 stubs of 16 bytes */
extern uint8_t boot_stack_top[], ring0_stack_top[], ring3_stack_top[],
    ist1_stack_top[], lss_stack_top[];
extern void far_target(void), far_target_imm(void), ring3_code(void),
    ring3_after_syscall(void), syscall_entry(void);
extern uint64_t ring3_run(void);
extern void ring3_leave(void) __attribute__((noreturn));

static void set_segment(seg_desc *d, uint32_t base, uint32_t limit,
                        uint8_t access, uint8_t flags)
{
    d->limit_lo = limit & 0xffff;
    d->base_lo = base & 0xffff;
    d->base_mid = (base >> 16) & 0xff;
    d->access = access;
    d->flags_limit_hi = (uint8_t)(flags << 4) | ((limit >> 16) & 0xf);
    d->base_hi = base >> 24;
}

/* An LDT or TSS descriptor: two GDT slots. */
static void set_system(seg_desc *slot, uint64_t base, uint32_t limit,
                       uint8_t access)
{
    sys_desc64 *d = (sys_desc64 *)slot;
    set_segment(&d->low, (uint32_t)base, limit, access, 0);
    d->base_upper = (uint32_t)(base >> 32);
    d->reserved = 0;
}

static void set_gate(gate64 *g, uint64_t offset, uint16_t selector,
                     uint8_t access, uint8_t ist)
{
    g->offset_lo = offset & 0xffff;
    g->selector = selector;
    g->ist = ist;
    g->access = access;
    g->offset_mid = (offset >> 16) & 0xffff;
    g->offset_hi = (uint32_t)(offset >> 32);
    g->reserved = 0;
}

/* ======================================================================
 * Devices: UART, PIC, PIT, exit port
 * ====================================================================== */

#define COM1        0x3f8   /* +0 THR, +1 IER, +2 FCR, +3 LCR, +4 MCR, +5 LSR, +7 SCR */
#define LSR_THRE    0x20    /* transmit holding register (FIFO) empty */
#define PIC1_CMD    0x20
#define PIC1_DATA   0x21
#define PIC2_CMD    0xa0
#define PIC2_DATA   0xa1
#define PIC_EOI     0x20
#define PIT_CH0     0x40
#define PIT_CMD     0x43
#define PIT_DIVISOR 1193    /* 1193182 Hz / 1193 = 1000.15 Hz */
#define PIT_MS(ms)  ((uint32_t)(ms) * PIT_DIVISOR)
#define PIT_MAX_POLLS 500000u   /* a hard bound should the PIT stand still */
#define EXIT_PORT   0xf4
#define UNCLAIMED   0x2f8   /* COM2: no device on QEMU's i440fx nor in popek */

static void uart_init(void)
{
    outb(COM1 + 1, 0x00);   /* IER: no UART interrupts */
    outb(COM1 + 3, 0x80);   /* LCR: DLAB, to reach the divisor */
    outb(COM1 + 0, 0x01);   /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* LCR: 8 data bits, no parity, 1 stop bit */
    outb(COM1 + 2, 0x07);   /* FCR: FIFO on and cleared (16 bytes) */
    outb(COM1 + 4, 0x03);   /* MCR: DTR, RTS */
}

static void uart_putc(char c)
{
    while (!(inb(COM1 + 5) & LSR_THRE))
        ;
    outb(COM1, (uint8_t)c);
}

static void put_str(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

static void put_hex(uint64_t v)
{
    char buf[19];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    put_str("0x");
    while (n)
        uart_putc(buf[--n]);
}

static void guest_exit(uint32_t status) __attribute__((noreturn));
static void guest_exit(uint32_t status)
{
    outl(EXIT_PORT, status);    /* QEMU's isa-debug-exit: (status << 1) | 1 */
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* 8259A pair: ICW1-ICW4 remap IRQ 0-7 to 0x20-0x27 and 8-15 to 0x28-0x2f
 * (away from the exceptions), then every IRQ is masked. */
static void pic_init(void)
{
    outb(PIC1_CMD, 0x11);   /* ICW1: edge triggered, cascade, ICW4 follows */
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, 0x20);  /* ICW2: vector base */
    outb(PIC2_DATA, 0x28);
    outb(PIC1_DATA, 0x04);  /* ICW3: slave on IRQ 2 */
    outb(PIC2_DATA, 0x02);  /*       slave identity 2 */
    outb(PIC1_DATA, 0x01);  /* ICW4: 8086 mode, normal EOI */
    outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xff);  /* OCW1: all masked */
    outb(PIC2_DATA, 0xff);
}

/* 8253 channel 0, mode 2 (rate generator), lobyte/hibyte: IRQ 0 every
 * 1193 input clocks, about 1 kHz. */
static void pit_init(void)
{
    outb(PIT_CMD, 0x34);
    outb(PIT_CH0, PIT_DIVISOR & 0xff);
    outb(PIT_CH0, PIT_DIVISOR >> 8);
}

/* Latches channel 0 (command 0x00) and reads the count, low byte first. */
static uint16_t pit_read(void)
{
    outb(PIT_CMD, 0x00);
    uint8_t lo = inb(PIT_CH0);
    uint8_t hi = inb(PIT_CH0);
    return (uint16_t)(lo | hi << 8);
}

/* Waits, by watching the PIT count go down, until `counts` input clocks
 * have passed or *watch is no longer `from` (when watch is not NULL).
 * Returns whether *watch changed. Time is measured on the PIT, never by
 * counting instructions (under a monitor every IN costs tens of
 * microseconds, under QEMU a fraction of one); PIT_MAX_POLLS bounds it. */
static bool pit_wait(uint32_t counts, const volatile uint32_t *watch,
                     uint32_t from)
{
    uint16_t prev = pit_read();
    uint32_t elapsed = 0;
    for (uint32_t polls = 0; polls < PIT_MAX_POLLS; polls++) {
        if (watch && *watch != from)
            return true;
        if (elapsed >= counts)
            break;
        uint16_t now = pit_read();
        elapsed += prev >= now ? (uint32_t)(prev - now)
                               : (uint32_t)(prev + PIT_DIVISOR - now);
        prev = now;
    }
    return watch && *watch != from;
}

/* ======================================================================
 * Output of checks
 * ====================================================================== */

static void check_begin(const char *prefix, const char *name)
{
    put_str("check ");
    put_str(prefix);
    put_str(name);
    put_str(": ");
}

static void check_hex(const char *name, uint64_t v)
{
    check_begin("", name);
    put_hex(v);
    uart_putc('\n');
}

static void check_word(const char *name, const char *word)
{
    check_begin("", name);
    put_str(word);
    uart_putc('\n');
}

static void check_yes(const char *name, bool yes)
{
    check_word(name, yes ? "yes" : "no");
}

/* ======================================================================
 * Exceptions and interrupts
 * ====================================================================== */

/* What isr_common (entry.S) leaves on the stack. In 64-bit mode the CPU
 * always pushes SS:RSP, whatever the privilege levels. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;      /* pushed by the CPU */
};

/* The last exception: vector (NO_FAULT when none), error code, and the
 * CS:RIP of the frame. A check that expects a fault stores the address to
 * resume at in recover_rip; the handler moves the frame's RIP there. Both
 * are also used by ring3_code in entry.S (32 bytes, in this order). */
#define NO_FAULT 0xffffffffffffffffull
struct fault {
    uint64_t vector, error, rip, cs;
};
volatile struct fault last_fault;
volatile uint64_t recover_rip;
struct fault ring3_faults[4];           /* copies made by ring3_code */

static volatile uint32_t timer_ticks;   /* IRQ 0 count (never printed) */

/* Software interrupts 0x81-0x83: what the handler saw. */
static volatile struct {
    uint64_t if_inside, frame_cs, frame_if, frame_ss, frame_rsp;
    bool on_ist, frame_aligned;
} soft_int;

/* int $0x80 from ring 3: the frame the CPU pushed on the ring-0 stack. */
static struct {
    uint64_t cs, ss, rsp, rflags, ss_inside;
    bool on_tss_stack;
} int80_frame;

static void fault_reset(void)
{
    last_fault.vector = NO_FAULT;
    last_fault.error = 0;
    last_fault.rip = 0;
    last_fault.cs = 0;
}

/* Exceptions that push an error code (SDM Vol. 3A §6.15). */
static bool has_error_code(uint64_t vector)
{
    return vector < 32 && ((1u << vector) & 0x60227d00u);
}

static void put_fault(const volatile struct fault *f)
{
    static const char *const names[20] = {
        "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "CSO",
        "TS", "NP", "SS", "GP", "PF", "15", "MF", "AC", "MC", "XM",
    };
    if (f->vector == NO_FAULT) {
        put_str("none");
        return;
    }
    uart_putc('#');
    if (f->vector < 20) {
        put_str(names[f->vector]);
    } else {
        put_str("vector");
        put_hex(f->vector);
    }
    if (has_error_code(f->vector)) {
        uart_putc('(');
        put_hex(f->error);
        uart_putc(')');
    }
}

static void check_fault(const char *name, const volatile struct fault *f)
{
    check_begin("", name);
    put_fault(f);
    uart_putc('\n');
}

/* Called by isr_common for every vector. */
void trap_entry(struct trap_frame *f);
void trap_entry(struct trap_frame *f)
{
    uint64_t v = f->vector;

    if (v == VEC_IRQ0) {
        timer_ticks++;
        outb(PIC1_CMD, PIC_EOI);
        return;
    }
    if (v > VEC_IRQ0 && v < VEC_IRQ0 + 16) {
        /* Masked, so only spurious IRQ 7/15 can arrive: no EOI for those. */
        return;
    }
    if (v == VEC_SOFT_TRAP || v == VEC_SOFT_INTR || v == VEC_SOFT_IST) {
        soft_int.if_inside = flags_if(read_rflags());
        soft_int.frame_cs = f->cs;
        soft_int.frame_if = flags_if(f->rflags);
        soft_int.frame_ss = f->ss;
        soft_int.frame_rsp = f->rsp;
        soft_int.on_ist = (uint8_t *)(&f->ss + 1) == ist1_stack_top;
        soft_int.frame_aligned = ((uint64_t)(&f->ss + 1) & 15) == 0;
        return;
    }
    if (v == VEC_SYSCALL) {
        int80_frame.cs = f->cs;
        int80_frame.ss = f->ss;
        int80_frame.rsp = f->rsp;
        int80_frame.rflags = f->rflags;
        int80_frame.ss_inside = READ_SEG(ss);
        /* The frame ends exactly at the TSS's RSP0. */
        int80_frame.on_tss_stack = (uint8_t *)(&f->ss + 1) == ring0_stack_top;
        ring3_leave();
    }
    if (v < 32) {
        last_fault.vector = v;
        last_fault.error = f->error;
        last_fault.rip = f->rip;
        last_fault.cs = f->cs;
        if (recover_rip) {
            f->rip = recover_rip;
            recover_rip = 0;
            return;
        }
        if (v == VEC_BP)
            return;     /* a trap: RIP is already past the instruction */
    }
    put_str("guest64: unexpected ");
    put_fault(&(struct fault){ v, f->error, f->rip, f->cs });
    put_str(" at ");
    put_hex(f->rip);
    uart_putc('\n');
    guest_exit(1);
}

/* ======================================================================
 * Setup: page tables, GDT, segment registers, LDT, TSS, IDT
 * ====================================================================== */

/* The guest's own identity map of the first GiB in 2 MiB pages, user
 * accessible (ring 3 runs in it too). Under QEMU it replaces the stub's
 * map, so it must cover everything the guest touches; under popek paging
 * is bookkeeping (CR3 is recorded, nothing walks the tables). */
static void setup_paging(void)
{
    const uint64_t flags = PTE_P | PTE_RW | PTE_US;
    tables.pml4[0] = (uint64_t)tables.pdpt | flags;
    tables.pdpt[0] = (uint64_t)tables.pd | flags;
    for (uint64_t i = 0; i < 512; i++)
        tables.pd[i] = (i << 21) | flags | PTE_PS;
    WRITE_CR(3, (uint64_t)tables.pml4);
}

static void setup_descriptor_tables(void)
{
    const uint8_t kdata = ACC_P | ACC_DPL(0) | ACC_S | TYPE_DATA_RW;
    seg_desc *gdt = tables.gdt;

    /* Code segments: L = 1, D = 0 (64-bit); base and limit are ignored in
     * 64-bit mode, but LAR and LSL still show them. */
    set_segment(&gdt[SEL_KCODE >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_L);
    set_segment(&gdt[SEL_KDATA >> 3], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UCODE32 >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UDATA >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UCODE >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_L);
    set_segment(&gdt[SEL_CONFORMING >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XRC, FLG_G | FLG_L);
    set_segment(&gdt[SEL_SMALL >> 3], 0, 0xff, kdata, FLG_DB);
    set_segment(&gdt[SEL_NOTPRESENT >> 3], 0, 0xfffff,
                ACC_DPL(0) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_EXECONLY >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_X, FLG_G | FLG_L);
    set_system(&gdt[SEL_LDT >> 3], (uint64_t)tables.ldt,
               sizeof(tables.ldt) - 1, ACC_P | TYPE_LDT);
    set_system(&gdt[SEL_TSS >> 3], (uint64_t)&tables.tss,
               sizeof(tables.tss) - 1, ACC_P | TYPE_TSS);
    set_gate((gate64 *)&gdt[SEL_CALLGATE >> 3], (uint64_t)far_target,
             SEL_KCODE, ACC_P | ACC_DPL(0) | TYPE_CALL, 0);

    set_segment(&tables.ldt[0], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&tables.ldt[1], 0, 0xfff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_DB);

    /* RSP0 is the stack the CPU switches to on an interrupt from ring 3,
     * IST1 the one of the gate that names it. An I/O map base past the
     * limit means no I/O permission bitmap. */
    tables.tss.rsp[0] = (uint64_t)ring0_stack_top;
    tables.tss.ist[0] = (uint64_t)ist1_stack_top;
    tables.tss.iomap_base = sizeof(tables.tss);

    /* Every vector gets an interrupt gate to its stub, except the software
     * interrupts: 0x80 is a DPL-3 trap gate (ring 3 may call it), 0x81 a
     * trap gate (IF stays as it was), 0x82 an interrupt gate (IF cleared),
     * 0x83 an interrupt gate that switches to IST1. */
    for (unsigned v = 0; v < 256; v++)
        set_gate(&tables.idt[v], (uint64_t)(isr_stubs + 16 * v), SEL_KCODE,
                 ACC_P | ACC_DPL(0) | TYPE_INTR, 0);
    tables.idt[VEC_SYSCALL].access = ACC_P | ACC_DPL(3) | TYPE_TRAP;
    tables.idt[VEC_SOFT_TRAP].access = ACC_P | ACC_DPL(0) | TYPE_TRAP;
    tables.idt[VEC_SOFT_IST].ist = 1;

    /* LGDT, then a far return to reload CS from the new table (there is no
     * direct far JMP in 64-bit mode), then MOV to every data segment
     * register. */
    table_reg64 gdtr = { sizeof(tables.gdt) - 1, (uint64_t)tables.gdt };
    __asm__ volatile("lgdt %0\n\t"
                     "pushq $%c1\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "mov %2, %%ds\n\t"
                     "mov %2, %%es\n\t"
                     "mov %2, %%fs\n\t"
                     "mov %2, %%gs\n\t"
                     "mov %2, %%ss"
                     : : "m"(gdtr), "i"(SEL_KCODE), "r"((uint32_t)SEL_KDATA)
                     : "rax", "memory");

    table_reg64 idtr = { sizeof(tables.idt) - 1, (uint64_t)tables.idt };
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
    /* LLDT and LTR take a GDT selector of a 16-byte descriptor; LTR marks
     * the TSS busy (type 9 -> 0xB) in the GDT itself. */
    __asm__ volatile("lldt %w0" : : "r"(SEL_LDT) : "memory");
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS) : "memory");
}

/* ======================================================================
 * Checks, one function per family
 * ====================================================================== */

struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper;
};

/* Multiboot: the loader's memory sizes (there is no magic in EAX here:
 * popek enters a 64-bit guest with RDI only). And the long-mode entry
 * state: IF 0, IOPL 0; CR0 = PE|ET|PG, CR4 = PAE, EFER = LME|LMA. */
static void check_entry(const struct multiboot_info *mbi,
                        uint64_t initial_rflags)
{
    check_yes("multiboot_has_mem", mbi->flags & 1);
    check_hex("multiboot_mem_lower", mbi->mem_lower);
    check_hex("multiboot_mem_upper", mbi->mem_upper);
    check_hex("initial_if", flags_if(initial_rflags));
    check_hex("initial_iopl", flags_iopl(initial_rflags));
    check_hex("cr0_initial", READ_CR(0));
    check_hex("cr4_initial", READ_CR(4));
    check_hex("efer_initial", rdmsr(MSR_EFER));
}

/* SGDT/SIDT/SLDT/STR read descriptor-table registers. They are not
 * privileged. In 64-bit mode SGDT/SIDT store 10 bytes (limit, 64-bit
 * base): the preloaded all-ones base is gone entirely. SLDT/STR to a
 * 64-bit register zero-extend the selector. */
static void check_descriptor_registers(void)
{
    table_reg64 gdtr = { 0xffff, ~0ull }, idtr = { 0xffff, ~0ull };
    uint16_t ldtr_m16 = 0, tr_m16 = 0;
    uint64_t ldtr_r64 = ~0ull, tr_r64 = ~0ull;

    __asm__ volatile("sgdt %0" : "+m"(gdtr));
    __asm__ volatile("sidt %0" : "+m"(idtr));
    __asm__ volatile("sldt %0" : "=m"(ldtr_m16));
    __asm__ volatile("sldt %0" : "+r"(ldtr_r64));
    __asm__ volatile("str %0" : "=m"(tr_m16));
    __asm__ volatile("str %0" : "+r"(tr_r64));
    check_hex("sgdt_limit", gdtr.limit);
    check_hex("sgdt_base", gdtr.base);
    check_hex("sidt_limit", idtr.limit);
    check_hex("sidt_base", idtr.base);
    check_hex("sldt_m16", ldtr_m16);
    check_hex("sldt_r64", ldtr_r64);
    check_hex("str_m16", tr_m16);
    check_hex("str_r64", tr_r64);
}

static uint16_t smsw_m16(void)
{
    uint16_t v;
    __asm__ volatile("smsw %0" : "=m"(v));
    return v;
}

static void lmsw(uint16_t v)
{
    __asm__ volatile("lmsw %0" : : "r"(v) : "memory");
}

/* Control registers, debug registers, MSRs, cache/TLB instructions. All
 * privileged except SMSW, which reads CR0 without a trap: in 64-bit mode
 * SMSW r32 and r64 get all of CR0 (PG included), r16 and m16 its low
 * half. */
static void check_control_registers(void)
{
    uint64_t cr0 = READ_CR(0);

    uint16_t msw_r16;
    uint32_t msw_r32;
    uint64_t msw_r64 = ~0ull;
    __asm__ volatile("smsw %0" : "=r"(msw_r16));
    __asm__ volatile("smsw %0" : "=r"(msw_r32));
    __asm__ volatile("smsw %0" : "+r"(msw_r64));
    check_hex("smsw_m16", smsw_m16());
    check_hex("smsw_r16", msw_r16);
    check_hex("smsw_r32", msw_r32);
    check_hex("smsw_r64", msw_r64);

    /* LMSW loads PE, MP, EM and TS; CLTS clears TS. */
    lmsw((uint16_t)(cr0 | CR0_TS));
    check_hex("lmsw_ts_smsw", smsw_m16());
    __asm__ volatile("clts" ::: "memory");
    check_hex("clts_smsw", smsw_m16());
    WRITE_CR(0, cr0 | CR0_TS);
    check_hex("mov_cr0_ts", READ_CR(0));
    __asm__ volatile("clts" ::: "memory");
    check_hex("clts_cr0", READ_CR(0));
    lmsw(0);                                    /* cannot clear PE */
    check_hex("lmsw_keeps_pe", READ_CR(0));
    WRITE_CR(0, cr0);

    /* CR2 takes what is written; CR3 our own PML4. CR4.PSE is ignored in
     * long mode but reads back. CR8 is the task-priority register (4 bits),
     * a 64-bit-mode register; it goes back to 0 at once. */
    WRITE_CR(2, 0x12345000);
    check_hex("cr2", READ_CR(2));
    setup_paging();
    check_hex("cr3", READ_CR(3));
    uint64_t cr4 = READ_CR(4);
    WRITE_CR(4, cr4 | CR4_PSE);
    check_hex("cr4_pse", READ_CR(4));
    WRITE_CR(4, cr4);
    check_hex("cr8_initial", READ_CR(8));
    WRITE_CR(8, 5);
    check_hex("cr8", READ_CR(8));
    WRITE_CR(8, 0);

    /* DR0-DR3 hold addresses (64 bits wide); DR7 is 0x400 after reset. */
    check_hex("dr7_initial", READ_DR(7));
    WRITE_DR(0, 0x00101000);
    WRITE_DR(1, 0x00102000);
    WRITE_DR(2, 0x00103000);
    WRITE_DR(3, 0x00104000);
    check_hex("dr0", READ_DR(0));
    check_hex("dr1", READ_DR(1));
    check_hex("dr2", READ_DR(2));
    check_hex("dr3", READ_DR(3));

    /* Only architectural MSRs, written before they are read, or with a
     * reset value the SDM fixes (IA32_PAT, Vol. 3A §13.12.4). */
    wrmsr(MSR_SYSENTER_CS, SEL_KCODE);
    wrmsr(MSR_SYSENTER_ESP, 0x00200000);
    wrmsr(MSR_SYSENTER_EIP, 0x00201000);
    check_hex("msr_sysenter_cs", rdmsr(MSR_SYSENTER_CS));
    check_hex("msr_sysenter_esp", rdmsr(MSR_SYSENTER_ESP));
    check_hex("msr_sysenter_eip", rdmsr(MSR_SYSENTER_EIP));
    check_hex("msr_pat", rdmsr(MSR_PAT));
    /* SYSCALL's MSRs: STAR holds the selectors (kernel CS 0x08 in 47:32,
     * SYSRET's base 0x18 in 63:48), LSTAR the 64-bit entry, FMASK the
     * RFLAGS bits SYSCALL clears (IF, TF, DF, AC, as Linux). */
    wrmsr(MSR_STAR, (uint64_t)0x18 << 48 | (uint64_t)SEL_KCODE << 32);
    wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
    wrmsr(MSR_FMASK, EFLAGS_IF | EFLAGS_TF | EFLAGS_DF | EFLAGS_AC);
    check_hex("msr_star", rdmsr(MSR_STAR));
    check_yes("msr_lstar", rdmsr(MSR_LSTAR) == (uint64_t)syscall_entry);
    check_hex("msr_fmask", rdmsr(MSR_FMASK));
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    check_hex("efer_sce", rdmsr(MSR_EFER));

    __asm__ volatile("invlpg (%0)" : : "r"(&tables) : "memory");
    check_word("invlpg", "done");
    __asm__ volatile("wbinvd" ::: "memory");
    check_word("wbinvd", "done");
}

/* FS and GS bases: in 64-bit mode they are MSRs, and the memory at
 * %fs:0 / %gs:0 is read through them. SWAPGS exchanges GS_BASE with
 * KERNEL_GS_BASE (a kernel's way to its per-CPU data on entry). */
static uint64_t fs_word = 0x1111, gs_word = 0x2222, kgs_word = 0x3333;

static void check_segment_bases(void)
{
    uint64_t v;
    wrmsr(MSR_FS_BASE, (uint64_t)&fs_word);
    __asm__ volatile("mov %%fs:0, %0" : "=r"(v) : : "memory");
    check_hex("fs_base_read", v);
    check_yes("fs_base_msr", rdmsr(MSR_FS_BASE) == (uint64_t)&fs_word);
    wrmsr(MSR_GS_BASE, (uint64_t)&gs_word);
    wrmsr(MSR_KERNEL_GS_BASE, (uint64_t)&kgs_word);
    __asm__ volatile("mov %%gs:0, %0" : "=r"(v) : : "memory");
    check_hex("gs_base_read", v);
    __asm__ volatile("swapgs; mov %%gs:0, %0" : "=r"(v) : : "memory");
    check_hex("swapgs_gs_read", v);
    check_yes("swapgs_kernel_gs_base",
              rdmsr(MSR_KERNEL_GS_BASE) == (uint64_t)&gs_word);
    __asm__ volatile("swapgs" ::: "memory");
    check_yes("swapgs_back", rdmsr(MSR_GS_BASE) == (uint64_t)&gs_word);
    /* A selector load into FS sets the base from the descriptor (0). */
    __asm__ volatile("mov %0, %%fs" : : "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("fs_load_clears_base", rdmsr(MSR_FS_BASE));
    wrmsr(MSR_GS_BASE, 0);
    wrmsr(MSR_KERNEL_GS_BASE, 0);
}

/* PUSHFQ/POPFQ and IF, IOPL. At ring 0 POPFQ loads IF and IOPL; at ring 3
 * (CPL > IOPL) it silently keeps both, and PUSHFQ shows the real IF (1).
 * The PIC masks every IRQ here, so IF = 1 lets nothing in. */
static void check_flags(void)
{
    cli();
    uint64_t f = read_rflags();
    check_hex("pushf_after_cli_if", flags_if(f));
    check_hex("pushf_iopl", flags_iopl(f));
    sti();
    check_hex("pushf_after_sti_if", flags_if(read_rflags()));
    cli();

    write_rflags(f | EFLAGS_IF);
    check_hex("popf_sets_if", flags_if(read_rflags()));
    write_rflags(f & ~(uint64_t)EFLAGS_IF);
    check_hex("popf_clears_if", flags_if(read_rflags()));
    write_rflags(f | EFLAGS_IOPL);
    check_hex("popf_iopl3", flags_iopl(read_rflags()));
    write_rflags(f & ~(uint64_t)EFLAGS_IOPL);
    check_hex("popf_iopl0", flags_iopl(read_rflags()));
}

/* Linux's local_irq_save/local_irq_restore. */
static uint64_t irq_save(void)
{
    uint64_t f;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(f) : : "memory");
    return f;
}

static void irq_restore(uint64_t f)
{
    __asm__ volatile("pushq %0; popfq" : : "r"(f) : "memory", "cc");
}

/* The timer interrupt, HLT, and the irqsave/irqrestore idiom, exactly as
 * guest32 (every wait bounded and measured on the PIT). */
static void check_interrupts(void)
{
    outb(PIC1_DATA, 0xfe);  /* unmask IRQ 0 only */

    uint32_t t = timer_ticks;
    sti();
    check_yes("timer_irq", pit_wait(PIT_MS(50), &timer_ticks, t));
    cli();

    t = timer_ticks;
    __asm__ volatile("sti; hlt; cli" ::: "memory");
    check_yes("hlt_wakes", timer_ticks != t);

    sti();
    uint64_t saved = irq_save();                /* pushfq; cli */
    t = timer_ticks;
    pit_wait(PIT_MS(3), NULL, 0);               /* three timer periods */
    check_yes("irqsave_holds_irq", timer_ticks == t);
    irq_restore(saved);                         /* popfq: IF = 1 again */
    check_yes("irqrestore_delivers", pit_wait(PIT_MS(50), &timer_ticks, t));
    cli();

    outb(PIC1_DATA, 0xff);
}

/* Reading selectors: MOV from a segment register is not privileged, and
 * the RPL of CS and SS is the CPL. PUSH CS/SS/DS/ES do not exist in 64-bit
 * mode; PUSH FS/GS do, and write (at least) 16 bits of an 8-byte slot. */
static void check_selectors(void)
{
    check_hex("mov_from_cs", READ_SEG(cs));
    check_hex("mov_from_ss", READ_SEG(ss));
    check_hex("mov_from_ds", READ_SEG(ds));
    check_hex("mov_from_es", READ_SEG(es));

    uint64_t v;
    __asm__ volatile("push %%fs; popq %0" : "=r"(v));
    check_hex("push_fs", v & 0xffff);
    __asm__ volatile("push %%gs; popq %0" : "=r"(v));
    check_hex("push_gs", v & 0xffff);

    /* POP FS/GS load a selector, here from the LDT, and read back. */
    __asm__ volatile("pushq %1; pop %%fs; mov %%fs, %0; pushq %2; pop %%fs"
                     : "=r"(v) : "i"(SEL_LDT_KDATA), "i"(SEL_KDATA) : "memory");
    check_hex("pop_fs_ldt", v);
    __asm__ volatile("pushq %1; pop %%gs; mov %%gs, %0; pushq %2; pop %%gs"
                     : "=r"(v) : "i"(SEL_LDT_UDATA), "i"(SEL_KDATA) : "memory");
    check_hex("pop_gs_ldt_rpl3", v);
}

/* Loads `sel` into DS (or SS) and back, recording any fault. */
#define LOAD_SEG_EXPECT(sreg, sel) do {                                     \
        fault_reset();                                                      \
        __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"                        \
                         "movq %%rax, recover_rip(%%rip)\n\t"               \
                         "mov %0, %%" #sreg "\n"                            \
                         "1:\n\t"                                           \
                         "movq $0, recover_rip(%%rip)\n\t"                  \
                         "mov %1, %%" #sreg                                 \
                         : : "r"((uint32_t)(sel)), "r"((uint32_t)SEL_KDATA) \
                         : "rax", "memory");                                \
    } while (0)

struct __attribute__((packed)) far_pointer64 {
    uint64_t offset;
    uint16_t selector;
};
struct far_pointer64 far_ptr;   /* used by name in asm below */

struct __attribute__((packed)) far_pointer32 {
    uint32_t offset;
    uint16_t selector;
};
struct far_pointer32 far_ptr32;

/* Loading segment registers (SDM Vol. 2, MOV): past the table limit or not
 * a readable segment -> #GP(selector), not present -> #NP(selector), SS
 * must be a writable data segment with RPL = DPL = CPL. In 64-bit mode a
 * null SS is allowed at CPL 0 (with RPL 0): the CPU itself loads one on
 * every interrupt that changes privilege. */
static void check_segment_loads(void)
{
    uint64_t v;

    __asm__ volatile("mov %1, %%ds; mov %%ds, %0; mov %2, %%ds"
                     : "=r"(v) : "r"((uint32_t)SEL_LDT_KDATA),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_ds_ldt", v);
    __asm__ volatile("mov %1, %%fs; mov %%fs, %0; mov %2, %%fs"
                     : "=r"(v) : "r"((uint32_t)SEL_LDT_UDATA),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_fs_ldt_rpl3", v);
    __asm__ volatile("mov %1, %%gs; mov %%gs, %0; mov %2, %%gs"
                     : "=r"(v) : "r"((uint32_t)SEL_NULL),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_gs_null", v);

    LOAD_SEG_EXPECT(ds, SEL_BEYOND);
    check_fault("mov_ds_beyond_limit", &last_fault);
    LOAD_SEG_EXPECT(ds, SEL_NOTPRESENT);
    check_fault("mov_ds_not_present", &last_fault);
    LOAD_SEG_EXPECT(ds, SEL_EXECONLY);      /* code that cannot be read */
    check_fault("mov_ds_exec_only", &last_fault);
    LOAD_SEG_EXPECT(ds, SEL_TSS);           /* a system descriptor */
    check_fault("mov_ds_tss", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_KDATA | 3);     /* RPL 3 != CPL 0 */
    check_fault("mov_ss_rpl3", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_NULL);          /* allowed in 64-bit mode */
    check_fault("mov_ss_null", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_KDATA);
    check_fault("mov_ss_good", &last_fault);

    /* Far pointers m16:32 (a 4-byte offset, then the selector): LFS/LGS
     * load a segment register and a general register at once (the 32-bit
     * destination is zero-extended), LSS switches the stack. LDS/LES do
     * not exist in 64-bit mode. Not the REX.W form m16:64: Intel CPUs read
     * an 8-byte offset there, AMD CPUs and QEMU's TCG a 4-byte one (the
     * selector then comes from the offset's upper half), so the transcript
     * would depend on the vendor (README.md). */
    uint32_t off;
    far_ptr32 = (struct far_pointer32){ 0x11111111, SEL_LDT_UDATA };
    __asm__ volatile("lfs far_ptr32(%%rip), %0; mov %%fs, %1; mov %2, %%fs"
                     : "=&r"(off), "=&r"(v) : "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("lfs_sel", v);
    check_hex("lfs_off", off);
    far_ptr32 = (struct far_pointer32){ 0x22222222, SEL_KDATA };
    __asm__ volatile("lgs far_ptr32(%%rip), %0; mov %%gs, %1"
                     : "=&r"(off), "=&r"(v) : : "memory");
    check_hex("lgs_sel", v);
    check_hex("lgs_off", off);
    uint64_t rsp;
    far_ptr32 = (struct far_pointer32){ (uint32_t)(uint64_t)lss_stack_top, SEL_LDT_KDATA };
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "lss far_ptr32(%%rip), %%esp\n\t"
                     "mov %%rsp, %0\n\t"
                     "mov %%ss, %1\n\t"
                     "mov %2, %%ss\n\t"
                     "mov %%rbx, %%rsp"
                     : "=&r"(rsp), "=&r"(v) : "r"((uint32_t)SEL_KDATA)
                     : "rbx", "memory");
    check_hex("lss_sel", v);
    check_yes("lss_rsp", rsp == (uint64_t)lss_stack_top);
}

/* LAR, LSL, VERR, VERW ask about a selector without loading it (SDM
 * Vol. 2). ZF = 1 needs a visible descriptor (DPL >= CPL and RPL, unless
 * conforming code) of a type the instruction accepts; otherwise the
 * destination is left alone. In IA-32e mode the system types differ from
 * protected mode: LAR accepts the 64-bit TSS (available or busy) and the
 * 64-bit call gate; LSL the LDT and the 64-bit TSS; VERR/VERW no system
 * type. The upper half of a 16-byte descriptor reads as type 0: refused
 * by all four. LAR of the LDT descriptor is left out: the SDM's table
 * says no in IA-32e mode, QEMU's TCG (7.2) says yes (README.md). */
static const struct probe {
    const char *name;
    uint16_t sel;
    bool no_lar;
} probes[] = {
    { "kcode", SEL_KCODE, false },
    { "kdata", SEL_KDATA, false },
    { "kdata_rpl3", SEL_KDATA | 3, false },
    { "ucode32", SEL_UCODE32, false },
    { "udata", SEL_UDATA, false },
    { "ucode", SEL_UCODE, false },
    { "conforming", SEL_CONFORMING, false },
    { "conforming_rpl3", SEL_CONFORMING | 3, false },
    { "small", SEL_SMALL, false },
    { "not_present", SEL_NOTPRESENT, false },
    { "exec_only", SEL_EXECONLY, false },
    { "ldt_desc", SEL_LDT, true },
    { "ldt_desc_upper", SEL_LDT_UPPER, false },
    { "tss", SEL_TSS, false },
    { "tss_upper", SEL_TSS_UPPER, false },
    { "call_gate", SEL_CALLGATE, false },
    { "null", SEL_NULL, false },
    { "beyond_limit", SEL_BEYOND, false },
    { "ldt_kdata", SEL_LDT_KDATA, false },
    { "ldt_udata", SEL_LDT_UDATA, false },
};
#define NPROBES (sizeof(probes) / sizeof(probes[0]))
#define UNTOUCHED 0x5a5a5a5a5a5a5a5aull

static void check_result(const char *prefix, const char *name, bool zf,
                         uint64_t v, uint64_t mask)
{
    check_begin(prefix, name);
    if (zf)
        put_hex(v & mask);
    else
        put_str(v == UNTOUCHED ? "zf=0" : "zf=0-dest-written");
    uart_putc('\n');
}

static void check_descriptor_queries(void)
{
    for (size_t i = 0; i < NPROBES; i++) {
        uint64_t v = UNTOUCHED;
        bool zf;
        if (probes[i].no_lar)
            continue;
        __asm__ volatile("lar %w2, %0" : "+r"(v), "=@ccz"(zf) : "r"(probes[i].sel));
        check_result("lar_", probes[i].name, zf, v, 0x00f0ff00);
    }
    for (size_t i = 0; i < NPROBES; i++) {
        uint64_t v = UNTOUCHED;
        bool zf;
        __asm__ volatile("lsl %w2, %0" : "+r"(v), "=@ccz"(zf) : "r"(probes[i].sel));
        check_result("lsl_", probes[i].name, zf, v, ~0ull);
    }
    for (size_t i = 0; i < NPROBES; i++) {
        bool zf;
        __asm__ volatile("verr %w1" : "=@ccz"(zf) : "r"(probes[i].sel));
        check_begin("verr_", probes[i].name);
        put_str(zf ? "yes\n" : "no\n");
    }
    for (size_t i = 0; i < NPROBES; i++) {
        bool zf;
        __asm__ volatile("verw %w1" : "=@ccz"(zf) : "r"(probes[i].sel));
        check_begin("verw_", probes[i].name);
        put_str(zf ? "yes\n" : "no\n");
    }
}

/* Written by far_target in entry.S. */
uint64_t far_pushed_cs, far_pushed_rip, far_callee_cs;

/* Far JMP/CALL/RET, IRETQ and INT n: transfers that load CS and check it
 * against the descriptor tables and the CPL (all at the same level here);
 * then the exceptions, delivered through the guest's own IDT. */
static void check_control_transfers(void)
{
    uint64_t v, ret_rip;

    /* JMP m16:64 (FF /5 with REX.W) */
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, far_ptr(%%rip)\n\t"
                     "movw %1, far_ptr+8(%%rip)\n\t"
                     "rex64 ljmp *far_ptr(%%rip)\n"
                     "1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE) : "rax", "memory");
    check_hex("far_jmp_indirect_cs", v);
    /* A conforming segment keeps the CPL: CS becomes 0x30 with RPL 0. */
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, far_ptr(%%rip)\n\t"
                     "movw %1, far_ptr+8(%%rip)\n\t"
                     "rex64 ljmp *far_ptr(%%rip)\n"
                     "1:\tmov %%cs, %0\n\t"
                     "leaq 2f(%%rip), %%rax\n\t"
                     "movq %%rax, far_ptr(%%rip)\n\t"
                     "movw %2, far_ptr+8(%%rip)\n\t"
                     "rex64 ljmp *far_ptr(%%rip)\n"
                     "2:" : "=r"(v) : "i"(SEL_CONFORMING), "i"(SEL_KCODE)
                     : "rax", "memory");
    check_hex("far_jmp_conforming_cs", v);
    /* A far RET to the same level: LRETQ pops RIP and CS (8 bytes each). */
    __asm__ volatile("pushq %1\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE) : "rax", "memory");
    check_hex("lretq_cs", v);

    /* CALL m16:64 pushes CS then RIP, 8 bytes each; LRETQ pops them. */
    far_pushed_cs = far_pushed_rip = far_callee_cs = 0;
    far_ptr = (struct far_pointer64){ (uint64_t)far_target, SEL_KCODE };
    __asm__ volatile("rex64 lcall *far_ptr(%%rip)\n"
                     "1:\tleaq 1b(%%rip), %0"
                     : "=r"(ret_rip) : : "rax", "memory");
    check_hex("far_call_pushed_cs", far_pushed_cs);
    check_yes("far_call_pushed_rip", far_pushed_rip == ret_rip);
    check_hex("far_call_callee_cs", far_callee_cs);
    /* LRETQ $16 pops two argument quadwords after CS:RIP. */
    uint64_t rsp_before, rsp_after;
    far_ptr = (struct far_pointer64){ (uint64_t)far_target_imm, SEL_KCODE };
    __asm__ volatile("mov %%rsp, %0\n\t"
                     "pushq $1\n\t"
                     "pushq $2\n\t"
                     "rex64 lcall *far_ptr(%%rip)\n\t"
                     "mov %%rsp, %1"
                     : "=&r"(rsp_before), "=&r"(rsp_after) : : "rax", "memory");
    check_yes("lret_imm16_pops_args", rsp_before == rsp_after);

    /* IRETQ to the same level pops RIP, CS, RFLAGS and, in 64-bit mode
     * always, RSP and SS; at ring 0 it loads IF from the frame (1 -> 0).
     * The frame's RSP is another stack: IRETQ really switches to it. */
    uint64_t ss_after;
    sti();
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "pushq %3\n\t"             /* SS */
                     "pushq %2\n\t"             /* RSP */
                     "pushfq\n\t"
                     "andq $~0x200, (%%rsp)\n\t"
                     "pushq %4\n\t"             /* CS */
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "iretq\n"
                     "1:\tmov %%rsp, %0\n\t"
                     "mov %%ss, %1\n\t"
                     "mov %%rbx, %%rsp"
                     : "=&r"(v), "=&r"(ss_after)
                     : "r"((uint64_t)lss_stack_top), "i"(SEL_KDATA), "i"(SEL_KCODE)
                     : "rax", "rbx", "memory");
    check_yes("iretq_pops_rsp", v == (uint64_t)lss_stack_top);
    check_hex("iretq_ss", ss_after);
    check_hex("iretq_loads_if", flags_if(read_rflags()));
    cli();

    /* INT n with IF = 1: a trap gate keeps IF, an interrupt gate clears
     * it; both push SS:RSP (same level, no stack switch), RFLAGS as it was
     * (IF 1) and CS 0x08. */
    uint64_t rsp_at_int;
    sti();
    __asm__ volatile("mov %%rsp, %0; int $0x81" : "=&r"(rsp_at_int) : : "memory");
    cli();
    check_hex("int_trap_gate_if", soft_int.if_inside);
    check_hex("int_trap_gate_frame_cs", soft_int.frame_cs);
    check_hex("int_trap_gate_frame_ss", soft_int.frame_ss);
    check_yes("int_trap_gate_frame_rsp", soft_int.frame_rsp == rsp_at_int);
    /* The CPU aligns RSP down to 16 bytes before it pushes a 64-bit frame
     * (SDM Vol. 3A §6.14.2): with RSP 8 bytes off, the frame still ends on
     * a 16-byte boundary, and records the unaligned RSP. */
    uint64_t saved_rsp;
    __asm__ volatile("mov %%rsp, %1\n\t"
                     "and $~15, %%rsp\n\t"
                     "sub $8, %%rsp\n\t"    /* RSP = 8 mod 16 */
                     "mov %%rsp, %0\n\t"
                     "int $0x81\n\t"
                     "mov %1, %%rsp"
                     : "=&r"(rsp_at_int), "=&r"(saved_rsp) : : "memory");
    check_yes("int_frame_rsp_unaligned", soft_int.frame_rsp == rsp_at_int &&
                                         (rsp_at_int & 15) == 8);
    check_yes("int_frame_aligned_16", soft_int.frame_aligned);
    sti();
    __asm__ volatile("int $0x82" ::: "memory");
    cli();
    check_hex("int_intr_gate_if", soft_int.if_inside);
    check_hex("int_intr_gate_frame_if", soft_int.frame_if);
    check_yes("int_intr_gate_on_ist", soft_int.on_ist);
    /* Through a gate naming IST1: the CPU switches to the TSS's IST1 stack
     * even at the same privilege level. */
    __asm__ volatile("int $0x83" ::: "memory");
    check_yes("int_ist_gate_on_ist", soft_int.on_ist);

    /* INT3 is a trap: the frame's RIP is the next instruction. */
    fault_reset();
    __asm__ volatile("int3\n1:\tleaq 1b(%%rip), %0" : "=r"(ret_rip) : : "memory");
    check_fault("int3", &last_fault);
    check_yes("int3_rip_after", last_fault.rip == ret_rip);

    /* Faults: the frame's RIP is the faulting instruction itself. */
    uint64_t site;
    fault_reset();
    __asm__ volatile("leaq 1f(%%rip), %0\n\t"
                     "leaq 2f(%%rip), %%rbx\n\t"
                     "movq %%rbx, recover_rip(%%rip)\n"
                     "1:\tdivl %%ecx\n"
                     "2:" : "=&r"(site) : "a"(1), "d"(0), "c"(0) : "rbx", "cc", "memory");
    check_fault("div_by_zero", &last_fault);
    check_yes("div_by_zero_rip_at_div", last_fault.rip == site);
    fault_reset();
    __asm__ volatile("leaq 1f(%%rip), %0\n\t"
                     "leaq 2f(%%rip), %%rbx\n\t"
                     "movq %%rbx, recover_rip(%%rip)\n"
                     "1:\tud2\n"
                     "2:" : "=&r"(site) : : "rbx", "memory");
    check_fault("ud2", &last_fault);
    check_yes("ud2_rip_at_ud2", last_fault.rip == site);
    /* Gone from 64-bit mode: INTO (CE) and the direct far JMP (EA ptr16:32)
     * are #UD there. */
    fault_reset();
    __asm__ volatile("leaq 2f(%%rip), %%rbx\n\t"
                     "movq %%rbx, recover_rip(%%rip)\n\t"
                     ".byte 0xce\n"
                     "2:" : : : "rbx", "memory");
    check_fault("into_invalid", &last_fault);
    fault_reset();
    __asm__ volatile("leaq 2f(%%rip), %%rbx\n\t"
                     "movq %%rbx, recover_rip(%%rip)\n\t"
                     ".byte 0xea, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00\n"
                     "2:" : : : "rbx", "memory");
    check_fault("far_jmp_direct_invalid", &last_fault);

    /* Privileged instructions can still fault at ring 0 when their operand
     * is wrong: LLDT of a selector that is not an LDT, LTR of a TSS that is
     * already busy (ours, since the LTR at setup). */
    fault_reset();
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, recover_rip(%%rip)\n\t"
                     "lldt %w0\n"
                     "1:\tmovq $0, recover_rip(%%rip)" : : "r"(SEL_KDATA) : "rax", "memory");
    check_fault("lldt_not_ldt", &last_fault);
    fault_reset();
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, recover_rip(%%rip)\n\t"
                     "ltr %w0\n"
                     "1:\tmovq $0, recover_rip(%%rip)" : : "r"(SEL_TSS) : "rax", "memory");
    check_fault("ltr_busy_tss", &last_fault);
}

/* Port I/O in every form: immediate port and DX, byte/word/dword, and the
 * string forms with REP. Ports no device claims read as all ones. */
static void check_port_io(void)
{
    outb(COM1 + 7, 0xa5);                           /* DX form (port > 0xff) */
    check_hex("uart_scratch", inb(COM1 + 7));
    outb(PIC1_DATA, 0xa5);                          /* immediate form */
    check_hex("pic_master_imr", inb(PIC1_DATA));
    outb(PIC1_DATA, 0xff);
    uint16_t pic2 = PIC2_DATA;
    __asm__ volatile("outb %b0, %w1" : : "a"(0x5a), "d"(pic2));   /* DX form */
    check_hex("pic_slave_imr", inb(PIC2_DATA));
    outb(PIC2_DATA, 0xff);

    (void)pit_read();       /* the count itself depends on time */
    check_word("pit_latch_read", "done");

    /* REP OUTSB sends a string to the UART: it shows up in the line. */
    static const char text[] = "via-rep-outsb\n";
    check_begin("", "rep_outsb");
    while (!(inb(COM1 + 5) & LSR_THRE))
        ;
    const char *src = text;
    uint64_t n = sizeof(text) - 1;
    __asm__ volatile("rep outsb" : "+S"(src), "+c"(n) : "d"((uint16_t)COM1) : "memory");

    /* REP INSB reads the scratch register four times. */
    uint8_t buf[4] = { 0, 0, 0, 0 };
    uint8_t *dst = buf;
    n = sizeof(buf);
    outb(COM1 + 7, 0x3c);
    __asm__ volatile("rep insb" : "+D"(dst), "+c"(n) : "d"((uint16_t)(COM1 + 7)) : "memory");
    check_hex("rep_insb", (uint32_t)buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24);
    check_yes("rep_insb_regs", n == 0 && dst == buf + 4);

    check_hex("inb_unclaimed", inb(UNCLAIMED));
    check_hex("inw_unclaimed", inw(UNCLAIMED));
    check_hex("inl_unclaimed", inl(UNCLAIMED));
    outw(UNCLAIMED, 0x1234);
    outl(UNCLAIMED, 0x12345678);
    check_word("out_unclaimed", "done");
}

/* Written by entry.S: ring3_code (CS, SS, FS, DS at ring 3; CS, SS and
 * RFLAGS after SYSRETQ) and syscall_entry (RCX, R11, CS, SS, RFLAGS). */
uint64_t ring3_seen[7], syscall_seen[5];

/* Down to ring 3 with IRETQ and back with INT 0x80 through the DPL-3 trap
 * gate, with a SYSCALL/SYSRETQ round trip in between. Ring 3 runs with
 * RFLAGS = 0x202 (IF 1, IOPL 0) from the IRETQ frame, and nothing it does
 * before the SYSCALL changes a flag, so R11 and the frames show exactly
 * that value. */
static void check_ring3(void)
{
    fault_reset();
    ring3_run();
    check_hex("ring3_cs", ring3_seen[0] & 0xffff);
    check_hex("ring3_ss", ring3_seen[1] & 0xffff);
    check_hex("ring3_fs_after_iret", ring3_seen[2] & 0xffff);
    check_hex("ring3_ds", ring3_seen[3] & 0xffff);
    check_fault("ring3_cli", &ring3_faults[0]);
    check_fault("ring3_inb", &ring3_faults[1]);
    check_fault("ring3_swapgs", &ring3_faults[2]);
    check_fault("ring3_sysret", &ring3_faults[3]);
    /* SYSCALL: CS = STAR[47:32], SS = that + 8, RCX = the next RIP,
     * R11 = RFLAGS, then RFLAGS &= ~FMASK (IF 0 inside). */
    check_hex("syscall_cs", syscall_seen[2] & 0xffff);
    check_hex("syscall_ss", syscall_seen[3] & 0xffff);
    check_yes("syscall_rcx", syscall_seen[0] == (uint64_t)ring3_after_syscall);
    check_hex("syscall_r11", syscall_seen[1]);
    check_hex("syscall_rflags", syscall_seen[4]);
    /* SYSRETQ: CS = STAR[63:48] + 16 | 3, SS = STAR[63:48] + 8 | 3,
     * RFLAGS from R11. */
    check_hex("sysret_cs", ring3_seen[4] & 0xffff);
    check_hex("sysret_ss", ring3_seen[5] & 0xffff);
    check_hex("sysret_rflags", ring3_seen[6]);
    /* INT 0x80: to ring 0 on RSP0 with SS null (RPL 0), pushing ring 3's
     * SS:RSP and RFLAGS. */
    check_hex("int80_frame_cs", int80_frame.cs);
    check_hex("int80_frame_ss", int80_frame.ss);
    check_hex("int80_frame_rflags", int80_frame.rflags);
    check_yes("int80_frame_rsp_is_ring3_stack",
              int80_frame.rsp == (uint64_t)ring3_stack_top);
    check_yes("int80_frame_on_tss_rsp0", int80_frame.on_tss_stack);
    check_hex("int80_ss_inside", int80_frame.ss_inside);
}

/* ======================================================================
 * kmain
 * ====================================================================== */

void kmain(const struct multiboot_info *mbi) __attribute__((noreturn));
void kmain(const struct multiboot_info *mbi)
{
    uint64_t initial_rflags = read_rflags();

    uart_init();
    put_str("guest64: start\n");
    check_entry(mbi, initial_rflags);

    setup_descriptor_tables();
    pic_init();
    pit_init();

    check_descriptor_registers();
    check_control_registers();
    check_segment_bases();
    check_flags();
    check_interrupts();
    check_selectors();
    check_segment_loads();
    check_descriptor_queries();
    check_control_transfers();
    check_port_io();
    check_ring3();

    put_str("guest64: done\n");
    guest_exit(0);
}
