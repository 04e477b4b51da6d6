/* popek — unit tests for the virtual devices (monitor/devices.c, uart.c,
 * pit.c, pic.c), through the public pk_devices interface only.
 *
 * Expected values are worked by hand from the datasheets, not taken from the
 * code's output: the PC16550D register and interrupt tables, the Intel 8254
 * datasheet (modes 0, 2, 3, counter latch, read-back status byte) and the
 * Intel 8259A datasheet (ICW1–ICW4, OCW1–OCW3, priority and cascade). The
 * PIT times were computed with a calculator from the clock model described
 * atop monitor/pit.c: with a count N written at t0, clock pulse k falls at
 * t0 + ceil(k * 1e9 / 1193182) ns, pulse 1 loads N, OUT rises at pulse N+1
 * in mode 0 and at pulses 1 + mN in modes 2 and 3. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "popek/devices.h"

#define T0 1000000000ull /* an arbitrary start: 1 s of host time */

/* ---- helpers ------------------------------------------------------------ */

static uint8_t in8(pk_devices *d, uint16_t port, uint64_t t)
{
    bool claimed = false;
    uint32_t v = pk_devices_in(d, port, 1, t, &claimed);
    cr_assert(claimed, "port %#x not claimed", port);
    return (uint8_t)v;
}

static void out8(pk_devices *d, uint16_t port, uint8_t v, uint64_t t)
{
    bool claimed = false;
    pk_devices_out(d, port, 1, v, t, &claimed);
    cr_assert(claimed, "port %#x not claimed", port);
}

/* The usual remap at time t: master to 0x20, slave to 0x28, slave on IR2.
 * ICW1 also clears requests the reset-state PIT made before t. */
static void pic_init_at(pk_devices *d, uint8_t icw4, uint64_t t)
{
    out8(d, 0x20, 0x11, t); /* ICW1: edge, cascade, ICW4 follows */
    out8(d, 0x21, 0x20, t); /* ICW2: vector base */
    out8(d, 0x21, 0x04, t); /* ICW3: a slave on IR2 */
    out8(d, 0x21, icw4, t); /* ICW4: 8086 mode (+ auto-EOI) */
    out8(d, 0xA0, 0x11, t);
    out8(d, 0xA1, 0x28, t);
    out8(d, 0xA1, 0x02, t); /* ICW3: slave ID 2 */
    out8(d, 0xA1, icw4, t);
}

static void pic_init(pk_devices *d, uint8_t icw4)
{
    pic_init_at(d, icw4, 0);
}

/* A rising edge on an interrupt line. */
static void edge(pk_devices *d, unsigned irq)
{
    pk_devices_set_irq(d, irq, false);
    pk_devices_set_irq(d, irq, true);
}

static uint8_t read_irr(pk_devices *d, uint16_t cmd, uint64_t t)
{
    out8(d, cmd, 0x0A, t); /* OCW3: read IRR */
    return in8(d, cmd, t);
}

static uint8_t read_isr(pk_devices *d, uint16_t cmd)
{
    out8(d, cmd, 0x0B, 0); /* OCW3: read ISR */
    return in8(d, cmd, 0);
}

/* Latches channel 0 at t and reads it LSB then MSB. */
static uint16_t pit_latch0(pk_devices *d, uint64_t t)
{
    out8(d, 0x43, 0x00, t); /* counter latch command, channel 0 */
    uint8_t lo = in8(d, 0x40, t);
    uint8_t hi = in8(d, 0x40, t);
    return (uint16_t)(lo | hi << 8);
}

/* Programs channel 0 with a control word and a two-byte count at t. */
static void pit_program0(pk_devices *d, uint8_t control, uint16_t count,
                         uint64_t t)
{
    out8(d, 0x43, control, t);
    out8(d, 0x40, (uint8_t)count, t);
    out8(d, 0x40, (uint8_t)(count >> 8), t);
}

static pk_devices *dev;
static char *out_buf;
static size_t out_len;
static FILE *out_file;

