/* samples/common/timer.c — the PIC, the PIT and the timer interrupt of the
 * sample guests (timer.h). */
#include "timer.h"

#include <stddef.h>

#include "x86.h"

#define PIT_MAX_POLLS 500000u   /* a hard bound should the PIT stand still */

volatile uint32_t timer_ticks;

/* 8259A pair: ICW1-ICW4 remap IRQ 0-7 to 0x20-0x27 and 8-15 to 0x28-0x2f
 * (away from the exceptions), then every IRQ is masked. Checks unmask IRQ 0
 * only while they need the timer. */
void pic_init(void)
{
    outb(PIC1_CMD, 0x11);   /* ICW1: edge triggered, cascade, ICW4 follows */
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, VEC_IRQ0);      /* ICW2: vector base */
    outb(PIC2_DATA, VEC_IRQ0 + 8);
    outb(PIC1_DATA, 0x04);  /* ICW3: slave on IRQ 2 */
    outb(PIC2_DATA, 0x02);  /*       slave identity 2 */
    outb(PIC1_DATA, 0x01);  /* ICW4: 8086 mode, normal EOI */
    outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xff);  /* OCW1: all masked */
    outb(PIC2_DATA, 0xff);
}

/* 8253 channel 0, mode 2 (rate generator), lobyte/hibyte: IRQ 0 every
 * 1193 input clocks, about 1 kHz. */
void pit_init(void)
{
    outb(PIT_CMD, 0x34);
    outb(PIT_CH0, PIT_DIVISOR & 0xff);
    outb(PIT_CH0, PIT_DIVISOR >> 8);
}

/* Latches channel 0 (command 0x00) and reads the count, low byte first. */
uint16_t pit_read(void)
{
    outb(PIT_CMD, 0x00);
    uint8_t lo = inb(PIT_CH0);
    uint8_t hi = inb(PIT_CH0);
    return (uint16_t)(lo | hi << 8);
}

/* Time is measured on the PIT, never by counting instructions: under a
 * monitor every IN costs tens of microseconds, under QEMU a fraction of
 * one. Missing a wrap of the count only makes the wait longer, and
 * PIT_MAX_POLLS bounds it anyway. */
bool pit_wait(uint32_t counts, const volatile uint32_t *watch, uint32_t from)
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

bool irq_handle(uintptr_t vector)
{
    if (vector == VEC_IRQ0) {
        timer_ticks++;
        outb(PIC1_CMD, PIC_EOI);
        return true;
    }
    /* Masked, so only spurious IRQ 7/15 can arrive: no EOI for those. */
    return vector > VEC_IRQ0 && vector < VEC_IRQ0 + 16;
}
