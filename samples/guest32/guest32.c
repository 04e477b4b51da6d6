/* samples/guest32/guest32.c — a small 32-bit kernel that checks, one line
 * each, what the x86 instructions a monitor must virtualize return at
 * ring 0.
 *
 * It boots the Multiboot way (on `qemu-system-i386 -kernel` or under
 * `popek boot`), sets up its own GDT, LDT, TSS and IDT, the PIC and the
 * PIT, and prints `check NAME: VALUE` lines on the UART. Every value is
 * fixed by the architecture and by what the guest itself loaded, never by
 * timing, so the transcript from QEMU (real ring 0) is the reference a
 * monitor's transcript must equal. README.md lists every check, what it
 * shows, and which lines come out wrong when the guest runs deprivileged
 * without patching.
 *
 * One function per family of instructions; kmain() at the end calls them in
 * order. SDM references are to the Intel SDM (Vol. 2 for instructions,
 * Vol. 3A for descriptors, interrupts and the TSS). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch.h"

/* ======================================================================
 * Selectors and descriptor tables
 * ====================================================================== */

/* GDT selectors (index * 8 | RPL). entry.S has the same numbers. */
#define SEL_NULL        0x00
#define SEL_KCODE       0x08    /* ring-0 code, flat */
#define SEL_KDATA       0x10    /* ring-0 data, flat */
#define SEL_UCODE       0x1b    /* ring-3 code, flat (0x18 | RPL 3) */
#define SEL_UDATA       0x23    /* ring-3 data, flat (0x20 | RPL 3) */
#define SEL_CONFORMING  0x28    /* ring-0 conforming code, flat */
#define SEL_SMALL       0x30    /* ring-0 data, byte-granular limit 0xff */
#define SEL_NOTPRESENT  0x38    /* ring-0 data with P = 0 */
#define SEL_LDT         0x40    /* the LDT's own descriptor */
#define SEL_TSS         0x48    /* the 32-bit TSS */
#define SEL_CALLGATE    0x50    /* 32-bit call gate to far_target */
#define SEL_EXECONLY    0x58    /* ring-0 code, execute-only */
#define GDT_ENTRIES     12
#define SEL_BEYOND      0x80    /* past the GDT limit (0x5f), and past the
                                   end of Linux's own 16-entry GDT too */
/* LDT selectors: TI (bit 2) = 1. */
#define SEL_LDT_KDATA   0x04    /* LDT entry 0: ring-0 data, flat */
#define SEL_LDT_UDATA   0x0f    /* LDT entry 1 | RPL 3: ring-3 data, limit 0xfff */
#define LDT_ENTRIES     2

/* Interrupt vectors: exceptions 0-31, the PIC's IRQs at 0x20-0x2f (ICW2),
 * then the software interrupts of the checks. */
#define VEC_DE          0
#define VEC_BP          3
#define VEC_OF          4
#define VEC_UD          6
#define VEC_GP          13
#define VEC_IRQ0        0x20
#define VEC_SYSCALL     0x80    /* DPL-3 trap gate: ring 3 calls ring 0 */
#define VEC_SOFT_TRAP   0x81    /* DPL-0 trap gate */
#define VEC_SOFT_INTR   0x82    /* DPL-0 interrupt gate */

/* All tables in one struct at a fixed address (link.ld puts .data.tables at
 * 0x00120000): the GDT first, so SGDT shows base 0x120000. The CPU writes
 * to the GDT (LTR sets the TSS busy bit), so it lives on a data page. */
struct tables {
    seg_desc gdt[GDT_ENTRIES];
    seg_desc ldt[LDT_ENTRIES];
    tss32 tss;
    gate_desc idt[256];
};
__attribute__((section(".data.tables"), aligned(4096)))
struct tables tables;

/* From entry.S. */
extern const uint8_t isr_stubs[];       /* 256 stubs of 16 bytes */
extern uint8_t boot_stack_top[], ring0_stack_top[], ring3_stack_top[],
    lss_stack_top[];
extern void far_target(void), far_target_imm(void), ring3_code(void);
extern uint32_t ring3_run(void);
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