static void setup(void)
{
    out_file = open_memstream(&out_buf, &out_len);
    cr_assert_not_null(out_file);
    dev = pk_devices_new(out_file, 0);
    cr_assert_not_null(dev);
}

static void teardown(void)
{
    pk_devices_free(dev);
    fclose(out_file);
    free(out_buf);
}

TestSuite(uart, .init = setup, .fini = teardown);
TestSuite(pit, .init = setup, .fini = teardown);
TestSuite(pic, .init = setup, .fini = teardown);
TestSuite(ports, .init = setup, .fini = teardown);

/* ---- UART ---------------------------------------------------------------- */

Test(uart, transmit_goes_to_the_file)
{
    const char *msg = "Hi!\n";
    for (const char *p = msg; *p; p++) {
        /* A polling driver: wait for THRE (LSR bit 5), then write THR. */
        cr_assert(in8(dev, 0x3FD, 0) & 0x20);
        out8(dev, 0x3F8, (uint8_t)*p, 0);
    }
    /* Each byte is flushed as it is written. */
    cr_assert_eq(out_len, 4);
    cr_assert_str_eq(out_buf, msg);
}

Test(uart, idle_registers)
{
    cr_assert_eq(in8(dev, 0x3FD, 0), 0x60, "LSR: THRE | TEMT, no data");
    cr_assert_eq(in8(dev, 0x3FA, 0), 0x01, "IIR: no interrupt pending");
    cr_assert_eq(in8(dev, 0x3F9, 0), 0x00, "IER after reset");
    cr_assert_eq(in8(dev, 0x3FB, 0), 0x00, "LCR after reset");
    cr_assert_eq(in8(dev, 0x3FC, 0), 0x00, "MCR after reset");
    cr_assert_eq(in8(dev, 0x3FE, 0), 0xB0, "MSR: DCD, DSR, CTS");
    in8(dev, 0x3F8, 0); /* reading an empty RBR sets nothing */
    cr_assert_eq(in8(dev, 0x3FD, 0), 0x60);
}

Test(uart, dlab_selects_the_divisor_latch)
{
    out8(dev, 0x3FB, 0x83, 0); /* DLAB, 8N1 */
    out8(dev, 0x3F8, 0x0C, 0); /* DLL: 9600 baud */
    out8(dev, 0x3F9, 0x00, 0); /* DLM */
    cr_assert_eq(in8(dev, 0x3F8, 0), 0x0C);
    cr_assert_eq(in8(dev, 0x3F9, 0), 0x00);
    cr_assert_eq(in8(dev, 0x3FB, 0), 0x83);
    out8(dev, 0x3F9, 0x01, 0); /* DLM = 1: divisor 0x010C */
    out8(dev, 0x3FB, 0x03, 0); /* DLAB off */
    cr_assert_eq(in8(dev, 0x3F9, 0), 0x00, "IER untouched by DLM writes");
    cr_assert_eq(out_len, 0, "DLL writes are not transmitted");
    out8(dev, 0x3FB, 0x83, 0);
    cr_assert_eq(in8(dev, 0x3F8, 0), 0x0C);
    cr_assert_eq(in8(dev, 0x3F9, 0), 0x01);
}

Test(uart, register_widths)
{
    out8(dev, 0x3FF, 0x5A, 0);
    cr_assert_eq(in8(dev, 0x3FF, 0), 0x5A, "SCR holds any byte");
    out8(dev, 0x3F9, 0xF0, 0);
    cr_assert_eq(in8(dev, 0x3F9, 0), 0x00, "IER bits 7:4 are always 0");
    out8(dev, 0x3FC, 0xE3, 0);
    cr_assert_eq(in8(dev, 0x3FC, 0), 0x03, "MCR bits 7:5 are always 0");
    out8(dev, 0x3FA, 0xC7, 0); /* FCR: enable and reset FIFOs */
    cr_assert_eq(in8(dev, 0x3FA, 0), 0xC1, "IIR bits 7:6 show the FIFOs");
    out8(dev, 0x3FA, 0x00, 0);
    cr_assert_eq(in8(dev, 0x3FA, 0), 0x01);
}

