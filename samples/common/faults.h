/* samples/common/faults.h — how the sample guests record an exception and
 * resume after it, the same in both modes; the interrupt frames themselves
 * differ and stay in each guest's trap_entry.
 *
 * A check that expects a fault stores the address to resume at in
 * recover_ip (ASM_RECOVER, in its asm); trap_entry passes the exception to
 * fault_record, which copies vector, error code, CS and the frame's
 * instruction pointer into last_fault and moves that pointer to
 * recover_ip. Compiled into guest32 and guest64 alike (faults.c). */
#ifndef SAMPLES_FAULTS_H
#define SAMPLES_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

#define VEC_BP  3   /* INT3: a trap, the frame points past it */
#define VEC_OF  4   /* INTO: likewise */

/* The last exception: vector (NO_FAULT when none), error code, and the
 * CS:EIP (CS:RIP) of the frame. Fields as wide as the mode: the entry.S
 * files copy the record (16 or 32 bytes) in ring-3 code. */
#define NO_FAULT UINTPTR_MAX
struct fault {
    uintptr_t vector, error, ip, cs;
};
extern volatile struct fault last_fault;
extern volatile uintptr_t recover_ip;

/* Asm text: resume at `label` (e.g. "1f") should what follows fault, and
 * stop doing so. An absolute immediate in both modes: the guests run
 * below 2 GiB. */
#ifdef __x86_64__
#define ASM_RECOVER(label) "movq $" label ", recover_ip(%%rip)\n\t"
#define ASM_RECOVER_OFF    "movq $0, recover_ip(%%rip)\n\t"
#else
#define ASM_RECOVER(label) "movl $" label ", recover_ip\n\t"
#define ASM_RECOVER_OFF    "movl $0, recover_ip\n\t"
#endif

/* Runs the asm text `insn` (operands: the inputs that follow) expecting it
 * to fault; last_fault then says how. */
#define EXPECT_FAULT(insn, ...) do {                                        \
        fault_reset();                                                      \
        __asm__ volatile(ASM_RECOVER("1f") insn "\n"                        \
                         "1:\n\t" ASM_RECOVER_OFF                           \
                         : : __VA_ARGS__ : "memory");                       \
    } while (0)

void fault_reset(void);
/* `none`, `#GP(0x10)`, `#BP`, `#vector0x40`. */
void put_fault(const volatile struct fault *f);
void check_fault(const char *name, const volatile struct fault *f);

/* For trap_entry, every vector it does not handle itself: the PIC's IRQs
 * (timer.h); an exception is recorded in last_fault and the guest goes on
 * with *ip (the frame's EIP or RIP) moved to recover_ip, or after a trap
 * (INT3, INTO), whose frame already points past the instruction. Anything
 * else prints `GUEST: unexpected #UD at 0x...` and exits with status 1. */
void trap_default(const char *guest, uintptr_t vector, uintptr_t error,
                  uintptr_t *ip, uintptr_t cs);

#endif
