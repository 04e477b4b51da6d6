/* popek — the virtual devices of `popek boot`: the port map and the wiring.
 *
 * Ports:
 *   0x20–0x21, 0xA0–0xA1   8259A master and slave (monitor/pic.c)
 *   0x40–0x43, 0x61        8254 PIT and its port B bits (monitor/pit.c)
 *   0x3F8–0x3FF            16550A UART, IRQ 4 (monitor/uart.c)
 *   0x80                   POST diagnostic: writes ignored, reads 0xFF
 *   0xF4                   exit: a write of v ends the guest with status
 *                          v & 0xFF (an exit status has 8 bits; QEMU's
 *                          isa-debug-exit would give (v << 1) | 1 instead)
 * Every other port is unclaimed: reads give all ones, writes are ignored.
 *
 * All these devices are 8 bits wide. A 16- or 32-bit access is split into
 * byte accesses at port, port+1, ... (low byte first), as the ISA bus does
 * for an 8-bit device, so `outw` to 0xF4 exits with its low byte and a word
 * read of an unclaimed port gives 0xFFFF. *claimed is true when any byte of
 * the access reached a device.
 *
 * Every access first calls pk_devices_advance(now), so device state always
 * reflects the time of the access (a timer edge that fell before an IRR read
 * shows in it). */
#include "popek/devices.h"

#include <stdlib.h>

#include "internal/devices.h"

#define PK_PORT_POST 0x80
#define PK_PORT_EXIT 0xF4

struct pk_devices {
    pk_pic pic;
    pk_pit pit;
    pk_uart uart;
    bool exit_requested;
    int exit_status;
};

static void pk_devices_line(void *ctx, unsigned irq, bool level)
{
    pk_devices *dev = ctx;
    pk_pic_set_irq(&dev->pic, irq, level);
}

pk_devices *pk_devices_new(FILE *uart_out, uint64_t now_ns)
{
    pk_devices *dev = calloc(1, sizeof *dev);
    if (!dev)
        return NULL;
    pk_pic_reset(&dev->pic);
    pk_pit_reset(&dev->pit, now_ns, pk_devices_line, dev);
    pk_uart_reset(&dev->uart, uart_out, pk_devices_line, dev);
    return dev;
}

void pk_devices_free(pk_devices *dev)
{
    free(dev);
}

static bool pk_is_pic(uint16_t port)
{
    return port == 0x20 || port == 0x21 || port == 0xA0 || port == 0xA1;
}

static bool pk_is_pit(uint16_t port)
{
    return (port >= 0x40 && port <= 0x43) || port == 0x61;
}

static bool pk_is_uart(uint16_t port)
{
    return port >= PK_UART_BASE && port <= PK_UART_BASE + 7;
}

static bool pk_devices_in8(pk_devices *dev, uint16_t port, uint64_t now,
                           uint8_t *v)
{
    if (pk_is_pic(port))
        *v = pk_pic_read(&dev->pic, port);
    else if (pk_is_pit(port))
        *v = pk_pit_read(&dev->pit, port, now);
    else if (pk_is_uart(port))
        *v = pk_uart_read(&dev->uart, port - PK_UART_BASE);
    else if (port == PK_PORT_POST || port == PK_PORT_EXIT)
        *v = 0xFF;
    else
        return false;
    return true;
}

static bool pk_devices_out8(pk_devices *dev, uint16_t port, uint8_t v,
                            uint64_t now)
{
    if (pk_is_pic(port)) {
        pk_pic_write(&dev->pic, port, v);
    } else if (pk_is_pit(port)) {
        pk_pit_write(&dev->pit, port, v, now);
    } else if (pk_is_uart(port)) {
        pk_uart_write(&dev->uart, port - PK_UART_BASE, v);
    } else if (port == PK_PORT_EXIT) {
        if (!dev->exit_requested) { /* the first exit wins */
            dev->exit_requested = true;
            dev->exit_status = v;
        }
    } else if (port != PK_PORT_POST) {
        return false;
    }
    return true;
}

static bool pk_size_ok(unsigned size)
{
    return size == 1 || size == 2 || size == 4;
}

uint32_t pk_devices_in(pk_devices *dev, uint16_t port, unsigned size,
                       uint64_t now_ns, bool *claimed)
{
    if (claimed)
        *claimed = false;
    if (!dev || !pk_size_ok(size))
        return UINT32_MAX;
    pk_devices_advance(dev, now_ns);
    uint32_t value = 0;
    bool any = false;
    for (unsigned i = 0; i < size; i++) {
        uint8_t b = 0xFF;
        any |= pk_devices_in8(dev, (uint16_t)(port + i), now_ns, &b);
        value |= (uint32_t)b << (8 * i);
    }
    if (claimed)
        *claimed = any;
    return value;
}

void pk_devices_out(pk_devices *dev, uint16_t port, unsigned size,
                    uint32_t value, uint64_t now_ns, bool *claimed)
{
    if (claimed)
        *claimed = false;
    if (!dev || !pk_size_ok(size))
        return;
    pk_devices_advance(dev, now_ns);
    bool any = false;
    for (unsigned i = 0; i < size; i++)
        any |= pk_devices_out8(dev, (uint16_t)(port + i),
                               (uint8_t)(value >> (8 * i)), now_ns);
    if (claimed)
        *claimed = any;
}

bool pk_devices_exit_requested(const pk_devices *dev, int *status)
{
    if (!dev || !dev->exit_requested)
        return false;
    if (status)
        *status = dev->exit_status;
    return true;
}

void pk_devices_advance(pk_devices *dev, uint64_t now_ns)
{
    if (dev)
        pk_pit_advance(&dev->pit, now_ns);
}

uint64_t pk_devices_next_event(const pk_devices *dev)
{
    return dev ? pk_pit_next_event(&dev->pit) : UINT64_MAX;
}

uint64_t pk_devices_next_interrupt(const pk_devices *dev)
{
    return dev && pk_pic_would_present(&dev->pic, 0) ? pk_pit_next_event(&dev->pit) : UINT64_MAX;
}

int pk_devices_pending_vector(const pk_devices *dev)
{
    return dev ? pk_pic_pending_vector(&dev->pic) : -1;
}

int pk_devices_acknowledge(pk_devices *dev)
{
    return dev ? pk_pic_acknowledge(&dev->pic) : -1;
}

void pk_devices_set_irq(pk_devices *dev, unsigned irq, bool level)
{
    if (dev && irq < 16)
        pk_pic_set_irq(&dev->pic, irq, level);
}
