/* popek — a 16550A UART at 0x3F8 (COM1), transmit only.
 *
 * Reference: TI/National PC16550D datasheet, "Registers" (table 2) and the
 * interrupt control table (IIR priorities).
 *
 * Emulated:
 * - THR: each byte goes to the output FILE at once, then fflush, so it
 *   interleaves correctly with the monitor's stderr. Transmission takes no
 *   time: LSR always has THRE and TEMT (0x60) set.
 * - DLAB (LCR bit 7): offsets 0 and 1 are then the divisor latch (DLL, DLM),
 *   not THR/RBR and IER. The divisor is stored and read back; it has no
 *   effect, like LCR's word length, parity and stop bits.
 * - IER (low 4 bits), IIR with the datasheet's priorities (line status,
 *   received data, THR empty, modem status), FCR (FIFO enable shows in IIR
 *   bits 7:6 as 0xC0), LCR, MCR (low 5 bits), MSR, SCR.
 * - THR-empty interrupts: enabling IER bit 1 while THR is empty latches one;
 *   reading IIR while it is the one reported, or writing THR, clears it; the
 *   transmitted byte leaves at once, so THR is empty again and the interrupt
 *   is latched again (a new edge). The output reaches IRQ 4 only with MCR
 *   OUT2 set, as on a PC, where OUT2 gates the UART's interrupt onto the bus
 *   (QEMU ignores OUT2; a guest that wants IRQ 4 sets it anyway).
 * - Loopback (MCR bit 4), as drivers use it to probe for a UART: transmitted
 *   bytes go to RBR instead of the output (data ready, overrun on a second
 *   byte not read), MSR's lines follow MCR (CTS=RTS, DSR=DTR, RI=OUT1,
 *   DCD=OUT2) with delta bits, and no interrupt leaves the chip.
 *
 * Not emulated, documented:
 * - Input: nothing is ever received from the host; outside loopback LSR
 *   data ready stays 0 and RBR reads the last looped-back byte (or 0).
 * - FIFOs hold nothing (one byte of receive buffer in loopback); the
 *   character timeout interrupt never occurs.
 * - Outside loopback MSR reports DCD, DSR and CTS asserted (0xB0), a
 *   terminal that is always connected and ready; writes to LSR and MSR (a
 *   factory-test feature) are ignored. */
#include "internal/devices.h"

enum {
    PK_UART_RBR_THR = 0, /* DLL with DLAB */
    PK_UART_IER = 1,     /* DLM with DLAB */
    PK_UART_IIR_FCR = 2,
    PK_UART_LCR = 3,
    PK_UART_MCR = 4,
    PK_UART_LSR = 5,
    PK_UART_MSR = 6,
    PK_UART_SCR = 7,
};

#define PK_LCR_DLAB 0x80
#define PK_IER_RDA 0x01
#define PK_IER_THRE 0x02
#define PK_IER_RLS 0x04
#define PK_IER_MS 0x08
#define PK_MCR_DTR 0x01
#define PK_MCR_RTS 0x02
#define PK_MCR_OUT1 0x04
#define PK_MCR_OUT2 0x08
#define PK_MCR_LOOP 0x10
#define PK_LSR_DR 0x01
#define PK_LSR_OE 0x02
#define PK_LSR_ERRORS 0x1E /* OE, PE, FE, BI: cleared by reading LSR */
#define PK_LSR_THRE 0x20
#define PK_LSR_TEMT 0x40
#define PK_MSR_CTS 0x10
#define PK_MSR_DSR 0x20
#define PK_MSR_RI 0x40
#define PK_MSR_DCD 0x80
#define PK_IIR_NONE 0x01
#define PK_IIR_MS 0x00
#define PK_IIR_THRE 0x02
#define PK_IIR_RDA 0x04
#define PK_IIR_RLS 0x06
#define PK_IIR_FIFO 0xC0

/* The interrupt identification, highest priority first (datasheet table
 * "Interrupt Control Functions"). */
static uint8_t pk_uart_iir(const pk_uart *u)
{
    if ((u->ier & PK_IER_RLS) && (u->lsr & PK_LSR_ERRORS))
        return PK_IIR_RLS;
    if ((u->ier & PK_IER_RDA) && (u->lsr & PK_LSR_DR))
        return PK_IIR_RDA;
    if ((u->ier & PK_IER_THRE) && u->thri)
        return PK_IIR_THRE;
    if ((u->ier & PK_IER_MS) && (u->msr & 0x0F))
        return PK_IIR_MS;
    return PK_IIR_NONE;
}

static void pk_uart_update_irq(pk_uart *u)
{
    bool level = pk_uart_iir(u) != PK_IIR_NONE &&
                 (u->mcr & (PK_MCR_OUT2 | PK_MCR_LOOP)) == PK_MCR_OUT2;
    if (level != u->line) {
        u->line = level;
        if (u->irq)
            u->irq(u->irq_ctx, PK_UART_IRQ, level);
    }
}

