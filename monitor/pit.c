/* popek — an 8254 programmable interval timer at 0x40–0x43, and the timer
 * bits of system control port B (0x61).
 *
 * Reference: Intel 8254 datasheet (231164), "Modes", "Read Operations" and
 * "Read-Back Command". The clock is 1193182 Hz and is not simulated: a
 * channel remembers when its count was written, and its count, its OUT and
 * its next edge are computed from host time when asked.
 *
 * The clock model: clock pulses fall at start + k/1193182 s (k = 1, 2, ...)
 * after a count is written; as on the chip, the first pulse loads the count
 * into the counting element and the following ones decrement it. So with a
 * count N, OUT in mode 0 rises at pulse N+1, and in modes 2 and 3 it rises at
 * pulses 1 + mN (m = 1, 2, ...): periodic, N/1193182 s apart. A count of 0
 * means 65536 (10000 in BCD).
 *
 * Emulated:
 * - Control word: channel, access (LSB only, MSB only, LSB then MSB), mode
 *   0–5 (6 and 7 are 2 and 3), BCD counting (reload and readback in BCD).
 *   Writing it stops the channel until a count is written (OUT low in mode
 *   0, high otherwise) and drops pending latches.
 * - Counter latch command, and the 8254 read-back command (count and/or
 *   status latch, with the OUT and null count bits). Unlatched reads sample
 *   the count at the time of each byte's read.
 * - Mode 0: writing the LSB of an LSB-then-MSB count stops counting; the
 *   MSB starts it. Counting continues past terminal count (wraps to 0xFFFF).
 * - Channel 0's OUT drives IRQ 0. Rising edges raise it: once in modes 0
 *   and 4, periodically in modes 2 and 3. When several periods passed
 *   between two pk_pit_advance calls (the monitor was slow) the line is
 *   raised once, as an edge-triggered PIC would latch one request, and the
 *   next edge stays on the channel's own grid (the first one after now).
 * - Port 0x61: bit 0 is channel 2's gate (modes 1 and 5 trigger on its
 *   rising edge, modes 2 and 3 stop while it is low and restart on its rise),
 *   bit 1 (speaker data) and bits 3:2 read back, bit 4 toggles every
 *   15.085 µs (memory refresh, used for delay loops), bit 5 is channel 2's
 *   OUT (used to calibrate the TSC).
 *
 * Not emulated, documented:
 * - A new count written while mode 2 or 3 runs takes effect at once (the
 *   chip would finish the current period or half-period first).
 * - A low gate does not suspend modes 0 and 4; while it holds modes 2 and 3
 *   the count reads as the initial count. Channels 0 and 1 have their gate
 *   tied high, as on a PC, so modes 1 and 5 never start there.
 * - Counts of 1 in modes 2 and 3 (illegal per datasheet) raise no edge.
 * - Before its first clock pulse a count reads as the value written (the
 *   datasheet leaves it undefined).
 * - Channels 1 and 2 drive no interrupt; nothing plays the speaker.
 *
 * At reset channel 0 is as the IBM PC BIOS leaves it (control word 0x36:
 * mode 3, LSB then MSB, count 0 = 65536, 18.2 Hz), counting from the time
 * the devices are created; channels 1 and 2 wait for a count. */
#include "internal/devices.h"

#define PK_NS 1000000000u
#define PK_REFRESH_HALF_NS 15085u /* 18 clocks of channel 1 at 1193182 Hz */

typedef unsigned __int128 pk_u128;

/* Clock pulses since start: floor((now - start) * HZ / 1e9). */
static uint64_t pk_pit_pulses(const pk_pit_channel *c, uint64_t now)
{
    if (now <= c->start_ns)
        return 0;
    return (uint64_t)((pk_u128)(now - c->start_ns) * PK_PIT_HZ / PK_NS);
}