Test(uart, thr_empty_interrupt_reaches_irq4)
{
    pic_init(dev, 0x01);
    out8(dev, 0x3FC, 0x0B, 0); /* DTR, RTS, OUT2 (the PC's IRQ gate) */
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
    out8(dev, 0x3F9, 0x02, 0); /* IER: THR empty, and THR is empty */
    cr_assert_eq(pk_devices_pending_vector(dev), 0x24);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x24);
    cr_assert_eq(in8(dev, 0x3FA, 0), 0x02, "IIR: THR empty");
    cr_assert_eq(in8(dev, 0x3FA, 0), 0x01, "reading IIR cleared it");
    out8(dev, 0x20, 0x20, 0); /* EOI */
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
    /* The next byte empties THR at once: a new interrupt. */
    out8(dev, 0x3F8, 'x', 0);
    cr_assert_eq(in8(dev, 0x3FA, 0), 0x02);
    cr_assert_eq(pk_devices_pending_vector(dev), 0x24);
    cr_assert_eq(out_len, 1);
}

Test(uart, no_irq4_without_out2)
{
    pic_init(dev, 0x01);
    out8(dev, 0x3FC, 0x03, 0); /* DTR, RTS, no OUT2 */
    out8(dev, 0x3F9, 0x02, 0);
    cr_assert_eq(read_irr(dev, 0x20, 0), 0x00);
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
    cr_assert_eq(in8(dev, 0x3FA, 0), 0x02, "the UART itself reports it");
}

Test(uart, loopback)
{
    /* Linux's 8250 probe: MCR = LOOP | OUT2 | RTS; in loopback CTS follows
     * RTS, DSR DTR, RI OUT1, DCD OUT2, so the lines read 1001 = 0x90. They
     * were 0xB0: DSR fell, so DDSR (bit 1) is set once. */
    out8(dev, 0x3FC, 0x1A, 0);
    cr_assert_eq(in8(dev, 0x3FE, 0), 0x92);
    cr_assert_eq(in8(dev, 0x3FE, 0), 0x90, "reading MSR clears deltas");
    out8(dev, 0x3F8, 'Z', 0);
    cr_assert_eq(out_len, 0, "looped back, not transmitted");
    cr_assert_eq(in8(dev, 0x3FD, 0), 0x61, "data ready");
    cr_assert_eq(in8(dev, 0x3F8, 0), 'Z');
    cr_assert_eq(in8(dev, 0x3FD, 0), 0x60);
    out8(dev, 0x3F8, '1', 0);
    out8(dev, 0x3F8, '2', 0);
    cr_assert_eq(in8(dev, 0x3FD, 0), 0x63, "overrun error and data ready");
    cr_assert_eq(in8(dev, 0x3FD, 0), 0x61, "reading LSR cleared OE");
    cr_assert_eq(in8(dev, 0x3F8, 0), '2');
    out8(dev, 0x3FC, 0x00, 0);
    out8(dev, 0x3F8, 'o', 0);
    cr_assert_eq(out_len, 1);
}

/* ---- PIT ----------------------------------------------------------------- */

Test(pit, bios_state_at_reset)
{
    /* Control word 0x36 (mode 3, count 0 = 65536) from time 0: the first
     * rising edge is pulse 65537, at ceil(65537e9 / 1193182) ns. */
    cr_assert_eq(pk_devices_next_event(dev), 54926240);
}

Test(pit, mode2_periodic_edges)
{
    /* 0x34: channel 0, LSB then MSB, mode 2, binary; 11932 = 0x2E9C. */
    pit_program0(dev, 0x34, 11932, T0);
    pic_init_at(dev, 0x01, T0);
    /* Pulse 11933: ceil(11933e9 / 1193182) = 10000989. */
    cr_assert_eq(pk_devices_next_event(dev), T0 + 10000989);
    pk_devices_advance(dev, T0 + 10000988);
    cr_assert_eq(read_irr(dev, 0x20, T0 + 10000988), 0x00);
    pk_devices_advance(dev, T0 + 10000989);
    cr_assert_eq(read_irr(dev, 0x20, T0 + 10000989), 0x01);
    /* Pulse 1 + 2N = 23865: ceil(23865e9 / 1193182) = 20001140. */
    cr_assert_eq(pk_devices_next_event(dev), T0 + 20001140);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x20);
}

