/* samples/common/console.c — the UART, the `check NAME: VALUE` lines and
 * the exit port of the sample guests (console.h). */
#include "console.h"

#include "x86.h"

void uart_init(void)
{
    outb(COM1 + 1, 0x00);   /* IER: no UART interrupts */
    outb(COM1 + 3, 0x80);   /* LCR: DLAB, to reach the divisor */
    outb(COM1 + 0, 0x01);   /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* LCR: 8 data bits, no parity, 1 stop bit */
    outb(COM1 + 2, 0x07);   /* FCR: FIFO on and cleared (16 bytes) */
    outb(COM1 + 4, 0x03);   /* MCR: DTR, RTS */
}

void uart_wait_empty(void)
{
    while (!(inb(COM1_LSR) & LSR_THRE))
        ;
}

void uart_putc(char c)
{
    uart_wait_empty();
    outb(COM1, (uint8_t)c);
}

void put_str(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

void put_hex(uint64_t v)
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

void check_begin(const char *prefix, const char *name)
{
    put_str("check ");
    put_str(prefix);
    put_str(name);
    put_str(": ");
}

void check_hex(const char *name, uint64_t v)
{
    check_begin("", name);
    put_hex(v);
    uart_putc('\n');
}

void check_word(const char *name, const char *word)
{
    check_begin("", name);
    put_str(word);
    uart_putc('\n');
}

void check_yes(const char *name, bool yes)
{
    check_word(name, yes ? "yes" : "no");
}

void guest_exit(uint32_t status)
{
    outl(EXIT_PORT, status);
    for (;;)
        __asm__ volatile("cli; hlt");
}
