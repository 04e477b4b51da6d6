/* samples/common/console.h — the sample guests' output: the UART (COM1,
 * polled, no interrupts), the `check NAME: VALUE` lines, and the exit port.
 * Compiled into guest32 and guest64 alike (console.c). */
#ifndef SAMPLES_CONSOLE_H
#define SAMPLES_CONSOLE_H

#include <stdbool.h>
#include <stdint.h>

#define COM1        0x3f8   /* +0 THR, +1 IER, +2 FCR, +3 LCR, +4 MCR, +5 LSR, +7 SCR */
#define COM1_LSR    (COM1 + 5)
#define COM1_SCR    (COM1 + 7)
#define LSR_THRE    0x20    /* transmit holding register (FIFO) empty */
#define EXIT_PORT   0xf4    /* QEMU's isa-debug-exit; popek's exit port */
#define UNCLAIMED   0x2f8   /* COM2: no device on QEMU's i440fx nor in popek */

/* 115200 baud, 8N1, FIFO on, no interrupts. Natively (as a Linux program)
 * its first OUT is where a guest dies with SIGSEGV. */
void uart_init(void);
/* Waits until the transmit FIFO is empty (it then takes 16 bytes). */
void uart_wait_empty(void);
void uart_putc(char c);
void put_str(const char *s);
/* Lower-case hex with 0x, no leading zeros: 0x0, 0x1badb002. */
void put_hex(uint64_t v);

/* One line `check PREFIXNAME: VALUE`: check_begin writes up to the value. */
void check_begin(const char *prefix, const char *name);
void check_hex(const char *name, uint64_t v);
void check_word(const char *name, const char *word);
void check_yes(const char *name, bool yes);

/* Writes status to the exit port, which ends the run (QEMU exits with
 * (status << 1) | 1, popek boot with status). */
void guest_exit(uint32_t status) __attribute__((noreturn));

#endif