/* The modem status lines as the chip sees them. */
static uint8_t pk_uart_lines(const pk_uart *u)
{
    if (!(u->mcr & PK_MCR_LOOP))
        return PK_MSR_DCD | PK_MSR_DSR | PK_MSR_CTS;
    uint8_t m = 0;
    if (u->mcr & PK_MCR_RTS)
        m |= PK_MSR_CTS;
    if (u->mcr & PK_MCR_DTR)
        m |= PK_MSR_DSR;
    if (u->mcr & PK_MCR_OUT1)
        m |= PK_MSR_RI;
    if (u->mcr & PK_MCR_OUT2)
        m |= PK_MSR_DCD;
    return m;
}

/* New line levels, with the MSR delta bits: DCTS, DDSR, TERI (RI fell),
 * DDCD. */
static void pk_uart_set_lines(pk_uart *u, uint8_t lines)
{
    uint8_t old = u->msr & 0xF0, changed = old ^ lines;
    uint8_t delta = u->msr & 0x0F;
    if (changed & PK_MSR_CTS)
        delta |= 0x01;
    if (changed & PK_MSR_DSR)
        delta |= 0x02;
    if ((old & PK_MSR_RI) && !(lines & PK_MSR_RI))
        delta |= 0x04;
    if (changed & PK_MSR_DCD)
        delta |= 0x08;
    u->msr = (uint8_t)(lines | delta);
}

void pk_uart_reset(pk_uart *u, FILE *out, pk_irq_line *irq, void *irq_ctx)
{
    *u = (pk_uart){
        .out = out,
        .lsr = PK_LSR_THRE | PK_LSR_TEMT,
        .irq = irq,
        .irq_ctx = irq_ctx,
    };
    u->msr = pk_uart_lines(u);
}

static void pk_uart_transmit(pk_uart *u, uint8_t byte)
{
    u->thri = false;
    pk_uart_update_irq(u); /* THR full for an instant: the line falls */
    if (u->mcr & PK_MCR_LOOP) {
        if (u->lsr & PK_LSR_DR)
            u->lsr |= PK_LSR_OE;
        u->rbr = byte;
        u->lsr |= PK_LSR_DR;
    } else if (u->out) {
        fputc(byte, u->out);
        fflush(u->out);
    }
    u->thri = true; /* THR is empty again */
}

void pk_uart_write(pk_uart *u, unsigned reg, uint8_t v)
{
    bool dlab = u->lcr & PK_LCR_DLAB;
    switch (reg & 7) {
    case PK_UART_RBR_THR:
        if (dlab)
            u->divisor = (uint16_t)((u->divisor & 0xFF00) | v);
        else
            pk_uart_transmit(u, v);
        break;
    case PK_UART_IER:
        if (dlab) {
            u->divisor = (uint16_t)((u->divisor & 0x00FF) | v << 8);
        } else {
            /* Enabling the THR-empty interrupt while THR is empty raises
             * it at once; drivers use this to start transmitting. */
            if ((v & ~u->ier & PK_IER_THRE) && (u->lsr & PK_LSR_THRE))
                u->thri = true;
            u->ier = v & 0x0F;
        }
        break;
    case PK_UART_IIR_FCR:
        u->fcr = v & 0xC9; /* bits 1 and 2 reset the FIFOs and self-clear */
        if (!(v & 0x01))
            u->fcr = 0;
        if (v & 0x02)
            u->lsr &= ~PK_LSR_DR;
        break;
    case PK_UART_LCR:
        u->lcr = v;
        break;
    case PK_UART_MCR:
        u->mcr = v & 0x1F;
        pk_uart_set_lines(u, pk_uart_lines(u));
        break;
    case PK_UART_SCR:
        u->scr = v;
        break;
    default: /* LSR, MSR: factory test writes, ignored */
        break;
    }
    pk_uart_update_irq(u);
}

uint8_t pk_uart_read(pk_uart *u, unsigned reg)
{
    bool dlab = u->lcr & PK_LCR_DLAB;
    uint8_t v = 0;
    switch (reg & 7) {
    case PK_UART_RBR_THR:
        if (dlab) {
            v = (uint8_t)u->divisor;
        } else {
            v = u->rbr;
            u->lsr &= ~PK_LSR_DR;
        }
        break;
    case PK_UART_IER:
        v = dlab ? (uint8_t)(u->divisor >> 8) : u->ier;
        break;
    case PK_UART_IIR_FCR:
        v = pk_uart_iir(u);
        if (v == PK_IIR_THRE)
            u->thri = false;
        if (u->fcr & 0x01)
            v |= PK_IIR_FIFO;
        break;
    case PK_UART_LCR:
        v = u->lcr;
        break;
    case PK_UART_MCR:
        v = u->mcr;
        break;
    case PK_UART_LSR:
        v = u->lsr | PK_LSR_THRE | PK_LSR_TEMT;
        u->lsr &= ~PK_LSR_ERRORS;
        break;
    case PK_UART_MSR:
        v = u->msr;
        u->msr &= 0xF0;
        break;
    default:
        v = u->scr;
        break;
    }
    pk_uart_update_irq(u);
    return v;
}