static void set_gate(gate_desc *g, uint32_t offset, uint16_t selector,
                     uint8_t access)
{
    g->offset_lo = offset & 0xffff;
    g->selector = selector;
    g->zero_or_params = 0;
    g->access = access;
    g->offset_hi = offset >> 16;
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
 * (away from the exceptions), then every IRQ is masked. Checks unmask IRQ 0
 * only while they need the timer. */
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
 * counting instructions: under a monitor every IN costs tens of
 * microseconds, under QEMU a fraction of one. Missing a wrap of the count
 * only makes the wait longer, and PIT_MAX_POLLS bounds it anyway. */
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

/* What isr_common (entry.S) leaves on the stack. */
struct trap_frame {
    uint32_t es, ds;
    uint32_t edi, esi, ebp, esp_pusha, ebx, edx, ecx, eax;
    uint32_t vector, error;
    uint32_t eip, cs, eflags;   /* pushed by the CPU */
    uint32_t esp3, ss3;         /* pushed only when coming from ring 3 */
};

/* The last exception: vector (NO_FAULT when none), error code, and the
 * CS:EIP of the frame. A check that expects a fault stores the address to
 * resume at in recover_eip; the handler moves the frame's EIP there. Both
 * are also used by ring3_code in entry.S. */
#define NO_FAULT 0xffffffffu
struct fault {
    uint32_t vector, error, eip, cs;
};
volatile struct fault last_fault;
volatile uint32_t recover_eip;
struct fault ring3_faults[2];           /* copies made by ring3_code */

static volatile uint32_t timer_ticks;   /* IRQ 0 count (never printed) */

/* Software interrupts 0x81/0x82: what the handler saw. */
static volatile struct {
    uint32_t if_inside, frame_cs, frame_if;
} soft_int;

/* int $0x80 from ring 3: the frame the CPU pushed on the ring-0 stack. */
static struct {
    uint32_t cs, ss, esp;
    bool on_tss_stack;
} syscall_frame;

static void fault_reset(void)
{
    last_fault.vector = NO_FAULT;
    last_fault.error = 0;
    last_fault.eip = 0;
    last_fault.cs = 0;
}

/* Exceptions that push an error code (SDM Vol. 3A §6.15). */
static bool has_error_code(uint32_t vector)
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
    uint32_t v = f->vector;

    if (v == VEC_IRQ0) {
        timer_ticks++;
        outb(PIC1_CMD, PIC_EOI);
        return;
    }
    if (v > VEC_IRQ0 && v < VEC_IRQ0 + 16) {
        /* Masked, so only spurious IRQ 7/15 can arrive: no EOI for those. */
        return;
    }
    if (v == VEC_SOFT_TRAP || v == VEC_SOFT_INTR) {
        soft_int.if_inside = flags_if(read_eflags());
        soft_int.frame_cs = f->cs;
        soft_int.frame_if = flags_if(f->eflags);
        return;
    }
    if (v == VEC_SYSCALL) {
        syscall_frame.cs = f->cs;
        syscall_frame.ss = f->ss3;
        syscall_frame.esp = f->esp3;
        /* The frame ends exactly at the TSS's esp0. */
        syscall_frame.on_tss_stack = (uint8_t *)(&f->ss3 + 1) == ring0_stack_top;
        ring3_leave();
    }
    if (v < 32) {
        last_fault.vector = v;
        last_fault.error = f->error;
        last_fault.eip = f->eip;
        last_fault.cs = f->cs;
        if (recover_eip) {
            f->eip = recover_eip;
            recover_eip = 0;
            return;
        }
        if (v == VEC_BP || v == VEC_OF)
            return;     /* traps: EIP is already past the instruction */
    }
    put_str("guest32: unexpected ");
    put_fault(&(struct fault){ v, f->error, f->eip, f->cs });
    put_str(" at ");
    put_hex(f->eip);
    uart_putc('\n');
    guest_exit(1);
}

/* ======================================================================
 * Setup: GDT, segment registers, LDT, TSS, IDT
 * ====================================================================== */