Test(pit, mode3_periodic_edges)
{
    /* 0x36: mode 3. OUT rises at the same pulses as in mode 2. */
    pit_program0(dev, 0x36, 11932, T0);
    cr_assert_eq(pk_devices_next_event(dev), T0 + 10000989);
    pk_devices_advance(dev, T0 + 10000989);
    cr_assert_eq(pk_devices_next_event(dev), T0 + 20001140);
}

Test(pit, mode0_one_shot)
{
    pit_program0(dev, 0x30, 100, T0); /* mode 0, count 100 */
    pic_init_at(dev, 0x01, T0);
    /* OUT rises at pulse N+1 = 101: ceil(101e9 / 1193182) = 84648. */
    cr_assert_eq(pk_devices_next_event(dev), T0 + 84648);
    /* Pulse 100 (t0+84647 gives floor(84647 * 1193182 / 1e9) = 100):
     * the count loaded at pulse 1 was decremented 99 times: 1. */
    cr_assert_eq(pit_latch0(dev, T0 + 84647), 1);
    cr_assert_eq(read_irr(dev, 0x20, T0 + 84647), 0x00);
    cr_assert_eq(read_irr(dev, 0x20, T0 + 84648), 0x01);
    cr_assert_eq(pk_devices_next_event(dev), UINT64_MAX, "one shot");
    cr_assert_eq(pit_latch0(dev, T0 + 84648), 0);
    /* Pulse 102 at ceil(102e9 / 1193182) = 85486: the count wrapped. */
    cr_assert_eq(pit_latch0(dev, T0 + 85486), 0xFFFF);
    /* A new count re-arms it: OUT falls, and rises N+1 pulses later. */
    cr_assert_eq(pk_devices_acknowledge(dev), 0x20);
    out8(dev, 0x20, 0x20, T0 + 90000);
    out8(dev, 0x40, 100, T0 + 100000);
    out8(dev, 0x40, 0, T0 + 100000);
    cr_assert_eq(pk_devices_next_event(dev), T0 + 100000 + 84648);
    cr_assert_eq(read_irr(dev, 0x20, T0 + 100000 + 84647), 0x00);
    cr_assert_eq(read_irr(dev, 0x20, T0 + 100000 + 84648), 0x01);
}

Test(pit, latch_holds_the_count)
{
    pit_program0(dev, 0x34, 1000, T0);
    /* t0 + 100 µs: floor(100000 * 1193182 / 1e9) = 119 pulses; loaded at
     * pulse 1, then 118 decrements: 1000 - 118 = 882 = 0x372. */
    out8(dev, 0x43, 0x00, T0 + 100000);
    out8(dev, 0x43, 0x00, T0 + 150000); /* a second latch is ignored */
    cr_assert_eq(in8(dev, 0x40, T0 + 200000), 0x72);
    cr_assert_eq(in8(dev, 0x40, T0 + 300000), 0x03);
    /* Unlatched again: reads sample the live count. */
    cr_assert_eq(pit_latch0(dev, T0 + 100000), 882);
}

Test(pit, single_byte_access_modes)
{
    /* 0x14: LSB only, mode 2; the MSB is 0, so N = 100: edge at pulse
     * 101, ceil(101e9 / 1193182) = 84648. */
    out8(dev, 0x43, 0x14, T0);
    out8(dev, 0x40, 100, T0);
    cr_assert_eq(pk_devices_next_event(dev), T0 + 84648);
    /* 119 pulses: 100 - (118 mod 100) = 82, read as one byte. */
    out8(dev, 0x43, 0x00, T0 + 100000);
    cr_assert_eq(in8(dev, 0x40, T0 + 100000), 82);
    /* 0x24: MSB only; 0x01 means N = 0x100 = 256: edge at pulse 257,
     * ceil(257e9 / 1193182) = 215391. */
    out8(dev, 0x43, 0x24, T0);
    out8(dev, 0x40, 0x01, T0);
    cr_assert_eq(pk_devices_next_event(dev), T0 + 215391);
}

