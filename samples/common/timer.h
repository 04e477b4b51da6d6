/* samples/common/timer.h — the 8259A PIC pair and the 8253 PIT of the
 * sample guests: IRQ 0 about every millisecond, and waits measured on the
 * PIT. Compiled into guest32 and guest64 alike (timer.c). */
#ifndef SAMPLES_TIMER_H
#define SAMPLES_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define PIC1_CMD    0x20
#define PIC1_DATA   0x21
#define PIC2_CMD    0xa0
#define PIC2_DATA   0xa1
#define PIC_EOI     0x20
#define PIT_CH0     0x40
#define PIT_CMD     0x43
#define PIT_DIVISOR 1193    /* 1193182 Hz / 1193 = 1000.15 Hz */
#define PIT_MS(ms)  ((uint32_t)(ms) * PIT_DIVISOR)
#define VEC_IRQ0    0x20    /* IRQ 0-15 at vectors 0x20-0x2f (pic_init) */

/* IRQ 0 count, kept by irq_handle (never printed: it depends on time). */
extern volatile uint32_t timer_ticks;

/* Remaps IRQ 0-15 to vectors 0x20-0x2f and masks them all. */
void pic_init(void);
/* Channel 0, mode 2, IRQ 0 every PIT_DIVISOR input clocks. */
void pit_init(void);
/* Latches channel 0 and reads its count. */
uint16_t pit_read(void);
/* Waits until `counts` input clocks have passed or *watch is no longer
 * `from` (when watch is not NULL); returns whether *watch changed. */
bool pit_wait(uint32_t counts, const volatile uint32_t *watch, uint32_t from);
/* For trap_entry: handles vector if it is one of the PIC's IRQs (counts
 * IRQ 0 and sends its EOI) and says whether it was. */
bool irq_handle(uintptr_t vector);

#endif