/* The first nanosecond at which pulse k has happened. */
static uint64_t pk_pit_pulse_time(const pk_pit_channel *c, uint64_t k)
{
    pk_u128 t = ((pk_u128)k * PK_NS + PK_PIT_HZ - 1) / PK_PIT_HZ + c->start_ns;
    return t >= UINT64_MAX ? UINT64_MAX - 1 : (uint64_t)t;
}

static uint32_t pk_pit_modulus(const pk_pit_channel *c)
{
    return c->bcd ? 10000 : 65536;
}

/* The initial count N as a number (0 means the modulus). */
static uint32_t pk_pit_initial(const pk_pit_channel *c)
{
    uint32_t n = c->reload;
    if (c->bcd)
        n = (n >> 12 & 15) * 1000 + (n >> 8 & 15) * 100 + (n >> 4 & 15) * 10 +
            (n & 15);
    return n ? n : pk_pit_modulus(c);
}

static uint16_t pk_pit_encode(const pk_pit_channel *c, uint32_t v)
{
    v %= pk_pit_modulus(c); /* the modulus itself reads as 0 */
    if (!c->bcd)
        return (uint16_t)v;
    return (uint16_t)((v / 1000) << 12 | (v / 100 % 10) << 8 |
                      (v / 10 % 10) << 4 | v % 10);
}

static bool pk_pit_periodic(const pk_pit_channel *c)
{
    return c->mode == 2 || c->mode == 3;
}

/* The counting element at now, as a number. */
static uint32_t pk_pit_count(const pk_pit_channel *c, uint64_t now)
{
    uint32_t n = pk_pit_initial(c), m = pk_pit_modulus(c);
    uint64_t u = pk_pit_pulses(c, now);
    if (!c->armed || !c->running || u <= 1)
        return n;
    uint64_t done = u - 1; /* pulses since the load */
    switch (c->mode) {
    case 2:
        return n - (uint32_t)(done % n);
    case 3: {
        /* Decrements by two; an odd count loses one extra in the first
         * pulse of the high half and three in the first of the low half. */
        uint32_t p = (uint32_t)(done % n), high = (n + 1) / 2;
        if (n % 2 == 0) {
            uint32_t k = p % (n / 2);
            return n - 2 * k;
        }
        if (p < high)
            return p == 0 ? n : n + 1 - 2 * p;
        p -= high;
        return p == 0 ? n : n - 1 - 2 * p;
    }
    default: /* 0, 1, 4, 5: down through terminal count and around */
        return (uint32_t)((n + m - done % m) % m);
    }
}

static bool pk_pit_out(const pk_pit_channel *c, uint64_t now)
{
    if (!c->armed)
        return c->mode != 0;
    if (!c->running)
        return true; /* modes 1, 5 waiting; 2, 3 held by the gate */
    uint32_t n = pk_pit_initial(c);
    uint64_t u = pk_pit_pulses(c, now);
    switch (c->mode) {
    case 0: /* low until terminal count */
        return u > n;
    case 1: /* low from the load after the trigger to terminal count */
        return u == 0 || u > n;
    case 2:
        return n == 1 ? false : u == 0 || (u - 1) % n != n - 1;
    case 3:
        return u == 0 || (u - 1) % n < (n + 1) / 2;
    default: /* 4, 5: one pulse low at terminal count */
        return u != (uint64_t)n + 1;
    }
}

/* The first OUT rising edge at a pulse after u, or PK_PIT_NONE. */
static uint64_t pk_pit_edge_after(const pk_pit_channel *c, uint64_t u)
{
    if (!c->armed || !c->running)
        return PK_PIT_NONE;
    uint64_t n = pk_pit_initial(c);
    if (pk_pit_periodic(c)) {
        if (n == 1)
            return PK_PIT_NONE;
        uint64_t m = u < 1 ? 1 : (u - 1) / n + 1;
        return 1 + m * n;
    }
    uint64_t edge = c->mode <= 1 ? n + 1 : n + 2;
    return edge > u ? edge : PK_PIT_NONE;
}