Test(pit, mode3_count_decrements_by_two)
{
    /* Even N = 1000: loaded at pulse 1, minus 2 per pulse; at pulse 119,
     * 1000 - 2 * 118 = 764. */
    pit_program0(dev, 0x36, 1000, T0);
    cr_assert_eq(pit_latch0(dev, T0 + 100000), 764);
    /* Odd N = 1001: the first pulse after the load takes 1, the next
     * ones 2: 1001 - 1 - 2 * 117 = 766. */
    pit_program0(dev, 0x36, 1001, T0);
    cr_assert_eq(pit_latch0(dev, T0 + 100000), 766);
}

Test(pit, count_zero_means_65536)
{
    pit_program0(dev, 0x34, 0, T0);
    /* Pulse 65537: ceil(65537e9 / 1193182) = 54926240. */
    cr_assert_eq(pk_devices_next_event(dev), T0 + 54926240);
    /* Just loaded (pulse 1 at ceil(1e9 / 1193182) = 839): 65536 reads 0. */
    cr_assert_eq(pit_latch0(dev, T0 + 839), 0);
    /* Pulse 2 (1677 ns): 65535. */
    cr_assert_eq(pit_latch0(dev, T0 + 1677), 0xFFFF);
}

Test(pit, bcd_counting)
{
    /* 0x35: mode 2, BCD; count 0x1000 is 1000 decimal. At pulse 119 the
     * count is 882, read back as BCD 0x0882; OUT rises at pulse 1001,
     * ceil(1001e9 / 1193182) = 838934. */
    pit_program0(dev, 0x35, 0x1000, T0);
    cr_assert_eq(pit_latch0(dev, T0 + 100000), 0x0882);
    cr_assert_eq(pk_devices_next_event(dev), T0 + 838934);
}

Test(pit, slow_monitor_coalesces_edges)
{
    pit_program0(dev, 0x34, 11932, T0);
    pic_init_at(dev, 0x01, T0);
    /* 10 s later: 11931820 pulses, 999 edges due. One request. */
    pk_devices_advance(dev, T0 + 10000000000ull);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x20);
    out8(dev, 0x20, 0x20, T0 + 10000000000ull);
    pk_devices_advance(dev, T0 + 10000000000ull);
    cr_assert_eq(pk_devices_pending_vector(dev), -1, "no backlog");
    /* The next edge is the first after now, on the same grid:
     * m = (11931820 - 1) / 11932 + 1 = 1000, pulse 1 + 1000 * 11932 =
     * 11932001, ceil(11932001e9 / 1193182) = 10000151696. */
    cr_assert_eq(pk_devices_next_event(dev), T0 + 10000151696ull);
}

Test(pit, read_back_status)
{
    /* Status byte: OUT, null count, then RW1 RW0 M2 M1 M0 BCD. 0xE2 =
     * read-back, latch status only, channel 0. */
    out8(dev, 0x43, 0x30, T0); /* mode 0, no count yet: OUT low, null */
    out8(dev, 0x43, 0xE2, T0);
    cr_assert_eq(in8(dev, 0x40, T0), 0x70);
    out8(dev, 0x43, 0x34, T0); /* mode 2, no count yet: OUT high, null */
    out8(dev, 0x43, 0xE2, T0);
    cr_assert_eq(in8(dev, 0x40, T0), 0xF4);
    out8(dev, 0x40, 0xE8, T0);
    out8(dev, 0x40, 0x03, T0);
    out8(dev, 0x43, 0xE2, T0 + 100000); /* loaded: null count clear */
    cr_assert_eq(in8(dev, 0x40, T0 + 100000), 0xB4);
    /* 0xC2: status and count; status is read first. */
    out8(dev, 0x43, 0xC2, T0 + 100000);
    cr_assert_eq(in8(dev, 0x40, T0 + 200000), 0xB4);
    cr_assert_eq(in8(dev, 0x40, T0 + 200000), 0x72);
    cr_assert_eq(in8(dev, 0x40, T0 + 200000), 0x03);
}

