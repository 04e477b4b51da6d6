/* popek — the 8259A programmable interrupt controller pair of a PC.
 *
 * Master at 0x20/0x21, slave at 0xA0/0xA1, the slave's INT wired to the
 * master's IR2. References: Intel 8259A datasheet (231468), "Programming the
 * 8259A" (ICW1–ICW4, OCW1–OCW3) and "Interrupt sequence".
 *
 * Emulated:
 * - ICW1–ICW4. ICW1 clears IRR, ISR and IMR, resets priority so that IR0 is
 *   highest, selects IRR for reading and leaves special mask mode; ICW2 gives
 *   the vector base (bits 7:3); ICW3 is expected unless ICW1 said SNGL; ICW4
 *   (only when ICW1 asked for it) sets auto-EOI and special fully nested mode.
 * - Edge- (default) and level-triggered (ICW1 LTIM) requests. Edge: IRR is
 *   set on a rising edge and stays set until acknowledged (as in QEMU; the
 *   datasheet would drop a request whose line falls before INTA).
 * - OCW1 (IMR), OCW2 (non-specific, specific EOI, the rotate commands and set
 *   priority: rotation is supported), OCW3 (read IRR/ISR, poll, special mask
 *   mode).
 * - Fixed priority by default, in-service blocking of equal and lower
 *   priorities, cascade: a slave request sets the master's IRR2, and the
 *   acknowledge takes the vector from the slave and puts IR2 in service in
 *   the master too, so a slave handler must EOI both chips.
 * - Spurious slave interrupt: when the master's IR2 wins but the slave no
 *   longer has a request (it was masked meanwhile), the vector is the slave's
 *   base + 7 and only the master's IR2 goes in service, as on real hardware.
 *   The master cannot produce a spurious IRQ 7 here: pending and acknowledge
 *   see the same state, and "nothing pending" is -1.
 *
 * Not emulated, documented:
 * - 8080/8085 mode (ICW4 bit 0 = 0, or no ICW4): vectors are always
 *   base + IR as in 8086 mode; buffered mode and the slave ID are ignored
 *   (the slave answers the cascade if the master's ICW3 has bit 2 set).
 * - A poll of the master that finds IR2 does not reach into the slave; the
 *   guest polls the slave itself.
 *
 * Before the guest initializes the PICs they are as a PC BIOS leaves them:
 * vector bases 0x08 (master) and 0x70 (slave), cascade on IR2, edge
 * triggered, and everything masked but the cascade (IMR 0xFB and 0xFF) so
 * that an unprogrammed PIC never lands on the CPU's exception vectors
 * 0x08–0x0F. */
#include "internal/devices.h"

#include <string.h>

#define PK_PIC_CASCADE_IR 2

static uint8_t pk_pic_bit(unsigned ir)
{
    return (uint8_t)(1u << (ir & 7));
}

/* The priority (0 highest, 8 none) of the best line set in mask. */
static unsigned pk_pic_priority(const pk_pic_chip *c, uint8_t mask)
{
    for (unsigned p = 0; p < 8; p++)
        if (mask & pk_pic_bit(c->highest + p))
            return p;
    return 8;
}

/* The IR line this chip would put on INT now, or -1. */
static int pk_pic_chip_irq(const pk_pic_chip *c)
{
    unsigned req = pk_pic_priority(c, c->irr & ~c->imr);
    if (req == 8)
        return -1;
    uint8_t busy = c->isr;
    /* Special mask mode: a masked in-service level blocks nothing. */
    if (c->special_mask)
        busy &= ~c->imr;
    /* Special fully nested mode: a slave in service may still interrupt
     * with a higher request of its own. */
    if (c->sfnm && c->master)
        busy &= ~pk_pic_bit(PK_PIC_CASCADE_IR);
    if (req >= pk_pic_priority(c, busy))
        return -1;
    return (int)((req + c->highest) & 7);
}

static bool pk_pic_cascaded(const pk_pic *pic)
{
    const pk_pic_chip *m = &pic->chip[0];
    return !m->single && (m->icw3 & pk_pic_bit(PK_PIC_CASCADE_IR));
}

/* The slave's INT output feeds the master's IR2. */
static void pk_pic_update_cascade(pk_pic *pic)
{
    if (pk_pic_cascaded(pic) && pk_pic_chip_irq(&pic->chip[1]) >= 0)
        pic->chip[0].irr |= pk_pic_bit(PK_PIC_CASCADE_IR);
}

/* The second INTA pulse: the request moves to in-service, or is done at
 * once in auto-EOI mode. */
static void pk_pic_chip_ack(pk_pic_chip *c, unsigned ir)
{
    uint8_t bit = pk_pic_bit(ir);
    if (!c->level)
        c->irr &= ~bit;
    if (!c->auto_eoi)
        c->isr |= bit;
    else if (c->rotate_aeoi)
        c->highest = (uint8_t)((ir + 1) & 7);
}

static void pk_pic_chip_reset(pk_pic_chip *c, bool master)
{
    memset(c, 0, sizeof *c);
    c->master = master;
    c->base = master ? 0x08 : 0x70;
    c->icw3 = master ? pk_pic_bit(PK_PIC_CASCADE_IR) : PK_PIC_CASCADE_IR;
    c->imr = master ? (uint8_t)~pk_pic_bit(PK_PIC_CASCADE_IR) : 0xFF;
}

void pk_pic_reset(pk_pic *pic)
{
    pk_pic_chip_reset(&pic->chip[0], true);
    pk_pic_chip_reset(&pic->chip[1], false);
}