static void pk_pit_drive(pk_pit *pit, bool level)
{
    if (level != pit->line) {
        pit->line = level;
        if (pit->irq)
            pit->irq(pit->irq_ctx, 0, level);
    }
}

/* After a change to channel 0: OUT's level now, and its next edge. */
static void pk_pit_update_ch0(pk_pit *pit, uint64_t now)
{
    pk_pit_channel *c = &pit->ch[0];
    uint64_t u = pk_pit_pulses(c, now);
    c->next_edge = pk_pit_edge_after(c, u);
    pk_pit_drive(pit, pk_pit_out(c, now));
}

static void pk_pit_load(pk_pit *pit, unsigned i, uint16_t count, uint64_t now)
{
    pk_pit_channel *c = &pit->ch[i];
    c->reload = count;
    c->armed = true;
    c->start_ns = now;
    c->running = (c->mode == 0 || c->mode == 4) ||
                 (pk_pit_periodic(c) && c->gate);
    if (i == 0)
        pk_pit_update_ch0(pit, now);
}

static void pk_pit_control(pk_pit *pit, unsigned i, uint8_t v, uint64_t now)
{
    pk_pit_channel *c = &pit->ch[i];
    c->control = v & 0x3F;
    c->access = (v >> 4) & 3;
    c->mode = (v >> 1) & 7;
    if (c->mode > 5)
        c->mode -= 4;
    c->bcd = v & 1;
    c->armed = c->running = false;
    c->write_msb = c->read_msb = false;
    c->latched = c->status_latched = false;
    if (i == 0)
        pk_pit_update_ch0(pit, now);
}

static void pk_pit_latch_count(pk_pit_channel *c, uint64_t now)
{
    if (c->latched)
        return; /* a second latch before the read is ignored */
    c->latch = pk_pit_encode(c, pk_pit_count(c, now));
    c->latched = true;
    c->latch_msb = false;
}

static void pk_pit_latch_status(pk_pit_channel *c, uint64_t now)
{
    if (c->status_latched)
        return;
    /* Null count: a count was written but not yet loaded by a pulse. */
    bool null_count = !c->armed || !c->running || pk_pit_pulses(c, now) == 0;
    c->status = (uint8_t)((pk_pit_out(c, now) ? 0x80 : 0) |
                          (null_count ? 0x40 : 0) | c->control);
    c->status_latched = true;
}

static void pk_pit_command(pk_pit *pit, uint8_t v, uint64_t now)
{
    unsigned sel = v >> 6;
    if (sel == 3) {
        /* Read-back: bit 5 = 0 latches counts, bit 4 = 0 latches status,
         * bits 3:1 select channels 2:0. */
        for (unsigned i = 0; i < 3; i++) {
            if (!(v & (2u << i)))
                continue;
            if (!(v & 0x10))
                pk_pit_latch_status(&pit->ch[i], now);
            if (!(v & 0x20))
                pk_pit_latch_count(&pit->ch[i], now);
        }
        return;
    }
    if (((v >> 4) & 3) == 0)
        pk_pit_latch_count(&pit->ch[sel], now);
    else
        pk_pit_control(pit, sel, v, now);
}

static void pk_pit_data_write(pk_pit *pit, unsigned i, uint8_t v,
                              uint64_t now)
{
    pk_pit_channel *c = &pit->ch[i];
    switch (c->access) {
    case 1:
        pk_pit_load(pit, i, v, now);
        break;
    case 2:
        pk_pit_load(pit, i, (uint16_t)(v << 8), now);
        break;
    default:
        if (!c->write_msb) {
            c->write_lsb = v;
            c->write_msb = true;
            if (c->mode == 0) {
                c->armed = c->running = false;
                if (i == 0)
                    pk_pit_update_ch0(pit, now);
            }
        } else {
            c->write_msb = false;
            pk_pit_load(pit, i, (uint16_t)(c->write_lsb | v << 8), now);
        }
        break;
    }
}