Test(pit, channel2_gate_and_out_on_port61)
{
    /* TSC calibration as Linux does it: gate on, speaker off, channel 2
     * mode 0 (0xB0), count 100; poll port 0x61 bit 5 for OUT2. */
    out8(dev, 0x61, 0x01, 0);
    out8(dev, 0x43, 0xB0, 0);
    out8(dev, 0x42, 100, 0);
    out8(dev, 0x42, 0, 0);
    cr_assert_eq(in8(dev, 0x61, 84647) & 0x23, 0x01, "OUT2 low");
    cr_assert_eq(in8(dev, 0x61, 84648) & 0x23, 0x21, "OUT2 high");
    /* Channel 2 does not drive IRQ 0. */
    cr_assert_eq(pk_devices_next_event(dev), 54926240);
}

Test(pit, port61_refresh_toggle)
{
    /* Bit 4 toggles every 15.085 µs (18 clocks of refresh channel 1). */
    cr_assert_eq(in8(dev, 0x61, 0) & 0x10, 0);
    cr_assert_eq(in8(dev, 0x61, 15085) & 0x10, 0x10);
    cr_assert_eq(in8(dev, 0x61, 30170) & 0x10, 0);
}

/* ---- PIC ----------------------------------------------------------------- */

Test(pic, bios_defaults_before_init)
{
    cr_assert_eq(in8(dev, 0x21, 0), 0xFB, "all masked but the cascade");
    cr_assert_eq(in8(dev, 0xA1, 0), 0xFF);
    out8(dev, 0x21, 0xF9, 0); /* unmask IRQ 1 */
    edge(dev, 1);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x09, "master base 0x08");
    out8(dev, 0xA1, 0xFE, 0); /* unmask IRQ 8 */
    edge(dev, 8);
    cr_assert_eq(pk_devices_pending_vector(dev), -1, "IRQ 1 in service");
    out8(dev, 0x20, 0x20, 0);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x70, "slave base 0x70");
}

Test(pic, init_remaps_and_unmasks)
{
    pic_init(dev, 0x01);
    cr_assert_eq(in8(dev, 0x21, 0), 0x00, "ICW1 clears IMR");
    cr_assert_eq(in8(dev, 0xA1, 0), 0x00);
    edge(dev, 3);
    cr_assert_eq(pk_devices_pending_vector(dev), 0x23);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x23);
    cr_assert_eq(pk_devices_acknowledge(dev), -1, "nothing else pends");
}

Test(pic, init_clears_old_requests)
{
    out8(dev, 0x21, 0x00, 0);
    edge(dev, 5);
    cr_assert_eq(pk_devices_pending_vector(dev), 0x0D);
    pic_init(dev, 0x01);
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
}

Test(pic, masking)
{
    pic_init(dev, 0x01);
    out8(dev, 0x21, 0x08, 0); /* OCW1: mask IRQ 3 */
    cr_assert_eq(in8(dev, 0x21, 0), 0x08);
    edge(dev, 3);
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
    cr_assert_eq(read_irr(dev, 0x20, 0), 0x08, "requested while masked");
    out8(dev, 0x21, 0x00, 0);
    cr_assert_eq(pk_devices_pending_vector(dev), 0x23);
}

Test(pic, fixed_priority_and_nesting)
{
    pic_init(dev, 0x01);
    edge(dev, 5);
    edge(dev, 3);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x23, "IRQ 3 beats IRQ 5");
    cr_assert_eq(pk_devices_pending_vector(dev), -1, "5 is below 3");
    edge(dev, 1);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x21, "1 nests over 3");
    cr_assert_eq(read_isr(dev, 0x20), 0x0A);
    out8(dev, 0x20, 0x20, 0); /* non-specific EOI: the highest, IRQ 1 */
    cr_assert_eq(read_isr(dev, 0x20), 0x08);
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
    out8(dev, 0x20, 0x20, 0);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x25);
}

