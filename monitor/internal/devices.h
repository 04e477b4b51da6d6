/* popek — the device models behind pk_devices (monitor/devices.c).
 *
 * Each model is plain state plus functions over it, with time passed in as
 * host monotonic nanoseconds. Models that drive an interrupt line do it
 * through a pk_irq_line callback, so the facade wires UART and PIT to the PIC
 * and each model stays testable alone. Every port here is 8 bits wide; the
 * facade splits wider accesses into bytes as the ISA bus does. */
#ifndef POPEK_INTERNAL_DEVICES_H
#define POPEK_INTERNAL_DEVICES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Drives interrupt line irq (0–15) to level. */
typedef void pk_irq_line(void *ctx, unsigned irq, bool level);

/* ---- 16550A UART (monitor/uart.c) ---------------------------------------- */

#define PK_UART_BASE 0x3F8
#define PK_UART_IRQ 4

typedef struct pk_uart {
    FILE *out;          /* transmitted bytes; NULL drops them */
    uint8_t rbr;        /* receiver buffer (filled only in loopback) */
    uint8_t ier, lcr, mcr, lsr, scr, fcr;
    uint8_t msr;        /* status lines in bits 7:4, deltas in bits 3:0 */
    uint16_t divisor;   /* DLM:DLL */
    bool thri;          /* THR-empty interrupt latched (cleared by IIR read) */
    bool line;          /* level last driven on the IRQ line */
    pk_irq_line *irq;
    void *irq_ctx;
} pk_uart;

void pk_uart_reset(pk_uart *u, FILE *out, pk_irq_line *irq, void *irq_ctx);
/* reg is the offset from the base port, 0–7. */
uint8_t pk_uart_read(pk_uart *u, unsigned reg);
void pk_uart_write(pk_uart *u, unsigned reg, uint8_t value);

/* ---- 8254 PIT (monitor/pit.c) -------------------------------------------- */

#define PK_PIT_HZ 1193182u
#define PK_PIT_NONE UINT64_MAX /* no edge to come */

typedef struct pk_pit_channel {
    uint8_t control;    /* RW1 RW0 M2 M1 M0 BCD, as written (read-back) */
    uint8_t mode;       /* 0–5 (6 and 7 are 2 and 3) */
    uint8_t access;     /* 1 LSB only, 2 MSB only, 3 LSB then MSB */
    bool bcd;
    bool gate;          /* always high on channels 0 and 1 */
    bool armed;         /* a count was written since the control word */
    bool running;       /* counting (modes 1/5 wait for a gate trigger) */
    uint16_t reload;    /* the count register as written (raw, maybe BCD) */
    uint64_t start_ns;  /* clock origin: count written or gate triggered */
    bool write_msb;     /* LSB-then-MSB: the next write is the MSB */
    uint8_t write_lsb;
    bool read_msb;      /* LSB-then-MSB: the next unlatched read is the MSB */
    bool latched;       /* counter latch command (or read-back) holds latch */
    bool latch_msb;
    uint16_t latch;
    bool status_latched;
    uint8_t status;
    uint64_t next_edge; /* clock pulse of the next OUT rising edge, or NONE */
} pk_pit_channel;

typedef struct pk_pit {
    pk_pit_channel ch[3];
    uint8_t port61;     /* system control port B bits 3:0 as written */
    uint64_t origin_ns; /* for the port 0x61 refresh toggle */
    bool line;          /* level last driven on IRQ 0 */
    pk_irq_line *irq;
    void *irq_ctx;
} pk_pit;

void pk_pit_reset(pk_pit *pit, uint64_t now_ns, pk_irq_line *irq,
                  void *irq_ctx);
/* port is 0x40–0x43 or 0x61. */
uint8_t pk_pit_read(pk_pit *pit, uint16_t port, uint64_t now_ns);
void pk_pit_write(pk_pit *pit, uint16_t port, uint8_t value, uint64_t now_ns);
/* Raises IRQ 0 once if one or more channel 0 edges fell at or before now. */
void pk_pit_advance(pk_pit *pit, uint64_t now_ns);
/* Absolute time of channel 0's next rising edge, or UINT64_MAX. */
uint64_t pk_pit_next_event(const pk_pit *pit);

/* ---- 8259A PIC pair (monitor/pic.c) -------------------------------------- */

typedef struct pk_pic_chip {
    uint8_t irr, isr, imr;
    uint8_t lines;      /* input levels, for edge detection */
    uint8_t base;       /* ICW2 & 0xF8 */
    uint8_t icw3;       /* master: slave bitmap; slave: its ID */
    uint8_t init_step;  /* 0 operating, else the ICW (2, 3, 4) expected */
    uint8_t highest;    /* IR line of highest priority (rotation) */
    bool master;
    bool want_icw4, single, level, auto_eoi, rotate_aeoi, sfnm;
    bool special_mask, read_isr, poll;
} pk_pic_chip;

typedef struct pk_pic {
    pk_pic_chip chip[2]; /* master, slave */
} pk_pic;

void pk_pic_reset(pk_pic *pic);
/* port is 0x20, 0x21, 0xA0 or 0xA1. */
uint8_t pk_pic_read(pk_pic *pic, uint16_t port);
void pk_pic_write(pk_pic *pic, uint16_t port, uint8_t value);
void pk_pic_set_irq(pk_pic *pic, unsigned irq, bool level);
int pk_pic_pending_vector(const pk_pic *pic);
/* Whether a request on master line irq (0-7) raised now would reach the
 * CPU: not masked, not held back by one in service. */
bool pk_pic_would_present(const pk_pic *pic, unsigned irq);
int pk_pic_acknowledge(pk_pic *pic);

#endif