static void setup_descriptor_tables(void)
{
    const uint8_t kcode = ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XR;
    const uint8_t kdata = ACC_P | ACC_DPL(0) | ACC_S | TYPE_DATA_RW;
    seg_desc *gdt = tables.gdt;

    set_segment(&gdt[SEL_KCODE >> 3], 0, 0xfffff, kcode, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_KDATA >> 3], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UCODE >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UDATA >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_CONFORMING >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XRC, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_SMALL >> 3], 0, 0xff, kdata, FLG_DB);
    set_segment(&gdt[SEL_NOTPRESENT >> 3], 0, 0xfffff,
                ACC_DPL(0) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_LDT >> 3], (uint32_t)tables.ldt,
                sizeof(tables.ldt) - 1, ACC_P | TYPE_LDT, 0);
    set_segment(&gdt[SEL_TSS >> 3], (uint32_t)&tables.tss,
                sizeof(tables.tss) - 1, ACC_P | TYPE_TSS32, 0);
    set_gate((gate_desc *)&gdt[SEL_CALLGATE >> 3], (uint32_t)far_target,
             SEL_KCODE, ACC_P | ACC_DPL(0) | TYPE_CALL32);
    set_segment(&gdt[SEL_EXECONLY >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_X, FLG_G | FLG_DB);

    set_segment(&tables.ldt[0], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&tables.ldt[1], 0, 0xfff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_DB);

    /* ss0:esp0 is the stack the CPU switches to on an interrupt from ring 3.
     * An I/O map base past the limit means no I/O permission bitmap. */
    tables.tss.ss0 = SEL_KDATA;
    tables.tss.esp0 = (uint32_t)ring0_stack_top;
    tables.tss.iomap_base = sizeof(tables.tss);

    /* Every vector gets an interrupt gate to its stub, except the software
     * interrupts: 0x80 is a DPL-3 trap gate (ring 3 may call it), 0x81 a
     * trap gate (IF stays as it was), 0x82 an interrupt gate (IF cleared). */
    for (unsigned v = 0; v < 256; v++)
        set_gate(&tables.idt[v], (uint32_t)(isr_stubs + 16 * v), SEL_KCODE,
                 ACC_P | ACC_DPL(0) | TYPE_INTR32);
    tables.idt[VEC_SYSCALL].access = ACC_P | ACC_DPL(3) | TYPE_TRAP32;
    tables.idt[VEC_SOFT_TRAP].access = ACC_P | ACC_DPL(0) | TYPE_TRAP32;

    /* LGDT, then a far JMP to reload CS from the new table, then MOV to
     * every data segment register (MOV SS holds off interrupts for one
     * instruction; IF is 0 anyway). */
    table_reg gdtr = { sizeof(tables.gdt) - 1, (uint32_t)tables.gdt };
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $%c1, $1f\n"
                     "1:\n\t"
                     "mov %2, %%ds\n\t"
                     "mov %2, %%es\n\t"
                     "mov %2, %%fs\n\t"
                     "mov %2, %%gs\n\t"
                     "mov %2, %%ss"
                     : : "m"(gdtr), "i"(SEL_KCODE), "r"((uint32_t)SEL_KDATA)
                     : "memory");

    table_reg idtr = { sizeof(tables.idt) - 1, (uint32_t)tables.idt };
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
    /* LLDT and LTR take a GDT selector; LTR marks the TSS busy (type 9 ->
     * 0xB) in the GDT itself. */
    __asm__ volatile("lldt %w0" : : "r"(SEL_LDT) : "memory");
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS) : "memory");
}

/* ======================================================================
 * Checks, one function per family
 * ====================================================================== */

struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper;
};

/* Multiboot: the loader's handshake. mem_lower and mem_upper are KiB of
 * memory below 1 MiB and above 1 MiB; QEMU -m 64 gives 640 (0x280) and
 * 64 MiB - 1 MiB = 64512 (0xfc00). */
static void check_multiboot(uint32_t magic, const struct multiboot_info *mbi,
                            uint32_t initial_eflags)
{
    check_hex("multiboot_magic", magic);
    if (magic != 0x2badb002)
        return;
    check_yes("multiboot_has_mem", mbi->flags & 1);
    check_hex("multiboot_mem_lower", mbi->mem_lower);
    check_hex("multiboot_mem_upper", mbi->mem_upper);
    /* The Multiboot spec: entered with IF 0; IOPL is 0 after reset. */
    check_hex("initial_if", flags_if(initial_eflags));
    check_hex("initial_iopl", flags_iopl(initial_eflags));
}

/* SGDT/SIDT/SLDT/STR read descriptor-table registers. They are not
 * privileged: at ring 3 on a CPU with UMIP, Linux answers them with its
 * own dummy values and the monitor never sees them. Register forms of
 * SLDT/STR with a 32-bit destination zero-extend the selector (P6 and
 * later), so the 0xffffffff preloaded is gone. */