Test(pic, in_service_blocks_the_same_line)
{
    pic_init(dev, 0x01);
    edge(dev, 3);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x23);
    edge(dev, 3);
    cr_assert_eq(read_irr(dev, 0x20, 0), 0x08);
    cr_assert_eq(pk_devices_pending_vector(dev), -1);
    out8(dev, 0x20, 0x63, 0); /* OCW2: specific EOI, IR3 */
    cr_assert_eq(read_isr(dev, 0x20), 0x00);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x23);
}

Test(pic, edge_triggered)
{
    pic_init(dev, 0x01);
    pk_devices_set_irq(dev, 4, true);
    pk_devices_set_irq(dev, 4, true); /* still high: no new edge */
    cr_assert_eq(pk_devices_acknowledge(dev), 0x24);
    out8(dev, 0x20, 0x20, 0);
    cr_assert_eq(pk_devices_pending_vector(dev), -1, "a level is no edge");
    pk_devices_set_irq(dev, 4, false);
    pk_devices_set_irq(dev, 4, true);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x24);
}

Test(pic, cascade_through_ir2)
{
    pic_init(dev, 0x01);
    edge(dev, 10);
    cr_assert_eq(read_irr(dev, 0xA0, 0), 0x04, "slave IR2");
    cr_assert_eq(read_irr(dev, 0x20, 0), 0x04, "master IR2 (cascade)");
    cr_assert_eq(pk_devices_acknowledge(dev), 0x2A, "0x28 + 2");
    cr_assert_eq(read_isr(dev, 0x20), 0x04, "master IR2 in service");
    cr_assert_eq(read_isr(dev, 0xA0), 0x04, "slave IR2 in service");
    edge(dev, 11);
    cr_assert_eq(pk_devices_pending_vector(dev), -1, "10 blocks 11");
    edge(dev, 1);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x21, "master IR1 > IR2");
    out8(dev, 0x20, 0x20, 0); /* EOI IRQ 1 */
    out8(dev, 0xA0, 0x20, 0); /* EOI slave IRQ 10 */
    cr_assert_eq(pk_devices_pending_vector(dev), -1, "master IR2 busy");
    out8(dev, 0x20, 0x20, 0); /* EOI master IR2 */
    cr_assert_eq(pk_devices_acknowledge(dev), 0x2B);
}

Test(pic, spurious_slave_interrupt)
{
    pic_init(dev, 0x01);
    edge(dev, 9);
    out8(dev, 0xA1, 0x02, 0); /* the request is masked before INTA */
    cr_assert_eq(pk_devices_pending_vector(dev), 0x2F, "IRQ 15");
    cr_assert_eq(pk_devices_acknowledge(dev), 0x2F);
    cr_assert_eq(read_isr(dev, 0xA0), 0x00, "not in service in the slave");
    cr_assert_eq(read_isr(dev, 0x20), 0x04, "but in the master");
}

Test(pic, auto_eoi)
{
    pic_init(dev, 0x03); /* ICW4: 8086 mode, AEOI */
    edge(dev, 3);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x23);
    cr_assert_eq(read_isr(dev, 0x20), 0x00);
    edge(dev, 5);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x25, "nothing blocks");
    edge(dev, 12);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x2C);
    cr_assert_eq(read_isr(dev, 0x20), 0x00);
    cr_assert_eq(read_isr(dev, 0xA0), 0x00);
}

Test(pic, ocw3_selects_irr_or_isr)
{
    pic_init(dev, 0x01);
    edge(dev, 3);
    edge(dev, 5);
    pk_devices_acknowledge(dev);
    out8(dev, 0x20, 0x0A, 0);
    cr_assert_eq(in8(dev, 0x20, 0), 0x20, "IRR: 5 still requested");
    cr_assert_eq(in8(dev, 0x20, 0), 0x20, "the selection stays");
    out8(dev, 0x20, 0x0B, 0);
    cr_assert_eq(in8(dev, 0x20, 0), 0x08, "ISR: 3 in service");
    cr_assert_eq(in8(dev, 0x21, 0), 0x00, "the odd port is still IMR");
}