static uint8_t pk_pit_data_read(pk_pit_channel *c, uint64_t now)
{
    if (c->status_latched) {
        c->status_latched = false;
        return c->status;
    }
    bool msb;
    uint16_t value;
    if (c->latched) {
        value = c->latch;
        msb = c->access == 2 || (c->access == 3 && c->latch_msb);
        if (c->access == 3 && !c->latch_msb)
            c->latch_msb = true;
        else
            c->latched = false;
    } else {
        value = pk_pit_encode(c, pk_pit_count(c, now));
        msb = c->access == 2 || (c->access == 3 && c->read_msb);
        if (c->access == 3)
            c->read_msb = !c->read_msb;
    }
    return (uint8_t)(msb ? value >> 8 : value);
}

static void pk_pit_set_gate2(pk_pit *pit, bool gate, uint64_t now)
{
    pk_pit_channel *c = &pit->ch[2];
    bool rising = gate && !c->gate;
    c->gate = gate;
    if (!c->armed || c->mode == 0 || c->mode == 4)
        return;
    if (rising) {
        c->running = true;
        c->start_ns = now; /* trigger, or reload after a low gate */
    } else if (!gate && pk_pit_periodic(c)) {
        c->running = false;
    }
}

void pk_pit_reset(pk_pit *pit, uint64_t now_ns, pk_irq_line *irq,
                  void *irq_ctx)
{
    /* Reset drives nothing: the first request the PIC sees is the first
     * period's edge. */
    *pit = (pk_pit){ .origin_ns = now_ns };
    for (unsigned i = 0; i < 3; i++) {
        pit->ch[i].gate = i < 2;
        pk_pit_control(pit, i, (uint8_t)(i << 6 | 0x36), now_ns);
    }
    pk_pit_load(pit, 0, 0, now_ns);
    pit->irq = irq;
    pit->irq_ctx = irq_ctx;
}

uint8_t pk_pit_read(pk_pit *pit, uint16_t port, uint64_t now_ns)
{
    if (port == 0x61) {
        uint64_t since = now_ns > pit->origin_ns ? now_ns - pit->origin_ns : 0;
        uint8_t v = pit->port61 & 0x0F;
        if ((since / PK_REFRESH_HALF_NS) & 1)
            v |= 0x10;
        if (pk_pit_out(&pit->ch[2], now_ns))
            v |= 0x20;
        return v;
    }
    if (port == 0x43)
        return 0xFF; /* the control word register cannot be read */
    return pk_pit_data_read(&pit->ch[port - 0x40], now_ns);
}

void pk_pit_write(pk_pit *pit, uint16_t port, uint8_t value, uint64_t now_ns)
{
    if (port == 0x61) {
        pit->port61 = value & 0x0F;
        pk_pit_set_gate2(pit, value & 0x01, now_ns);
    } else if (port == 0x43) {
        pk_pit_command(pit, value, now_ns);
    } else {
        pk_pit_data_write(pit, port - 0x40u, value, now_ns);
    }
}

void pk_pit_advance(pk_pit *pit, uint64_t now_ns)
{
    pk_pit_channel *c = &pit->ch[0];
    if (c->next_edge == PK_PIT_NONE)
        return;
    uint64_t u = pk_pit_pulses(c, now_ns);
    if (u < c->next_edge)
        return;
    /* One edge however many were due: OUT fell and rose again. */
    pk_pit_drive(pit, false);
    pk_pit_drive(pit, true);
    c->next_edge = pk_pit_edge_after(c, u);
}

uint64_t pk_pit_next_event(const pk_pit *pit)
{
    const pk_pit_channel *c = &pit->ch[0];
    if (c->next_edge == PK_PIT_NONE)
        return UINT64_MAX;
    return pk_pit_pulse_time(c, c->next_edge);
}