static void check_descriptor_registers(void)
{
    table_reg gdtr = { 0, 0 }, idtr = { 0, 0 };
    uint16_t ldtr_m16 = 0, tr_m16 = 0;
    uint32_t ldtr_r32 = 0xffffffff, tr_r32 = 0xffffffff;

    __asm__ volatile("sgdt %0" : "=m"(gdtr));
    __asm__ volatile("sidt %0" : "=m"(idtr));
    __asm__ volatile("sldt %0" : "=m"(ldtr_m16));
    __asm__ volatile("sldt %0" : "+r"(ldtr_r32));
    __asm__ volatile("str %0" : "=m"(tr_m16));
    __asm__ volatile("str %0" : "+r"(tr_r32));
    check_hex("sgdt_limit", gdtr.limit);
    check_hex("sgdt_base", gdtr.base);
    check_hex("sidt_limit", idtr.limit);
    check_hex("sidt_base", idtr.base);
    check_hex("sldt_m16", ldtr_m16);
    check_hex("sldt_r32", ldtr_r32);
    check_hex("str_m16", tr_m16);
    check_hex("str_r32", tr_r32);
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
 * privileged except SMSW, which reads CR0[15:0] without a trap. */
static void check_control_registers(void)
{
    uint32_t cr0 = READ_CR(0);
    check_hex("cr0_initial", cr0);          /* Multiboot leaves PE; ET is 1 */

    uint16_t msw_r16;
    uint32_t msw_r32 = 0xffffffff;
    __asm__ volatile("smsw %0" : "=r"(msw_r16));
    __asm__ volatile("smsw %0" : "+r"(msw_r32));
    check_hex("smsw_m16", smsw_m16());
    check_hex("smsw_r16", msw_r16);
    /* SMSW r32 outside 64-bit mode: bits 31:16 are undefined (SDM). */
    check_hex("smsw_r32_low16", msw_r32 & 0xffff);

    /* LMSW loads PE, MP, EM and TS; CLTS clears TS. */
    lmsw((uint16_t)(cr0 | CR0_TS));
    check_hex("lmsw_ts_smsw", smsw_m16());
    __asm__ volatile("clts" ::: "memory");
    check_hex("clts_smsw", smsw_m16());
    WRITE_CR(0, cr0 | CR0_TS);
    check_hex("mov_cr0_ts", READ_CR(0));
    __asm__ volatile("clts" ::: "memory");
    check_hex("clts_cr0", READ_CR(0));
    /* LMSW cannot clear PE (it can only set it): CR0 keeps PE. */
    lmsw(0);
    check_hex("lmsw_keeps_pe", READ_CR(0));
    WRITE_CR(0, cr0);

    /* CR2 and CR3 take what is written (CR3 holds a page-directory base;
     * paging stays off, so nothing reads it). CR4.PSE is harmless. */
    WRITE_CR(2, 0x12345000);
    check_hex("cr2", READ_CR(2));
    WRITE_CR(3, 0x00400000);
    check_hex("cr3", READ_CR(3));
    WRITE_CR(3, 0);
    uint32_t cr4 = READ_CR(4);
    check_hex("cr4_initial", cr4);
    WRITE_CR(4, cr4 | CR4_PSE);
    check_hex("cr4_pse", READ_CR(4));
    WRITE_CR(4, cr4);

    /* DR0-DR3 hold addresses; DR7 is 0x400 after reset (bit 10 reads as
     * 1), so no breakpoint is armed by writing DR0-DR3. */
    check_hex("dr7_initial", READ_DR(7));
    WRITE_DR(0, 0x00101000);
    WRITE_DR(1, 0x00102000);
    WRITE_DR(2, 0x00103000);
    WRITE_DR(3, 0x00104000);
    check_hex("dr0", READ_DR(0));
    check_hex("dr1", READ_DR(1));
    check_hex("dr2", READ_DR(2));
    check_hex("dr3", READ_DR(3));

    /* Only architectural MSRs: the SYSENTER trio takes what is written;
     * IA32_PAT resets to 0x0007040600070406 (SDM Vol. 3A §12.12.4). */
    wrmsr(MSR_SYSENTER_CS, SEL_KCODE);
    wrmsr(MSR_SYSENTER_ESP, 0x00200000);
    wrmsr(MSR_SYSENTER_EIP, 0x00201000);
    check_hex("msr_sysenter_cs", rdmsr(MSR_SYSENTER_CS));
    check_hex("msr_sysenter_esp", rdmsr(MSR_SYSENTER_ESP));
    check_hex("msr_sysenter_eip", rdmsr(MSR_SYSENTER_EIP));
    check_hex("msr_pat", rdmsr(MSR_PAT));

    __asm__ volatile("invlpg (%0)" : : "r"(&tables) : "memory");
    check_word("invlpg", "done");
    __asm__ volatile("wbinvd" ::: "memory");
    check_word("wbinvd", "done");
}

/* PUSHF/POPF and IF, IOPL. At ring 0 POPF loads IF and IOPL; at ring 3
 * (CPL > IOPL) it silently keeps both, and PUSHF shows the real IF (1).
 * The PIC masks every IRQ here, so IF = 1 lets nothing in. */
static void check_flags(void)
{
    cli();
    uint32_t f = read_eflags();
    check_hex("pushf_after_cli_if", flags_if(f));
    check_hex("pushf_iopl", flags_iopl(f));
    sti();
    check_hex("pushf_after_sti_if", flags_if(read_eflags()));
    cli();

    write_eflags(f | EFLAGS_IF);
    check_hex("popf_sets_if", flags_if(read_eflags()));
    write_eflags(f & ~EFLAGS_IF);
    check_hex("popf_clears_if", flags_if(read_eflags()));
    write_eflags(f | EFLAGS_IOPL);
    check_hex("popf_iopl3", flags_iopl(read_eflags()));
    write_eflags(f & ~EFLAGS_IOPL);
    check_hex("popf_iopl0", flags_iopl(read_eflags()));
}

/* Linux's local_irq_save/local_irq_restore. */
static uint32_t irq_save(void)
{
    uint32_t f;
    __asm__ volatile("pushfl; popl %0; cli" : "=r"(f) : : "memory");
    return f;
}

static void irq_restore(uint32_t f)
{
    __asm__ volatile("pushl %0; popfl" : : "r"(f) : "memory", "cc");
}

/* The timer interrupt, HLT, and the irqsave/irqrestore idiom: with the
 * PIT running, `pushf; cli; ...; popf` must hold the timer off and then let
 * it in. Deprivileged without patching, the POPF cannot restore the
 * virtual IF (CPL > IOPL: POPF keeps IF), so no interrupt comes: `no`.
 * Every wait is bounded and measured on the PIT; nothing halts with IF 0. */
static void check_interrupts(void)
{
    outb(PIC1_DATA, 0xfe);  /* unmask IRQ 0 only */

    uint32_t t = timer_ticks;
    sti();
    check_yes("timer_irq", pit_wait(PIT_MS(50), &timer_ticks, t));
    cli();

    /* STI holds interrupts off for one more instruction, so `sti; hlt`
     * cannot lose a wake-up between the two. */
    t = timer_ticks;
    __asm__ volatile("sti; hlt; cli" ::: "memory");
    check_yes("hlt_wakes", timer_ticks != t);

    sti();
    uint32_t saved = irq_save();                /* pushf; cli */
    t = timer_ticks;
    pit_wait(PIT_MS(3), NULL, 0);               /* three timer periods */
    check_yes("irqsave_holds_irq", timer_ticks == t);
    irq_restore(saved);                         /* popf: IF = 1 again */
    check_yes("irqrestore_delivers", pit_wait(PIT_MS(50), &timer_ticks, t));
    cli();

    outb(PIC1_DATA, 0xff);
}

/* Reading selectors: MOV from a segment register and PUSH of one are not
 * privileged, and the RPL of CS and SS is the CPL: 0 here, 3 in any ring-3
 * process. A 32-bit PUSH of a segment register may write only 16 bits of
 * its slot (SDM), so only those are printed. */
static void check_selectors(void)
{
    check_hex("mov_from_cs", READ_SEG(cs));
    check_hex("mov_from_ss", READ_SEG(ss));
    check_hex("mov_from_ds", READ_SEG(ds));
    check_hex("mov_from_es", READ_SEG(es));

    uint32_t v;
    __asm__ volatile("push %%cs; popl %0" : "=r"(v));
    check_hex("push_cs", v & 0xffff);
    __asm__ volatile("push %%ss; popl %0" : "=r"(v));
    check_hex("push_ss", v & 0xffff);
    __asm__ volatile("push %%ds; popl %0" : "=r"(v));
    check_hex("push_ds", v & 0xffff);

    /* POP DS loads a selector, here from the LDT, and DS shows it. */
    __asm__ volatile("pushl %1; pop %%ds; mov %%ds, %0; pushl %2; pop %%ds"
                     : "=r"(v) : "i"(SEL_LDT_KDATA), "i"(SEL_KDATA) : "memory");
    check_hex("pop_ds_ldt", v);
}

/* Loads `sel` into DS (or SS, or FS) and back, recording any fault. */
#define LOAD_SEG_EXPECT(sreg, sel) do {                                     \
        fault_reset();                                                      \
        __asm__ volatile("movl $1f, recover_eip\n\t"                        \
                         "mov %0, %%" #sreg "\n"                            \
                         "1:\n\t"                                           \
                         "movl $0, recover_eip\n\t"                         \
                         "mov %1, %%" #sreg                                 \
                         : : "r"((uint32_t)(sel)), "r"((uint32_t)SEL_KDATA) \
                         : "memory");                                       \
    } while (0)

