/* samples/common/faults.c — the exception record of the sample guests
 * (faults.h). */
#include "faults.h"

#include "console.h"
#include "timer.h"

volatile struct fault last_fault;
volatile uintptr_t recover_ip;

void fault_reset(void)
{
    last_fault.vector = NO_FAULT;
    last_fault.error = 0;
    last_fault.ip = 0;
    last_fault.cs = 0;
}

/* Exceptions that push an error code (SDM Vol. 3A §6.15). */
static bool has_error_code(uintptr_t vector)
{
    return vector < 32 && ((1u << vector) & 0x60227d00u);
}

void put_fault(const volatile struct fault *f)
{
    static const char *const names[20] = {
        "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "CSO",
        "TS", "NP", "SS", "GP", "PF", "15", "MF", "AC", "MC", "XM",
    };
    if (f->vector == NO_FAULT) {
        put_str("none");
        return;
    }
    uart_putc('#');
    if (f->vector < 20) {
        put_str(names[f->vector]);
    } else {
        put_str("vector");
        put_hex(f->vector);
    }
    if (has_error_code(f->vector)) {
        uart_putc('(');
        put_hex(f->error);
        uart_putc(')');
    }
}

void check_fault(const char *name, const volatile struct fault *f)
{
    check_begin("", name);
    put_fault(f);
    uart_putc('\n');
}

void trap_default(const char *guest, uintptr_t vector, uintptr_t error,
                  uintptr_t *ip, uintptr_t cs)
{
    if (irq_handle(vector))
        return;
    if (vector < 32) {
        last_fault.vector = vector;
        last_fault.error = error;
        last_fault.ip = *ip;
        last_fault.cs = cs;
        if (recover_ip) {
            *ip = recover_ip;
            recover_ip = 0;
            return;
        }
        if (vector == VEC_BP || vector == VEC_OF)
            return;
    }
    put_str(guest);
    put_str(": unexpected ");
    put_fault(&(struct fault){ vector, error, *ip, cs });
    put_str(" at ");
    put_hex(*ip);
    uart_putc('\n');
    guest_exit(1);
}