static void pk_pic_icw1(pk_pic_chip *c, uint8_t v)
{
    c->want_icw4 = v & 0x01;
    c->single = v & 0x02;
    c->level = v & 0x08;
    /* The edge-sense latches are reset: a line already high must fall and
     * rise again to request, so `lines` is kept. */
    c->irr = c->level ? c->lines : 0;
    c->isr = 0;
    c->imr = 0;
    c->highest = 0;
    c->auto_eoi = c->rotate_aeoi = c->sfnm = false;
    c->special_mask = c->read_isr = c->poll = false;
    c->init_step = 2;
}

static void pk_pic_ocw2(pk_pic_chip *c, uint8_t v)
{
    unsigned level = v & 7;
    switch (v >> 5) {
    case 0: /* 000: clear rotate in auto-EOI mode */
        c->rotate_aeoi = false;
        break;
    case 4: /* 100: set rotate in auto-EOI mode */
        c->rotate_aeoi = true;
        break;
    case 1:   /* 001: non-specific EOI */
    case 5: { /* 101: rotate on non-specific EOI */
        unsigned p = pk_pic_priority(c, c->isr);
        if (p == 8)
            break;
        unsigned ir = (p + c->highest) & 7;
        c->isr &= ~pk_pic_bit(ir);
        if (v >> 5 == 5)
            c->highest = (uint8_t)((ir + 1) & 7);
        break;
    }
    case 3: /* 011: specific EOI */
        c->isr &= ~pk_pic_bit(level);
        break;
    case 7: /* 111: rotate on specific EOI: the line becomes lowest */
        c->isr &= ~pk_pic_bit(level);
        c->highest = (uint8_t)((level + 1) & 7);
        break;
    case 6: /* 110: set priority: the line becomes lowest */
        c->highest = (uint8_t)((level + 1) & 7);
        break;
    default: /* 010: no operation */
        break;
    }
}

static void pk_pic_ocw3(pk_pic_chip *c, uint8_t v)
{
    if (v & 0x04)
        c->poll = true;
    if (v & 0x02)
        c->read_isr = v & 0x01;
    if (v & 0x40)
        c->special_mask = v & 0x20;
}

static void pk_pic_data_write(pk_pic_chip *c, uint8_t v)
{
    switch (c->init_step) {
    case 2: /* ICW2: bits 2:0 are the IR number in 8086 mode */
        c->base = v & 0xF8;
        c->init_step = c->single ? (c->want_icw4 ? 4 : 0) : 3;
        break;
    case 3:
        c->icw3 = v;
        c->init_step = c->want_icw4 ? 4 : 0;
        break;
    case 4:
        c->auto_eoi = v & 0x02;
        c->sfnm = v & 0x10;
        c->init_step = 0;
        break;
    default: /* OCW1 */
        c->imr = v;
        break;
    }
}

void pk_pic_write(pk_pic *pic, uint16_t port, uint8_t value)
{
    pk_pic_chip *c = &pic->chip[port >= 0xA0];
    if (port & 1)
        pk_pic_data_write(c, value);
    else if (value & 0x10)
        pk_pic_icw1(c, value);
    else if (value & 0x08)
        pk_pic_ocw3(c, value);
    else
        pk_pic_ocw2(c, value);
    pk_pic_update_cascade(pic);
}

uint8_t pk_pic_read(pk_pic *pic, uint16_t port)
{
    pk_pic_chip *c = &pic->chip[port >= 0xA0];
    if (port & 1)
        return c->imr;
    if (c->poll) {
        /* The poll command: the read acts as an INTA and returns
         * 1000 0 W2 W1 W0, or 0 when nothing is requested. */
        c->poll = false;
        int ir = pk_pic_chip_irq(c);
        if (ir < 0)
            return 0;
        pk_pic_chip_ack(c, (unsigned)ir);
        pk_pic_update_cascade(pic);
        return (uint8_t)(0x80 | ir);
    }
    return c->read_isr ? c->isr : c->irr;
}

void pk_pic_set_irq(pk_pic *pic, unsigned irq, bool level)
{
    pk_pic_chip *c = &pic->chip[(irq >> 3) & 1];
    uint8_t bit = pk_pic_bit(irq);
    if (level) {
        if (c->level || !(c->lines & bit))
            c->irr |= bit;
        c->lines |= bit;
    } else {
        c->lines &= ~bit;
        if (c->level)
            c->irr &= ~bit;
    }
    pk_pic_update_cascade(pic);
}

bool pk_pic_would_present(const pk_pic *pic, unsigned irq)
{
    pk_pic_chip master = pic->chip[0];
    master.irr |= (uint8_t)(1u << irq);
    return pk_pic_chip_irq(&master) == (int)irq;
}

int pk_pic_pending_vector(const pk_pic *pic)
{
    const pk_pic_chip *m = &pic->chip[0], *s = &pic->chip[1];
    int ir = pk_pic_chip_irq(m);
    if (ir < 0)
        return -1;
    if (ir == PK_PIC_CASCADE_IR && pk_pic_cascaded(pic)) {
        int sir = pk_pic_chip_irq(s);
        return s->base + (sir >= 0 ? sir : 7);
    }
    return m->base + ir;
}

int pk_pic_acknowledge(pk_pic *pic)
{
    pk_pic_chip *m = &pic->chip[0], *s = &pic->chip[1];
    int ir = pk_pic_chip_irq(m);
    if (ir < 0)
        return -1;
    pk_pic_chip_ack(m, (unsigned)ir);
    int vector = m->base + ir;
    if (ir == PK_PIC_CASCADE_IR && pk_pic_cascaded(pic)) {
        int sir = pk_pic_chip_irq(s);
        if (sir >= 0) {
            pk_pic_chip_ack(s, (unsigned)sir);
            vector = s->base + sir;
        } else {
            vector = s->base + 7; /* spurious IRQ 15 */
        }
    }
    pk_pic_update_cascade(pic);
    return vector;
}