struct __attribute__((packed)) far_pointer {
    uint32_t offset;
    uint16_t selector;
};
struct far_pointer far_ptr;     /* used by name in asm below */

/* Loading segment registers: the CPU checks the descriptor when the
 * selector is loaded (SDM Vol. 2, MOV): past the table limit or not a
 * readable segment -> #GP(selector), not present -> #NP(selector), SS must
 * be a writable data segment with RPL = DPL = CPL, and a null SS is #GP(0).
 * The error code is the selector with the RPL bits cleared. */
static void check_segment_loads(void)
{
    uint32_t v;

    __asm__ volatile("mov %1, %%ds; mov %%ds, %0; mov %2, %%ds"
                     : "=r"(v) : "r"((uint32_t)SEL_LDT_KDATA),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_ds_ldt", v);
    __asm__ volatile("mov %1, %%fs; mov %%fs, %0; mov %2, %%fs"
                     : "=r"(v) : "r"((uint32_t)SEL_LDT_UDATA),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_fs_ldt_rpl3", v);
    /* A null selector may be loaded into a data segment register (using
     * it would fault). GS, not DS: deprivileged without patching, the load
     * of null succeeds natively and the reload of 0x10 is emulated, so the
     * real register would stay null; nothing here uses GS. */
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
    LOAD_SEG_EXPECT(ss, SEL_NULL);
    check_fault("mov_ss_null", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_KDATA);
    check_fault("mov_ss_good", &last_fault);

    /* Far pointers in memory (offset, then selector): LDS/LES/LFS/LGS load
     * a segment register and a general register at once, LSS switches the
     * stack. */
    uint32_t off;
    far_ptr = (struct far_pointer){ 0x11111111, SEL_LDT_KDATA };
    __asm__ volatile("lds far_ptr, %0; mov %%ds, %1; mov %2, %%ds"
                     : "=&r"(off), "=&r"(v) : "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("lds_sel", v);
    check_hex("lds_off", off);
    far_ptr = (struct far_pointer){ 0x22222222, SEL_LDT_KDATA };
    __asm__ volatile("les far_ptr, %0; mov %%es, %1; mov %2, %%es"
                     : "=&r"(off), "=&r"(v) : "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("les_sel", v);
    check_hex("les_off", off);
    far_ptr = (struct far_pointer){ 0x33333333, SEL_LDT_UDATA };
    __asm__ volatile("lfs far_ptr, %0; mov %%fs, %1; mov %2, %%fs"
                     : "=&r"(off), "=&r"(v) : "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("lfs_sel", v);
    check_hex("lfs_off", off);
    far_ptr = (struct far_pointer){ 0x44444444, SEL_KDATA };
    __asm__ volatile("lgs far_ptr, %0; mov %%gs, %1"
                     : "=&r"(off), "=&r"(v) : : "memory");
    check_hex("lgs_sel", v);
    check_hex("lgs_off", off);
    /* LSS to the LDT's ring-0 data segment and a small stack, then back. */
    uint32_t esp;
    far_ptr = (struct far_pointer){ (uint32_t)lss_stack_top, SEL_LDT_KDATA };
    __asm__ volatile("mov %%esp, %%ebx\n\t"
                     "lss far_ptr, %%esp\n\t"
                     "mov %%esp, %0\n\t"
                     "mov %%ss, %1\n\t"
                     "mov %2, %%ss\n\t"
                     "mov %%ebx, %%esp"
                     : "=&r"(esp), "=&r"(v) : "r"((uint32_t)SEL_KDATA)
                     : "ebx", "memory");
    check_hex("lss_sel", v);
    check_yes("lss_esp", esp == (uint32_t)lss_stack_top);
}

/* LAR, LSL, VERR, VERW ask about a selector without loading it. They set
 * ZF when the descriptor is visible from the current CPL and the
 * selector's RPL (DPL >= both, except conforming code) and of a type the
 * instruction accepts; with ZF = 0 the destination is left alone (the
 * preloaded 0x5a5a5a5a shows it was). LAR's result is the descriptor's
 * second dword masked to 0x00F0FF00 (bits 19:16 are undefined); LSL's is
 * the limit in bytes. System types: LAR accepts LDT, TSS and call gates;
 * LSL accepts LDT and TSS; VERR/VERW accept none. The P bit is not
 * checked by any of the four (SDM Vol. 2, LAR/LSL/VERR/VERW). */
static const struct probe {
    const char *name;
    uint16_t sel;
} probes[] = {
    { "kcode", SEL_KCODE },
    { "kdata", SEL_KDATA },
    { "kdata_rpl3", SEL_KDATA | 3 },
    { "ucode", SEL_UCODE },
    { "udata", SEL_UDATA },
    { "conforming", SEL_CONFORMING },
    { "conforming_rpl3", SEL_CONFORMING | 3 },
    { "small", SEL_SMALL },
    { "not_present", SEL_NOTPRESENT },
    { "ldt_desc", SEL_LDT },
    { "tss", SEL_TSS },
    { "call_gate", SEL_CALLGATE },
    { "exec_only", SEL_EXECONLY },
    { "null", SEL_NULL },
    { "beyond_limit", SEL_BEYOND },
    { "ldt_kdata", SEL_LDT_KDATA },
    { "ldt_udata", SEL_LDT_UDATA },
};
#define NPROBES (sizeof(probes) / sizeof(probes[0]))
#define UNTOUCHED 0x5a5a5a5au

static void check_result(const char *prefix, const char *name, bool zf,
                         uint32_t v, uint32_t mask)
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
        uint32_t v = UNTOUCHED;
        bool zf;
        __asm__ volatile("lar %w2, %0" : "+r"(v), "=@ccz"(zf) : "r"(probes[i].sel));
        check_result("lar_", probes[i].name, zf, v, 0x00f0ff00);
    }
    for (size_t i = 0; i < NPROBES; i++) {
        uint32_t v = UNTOUCHED;
        bool zf;
        __asm__ volatile("lsl %w2, %0" : "+r"(v), "=@ccz"(zf) : "r"(probes[i].sel));
        check_result("lsl_", probes[i].name, zf, v, 0xffffffff);
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
uint32_t far_pushed_cs, far_pushed_eip, far_callee_cs;

/* Far JMP/CALL/RET, IRET and INT n: transfers that load CS and check it
 * against the descriptor tables and the CPL (all at the same level here);
 * then the exceptions, delivered through the guest's own IDT. */
static void check_control_transfers(void)
{
    uint32_t v, ret_eip;

    __asm__ volatile("ljmp $%c1, $1f\n1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE));
    check_hex("far_jmp_direct_cs", v);
    __asm__ volatile("movl $1f, far_ptr\n\t"
                     "movw %1, far_ptr+4\n\t"
                     "ljmp *far_ptr\n"
                     "1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE) : "memory");
    check_hex("far_jmp_indirect_cs", v);
    /* A conforming segment keeps the CPL: CS becomes 0x28 with RPL 0. */
    __asm__ volatile("ljmp $%c1, $1f\n1:\tmov %%cs, %0\n\tljmp $%c2, $2f\n2:"
                     : "=r"(v) : "i"(SEL_CONFORMING), "i"(SEL_KCODE));
    check_hex("far_jmp_conforming_cs", v);

    /* A far CALL pushes CS then EIP; LRET pops them. */
    far_pushed_cs = far_pushed_eip = far_callee_cs = 0;
    __asm__ volatile("lcall $%c2, $far_target\n1:\tmovl $1b, %0"
                     : "=r"(ret_eip), "=m"(far_pushed_cs) : "i"(SEL_KCODE)
                     : "eax", "memory");
    check_hex("far_call_pushed_cs", far_pushed_cs & 0xffff);
    check_yes("far_call_pushed_eip", far_pushed_eip == ret_eip);
    far_ptr = (struct far_pointer){ (uint32_t)far_target, SEL_KCODE };
    far_pushed_cs = 0;
    __asm__ volatile("lcall *far_ptr" : : : "eax", "memory");
    check_hex("far_call_indirect_pushed_cs", far_pushed_cs & 0xffff);
    /* LRET $8 pops two argument dwords after CS:EIP. */
    uint32_t esp_before, esp_after;
    __asm__ volatile("mov %%esp, %0\n\t"
                     "pushl $1\n\t"
                     "pushl $2\n\t"
                     "lcall $%c2, $far_target_imm\n\t"
                     "mov %%esp, %1"
                     : "=&r"(esp_before), "=&r"(esp_after) : "i"(SEL_KCODE)
                     : "eax", "memory");
    check_yes("lret_imm16_pops_args", esp_before == esp_after);
    /* Through the call gate: the offset in the instruction is ignored, the
     * gate gives CS:EIP = 0x08:far_target. */
    far_pushed_cs = far_callee_cs = 0;
    __asm__ volatile("lcall $%c0, $0" : : "i"(SEL_CALLGATE) : "eax", "memory");
    check_hex("call_gate_pushed_cs", far_pushed_cs & 0xffff);
    check_hex("call_gate_callee_cs", far_callee_cs);

    /* IRET at the same level pops EIP, CS, EFLAGS (not SS:ESP), and at
     * ring 0 it loads IF from the frame: here IF 1 -> 0. */
    sti();
    __asm__ volatile("pushfl\n\t"
                     "andl $~0x200, (%%esp)\n\t"
                     "push %%cs\n\t"
                     "pushl $1f\n\t"
                     "iret\n"
                     "1:" ::: "memory");
    check_word("iret_same_level", "reached");
    check_hex("iret_loads_if", flags_if(read_eflags()));
    cli();

    /* INT n with IF = 1: a trap gate keeps IF, an interrupt gate clears
     * it; both push the flags as they were (IF 1) and CS 0x08. */
    sti();
    __asm__ volatile("int $0x81" ::: "memory");
    cli();
    check_hex("int_trap_gate_if", soft_int.if_inside);
    check_hex("int_trap_gate_frame_cs", soft_int.frame_cs);
    sti();
    __asm__ volatile("int $0x82" ::: "memory");
    cli();
    check_hex("int_intr_gate_if", soft_int.if_inside);
    check_hex("int_intr_gate_frame_if", soft_int.frame_if);

    /* INT3 and INTO are traps: the frame's EIP is the next instruction. */
    fault_reset();
    __asm__ volatile("int3\n1:\tmovl $1b, %0" : "=r"(ret_eip) : : "memory");
    check_fault("int3", &last_fault);
    check_yes("int3_eip_after", last_fault.eip == ret_eip);
    fault_reset();
    __asm__ volatile("movl $0x7fffffff, %%eax\n\t"
                     "addl $1, %%eax\n\t"           /* OF = 1 */
                     "into\n"
                     "1:\tmovl $1b, %0" : "=r"(ret_eip) : : "eax", "cc", "memory");
    check_fault("into_of1", &last_fault);
    check_yes("into_eip_after", last_fault.eip == ret_eip);
    fault_reset();
    __asm__ volatile("xorl %%eax, %%eax; into" ::: "eax", "cc", "memory");
    check_fault("into_of0", &last_fault);

    /* Faults: the frame's EIP is the faulting instruction itself. */
    uint32_t site;
    fault_reset();
    __asm__ volatile("movl $1f, %0\n\t"
                     "movl $2f, recover_eip\n"
                     "1:\tdivl %%ecx\n"
                     "2:" : "=&r"(site) : "a"(1), "d"(0), "c"(0) : "cc", "memory");
    check_fault("div_by_zero", &last_fault);
    check_yes("div_by_zero_eip_at_div", last_fault.eip == site);
    fault_reset();
    __asm__ volatile("movl $1f, %0\n\t"
                     "movl $2f, recover_eip\n"
                     "1:\tud2\n"
                     "2:" : "=&r"(site) : : "memory");
    check_fault("ud2", &last_fault);
    check_yes("ud2_eip_at_ud2", last_fault.eip == site);

    /* Privileged instructions can still fault at ring 0 when their operand
     * is wrong: LLDT of a selector that is not an LDT, LTR of a TSS that is
     * already busy (ours, since the LTR at setup). */
    fault_reset();
    __asm__ volatile("movl $1f, recover_eip\n\t"
                     "lldt %w0\n"
                     "1:\tmovl $0, recover_eip" : : "r"(SEL_KDATA) : "memory");
    check_fault("lldt_not_ldt", &last_fault);
    fault_reset();
    __asm__ volatile("movl $1f, recover_eip\n\t"
                     "ltr %w0\n"
                     "1:\tmovl $0, recover_eip" : : "r"(SEL_TSS) : "memory");
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

    /* REP OUTSB sends a string to the UART: it shows up in the line. With
     * the FIFO on, an empty THR takes 16 bytes at once. */
    static const char text[] = "via-rep-outsb\n";
    check_begin("", "rep_outsb");
    while (!(inb(COM1 + 5) & LSR_THRE))
        ;
    const char *src = text;
    uint32_t n = sizeof(text) - 1;
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

/* Written by ring3_code in entry.S. */
uint32_t ring3_cs, ring3_ss, ring3_fs;

/* Down to ring 3 with IRET and back with INT 0x80 through the DPL-3 trap
 * gate: the CPU switches to the TSS's ss0:esp0 stack and pushes the ring-3
 * SS:ESP. At ring 3 the RPL of CS and SS is 3, CLI and IN fault (IOPL 0),
 * and IRET has zeroed FS, which held a ring-0 selector. */
static void check_ring3(void)
{
    fault_reset();
    ring3_run();
    check_hex("ring3_cs", ring3_cs & 0xffff);
    check_hex("ring3_ss", ring3_ss & 0xffff);
    check_hex("ring3_fs_after_iret", ring3_fs & 0xffff);
    check_fault("ring3_cli", &ring3_faults[0]);
    check_fault("ring3_inb", &ring3_faults[1]);
    check_hex("int80_frame_cs", syscall_frame.cs);
    check_hex("int80_frame_ss", syscall_frame.ss);
    check_yes("int80_frame_esp_is_ring3_stack",
              syscall_frame.esp == (uint32_t)ring3_stack_top);
    check_yes("int80_frame_on_tss_esp0", syscall_frame.on_tss_stack);
}

/* ======================================================================
 * kmain
 * ====================================================================== */

void kmain(uint32_t magic, const struct multiboot_info *mbi) __attribute__((noreturn));
void kmain(uint32_t magic, const struct multiboot_info *mbi)
{
    uint32_t initial_eflags = read_eflags();

    uart_init();            /* natively, the first OUT ends the run: SIGSEGV */
    put_str("guest32: start\n");
    check_multiboot(magic, mbi, initial_eflags);

    setup_descriptor_tables();
    pic_init();
    pit_init();

    check_descriptor_registers();
    check_control_registers();
    check_flags();
    check_interrupts();
    check_selectors();
    check_segment_loads();
    check_descriptor_queries();
    check_control_transfers();
    check_port_io();
    check_ring3();

    put_str("guest32: done\n");
    guest_exit(0);
}
