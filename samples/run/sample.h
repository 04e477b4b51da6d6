/* samples/run/sample.h — what the `popek run` samples share: a CHECK that
 * counts failures, the flag bits they print, and PUSHF and SGDT/SIDT
 * written so that they are safe in inline asm of ordinary user code.
 *
 * Every sample prints a transcript that is the same on every run (no
 * addresses, times or CPU numbers) and exits with 0 when every check
 * held, 1 otherwise (2 when a system call it needs failed); a failed check
 * prints a FAIL line, so the transcript shows it too. Values that depend on the CPU's UMIP (SGDT, SMSW, ...) are
 * printed, not checked: the .expected files pin them for this machine. */
#ifndef SAMPLES_RUN_SAMPLE_H
#define SAMPLES_RUN_SAMPLE_H

#include <stdint.h>
#include <stdio.h>

static int sample_failures;

#define CHECK(cond, ...) do {                                               \
        if (!(cond)) {                                                      \
            sample_failures++;                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                     \
            printf(__VA_ARGS__);                                            \
            putchar('\n');                                                  \
        }                                                                   \
    } while (0)

/* The exit status of main: 0 when every CHECK held. */
static inline int sample_status(void)
{
    return sample_failures ? 1 : 0;
}

#define FLAGS_CF   0x00000001u
#define FLAGS_TF   0x00000100u
#define FLAGS_IF   0x00000200u
#define FLAGS_DF   0x00000400u
#define FLAGS_IOPL 0x00003000u

static inline unsigned flags_if(uintptr_t f) { return (f & FLAGS_IF) ? 1 : 0; }
static inline unsigned flags_iopl(uintptr_t f) { return (f >> 12) & 3; }

/* Inline asm that pushes must first step over the x86-64 red zone: the
 * compiler may keep locals in the 128 bytes below RSP of a leaf function.
 * LEA moves RSP without touching the flags being pushed. 32-bit code has
 * no red zone. */
#ifdef __x86_64__
#define SKIP_RED_ZONE    "lea -128(%%rsp), %%rsp\n\t"
#define RESTORE_RED_ZONE "lea 128(%%rsp), %%rsp\n\t"
#else
#define SKIP_RED_ZONE    ""
#define RESTORE_RED_ZONE ""
#endif

/* PUSHF: not privileged, so at CPL 3 it shows the real IF (1) and IOPL (0)
 * without a trap; the monitor must patch it. */
static inline uintptr_t read_flags(void)
{
    uintptr_t f;
    __asm__ volatile(SKIP_RED_ZONE "pushf\n\tpop %0\n\t" RESTORE_RED_ZONE
                     : "=r"(f) : : "memory");
    return f;
}

/* The memory image of SGDT/SIDT: a 16-bit limit, then a base as wide as
 * the mode (6 bytes in 32-bit code, 10 in 64-bit code). */
typedef struct __attribute__((packed)) {
    uint16_t limit;
    uintptr_t base;
} table_reg;

static inline table_reg sgdt(void)
{
    table_reg r;
    __asm__ volatile("sgdt %0" : "=m"(r));
    return r;
}

static inline table_reg sidt(void)
{
    table_reg r;
    __asm__ volatile("sidt %0" : "=m"(r));
    return r;
}

/* The base printed as wide as the mode: 0x%016llx or 0x%08llx. */
#ifdef __x86_64__
#define BASE_DIGITS 16
#else
#define BASE_DIGITS 8
#endif

#endif