Test(pic, priority_rotation)
{
    pic_init(dev, 0x01);
    out8(dev, 0x20, 0xC4, 0); /* OCW2 set priority: IR4 lowest */
    edge(dev, 1);
    edge(dev, 6);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x26, "order 5 6 7 0 1 ...");
    /* Rotate on non-specific EOI: IR6 becomes lowest, IR7 highest. */
    out8(dev, 0x20, 0xA0, 0);
    edge(dev, 0);
    cr_assert_eq(pk_devices_acknowledge(dev), 0x20, "order 7 0 1 ...");
}

Test(pic, poll_command)
{
    pic_init(dev, 0x01);
    out8(dev, 0x21, 0x00, 0);
    out8(dev, 0x20, 0x0C, 0); /* OCW3: poll */
    cr_assert_eq(in8(dev, 0x20, 0), 0x00, "nothing requested");
    edge(dev, 6);
    out8(dev, 0x20, 0x0C, 0);
    cr_assert_eq(in8(dev, 0x20, 0), 0x86, "I bit + IR6");
    cr_assert_eq(read_isr(dev, 0x20), 0x40, "the read was the INTA");
}

/* ---- exit port, POST port, unclaimed ports, bus sizing ------------------- */

Test(ports, exit_port)
{
    int status = -1;
    cr_assert_not(pk_devices_exit_requested(dev, &status));
    out8(dev, 0xF4, 3, 0);
    cr_assert(pk_devices_exit_requested(dev, &status));
    cr_assert_eq(status, 3);
}

Test(ports, exit_port_keeps_the_low_byte)
{
    bool claimed = false;
    int status = -1;
    pk_devices_out(dev, 0xF4, 4, 0x1234, 0, &claimed);
    cr_assert(claimed);
    cr_assert(pk_devices_exit_requested(dev, &status));
    cr_assert_eq(status, 0x34);
}

Test(ports, unclaimed_ports_float_high)
{
    bool claimed = true;
    cr_assert_eq(pk_devices_in(dev, 0x1234, 1, 0, &claimed), 0xFF);
    cr_assert_not(claimed);
    claimed = true;
    cr_assert_eq(pk_devices_in(dev, 0x1234, 2, 0, &claimed), 0xFFFF);
    cr_assert_not(claimed);
    claimed = true;
    cr_assert_eq(pk_devices_in(dev, 0x1234, 4, 0, &claimed), 0xFFFFFFFFu);
    cr_assert_not(claimed);
    claimed = true;
    pk_devices_out(dev, 0x1234, 4, 0, 0, &claimed);
    cr_assert_not(claimed);
    cr_assert_eq(pk_devices_in(dev, 0x3F8, 3, 0, NULL), 0xFFFFFFFFu,
                 "size 3 is no access");
}

Test(ports, post_port_is_claimed)
{
    bool claimed = false;
    pk_devices_out(dev, 0x80, 1, 0x42, 0, &claimed);
    cr_assert(claimed);
    claimed = false;
    cr_assert_eq(pk_devices_in(dev, 0x80, 1, 0, &claimed), 0xFF);
    cr_assert(claimed);
    cr_assert_not(pk_devices_exit_requested(dev, NULL));
}

Test(ports, wide_access_is_split_into_bytes)
{
    /* A word read at LSR gets LSR (0x60) then MSR (0xB0). */
    bool claimed = false;
    cr_assert_eq(pk_devices_in(dev, 0x3FD, 2, 0, &claimed), 0xB060);
    cr_assert(claimed);
    /* A dword at 0x3FF: SCR, then three unclaimed ports. */
    out8(dev, 0x3FF, 0x11, 0);
    cr_assert_eq(pk_devices_in(dev, 0x3FF, 4, 0, &claimed), 0xFFFFFF11);
    cr_assert(claimed);
}
