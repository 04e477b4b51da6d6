/* popek — the virtual devices of `popek boot`: a 16550 UART at 0x3F8, an
 * 8253 PIT at 0x40–0x43, an 8259 PIC pair at 0x20/0x21 and 0xA0/0xA1, and
 * the exit port 0xF4.
 *
 * Devices know nothing of ptrace or the vcpu. Time is passed in (host
 * monotonic nanoseconds), so the PIT is tested without sleeping; the engine
 * asks when the next timer interrupt is due and arms a host timer for it. */
#ifndef POPEK_DEVICES_H
#define POPEK_DEVICES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct pk_devices pk_devices;

/* uart_out receives every byte the guest transmits (unbuffered writes are
 * the caller's choice). Returns NULL when out of memory. */
pk_devices *pk_devices_new(FILE *uart_out, uint64_t now_ns);
void pk_devices_free(pk_devices *dev);

/* Port reads and writes of size 1, 2 or 4 bytes. Every device is 8 bits
 * wide, so a wider access is split into bytes at port, port+1, ... (low byte
 * first), as the ISA bus does. Ports no device claims read as all ones and
 * ignore writes, as on a PC; *claimed (when not NULL) says whether a device
 * answered any byte. Another size claims nothing and reads all ones. Each
 * access first advances the devices to now_ns. */
uint32_t pk_devices_in(pk_devices *dev, uint16_t port, unsigned size,
                       uint64_t now_ns, bool *claimed);
void pk_devices_out(pk_devices *dev, uint16_t port, unsigned size,
                    uint32_t value, uint64_t now_ns, bool *claimed);

/* True once the guest wrote to the exit port 0xF4; *status (when not NULL)
 * is the first byte written there, 0–255: an exit status has 8 bits. */
bool pk_devices_exit_requested(const pk_devices *dev, int *status);

/* Raises the interrupt lines whose time has come (the PIT's IRQ 0). Several
 * periods due at once raise it once, as an edge-triggered PIC latches one
 * request; the next edge stays on the timer's own period grid. */
void pk_devices_advance(pk_devices *dev, uint64_t now_ns);

/* When the PIT next raises IRQ 0 (absolute host ns), or UINT64_MAX when it
 * never will. */
uint64_t pk_devices_next_event(const pk_devices *dev);

/* When the PIT next raises IRQ 0 such that the PIC would present it to the
 * CPU (unmasked, not held back by one in service), or UINT64_MAX: what a
 * monitor waits for. */
uint64_t pk_devices_next_interrupt(const pk_devices *dev);

/* The vector the PIC pair presents to the CPU now (highest-priority
 * requested, unmasked, not blocked by one in service), or -1. */
int pk_devices_pending_vector(const pk_devices *dev);

/* The CPU takes the interrupt (INTA): the request moves to in-service (or
 * is done, in auto-EOI mode). Returns the vector, or -1 when none pends. */
int pk_devices_acknowledge(pk_devices *dev);

/* Raises or lowers an interrupt line (0–15), for tests and future devices. */
void pk_devices_set_irq(pk_devices *dev, unsigned irq, bool level);

#endif
