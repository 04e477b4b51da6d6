/* Patched sites and written code run while the program ignores, blocks or
 * handles SIGTRAP and SIGSEGV: its signal state stays as it set it. */
#include "signal_state.h"

static volatile int traps;

static void on_trap(int sig)
{
    (void)sig;
    site();
    traps++;
}

static void on_segv(int sig) { (void)sig; }

int main(void)
{
    signal(SIGTRAP, SIG_IGN);
    site();
    show("SIGTRAP ignored, site run", SIGTRAP);
    raise(SIGTRAP);
    printf("raise(SIGTRAP) ignored\n");

    signal(SIGTRAP, on_trap);
    block(SIGTRAP, SIG_BLOCK);
    site();
    show("SIGTRAP handled and blocked, site run", SIGTRAP);
    block(SIGTRAP, SIG_UNBLOCK);

    signal(SIGTRAP, SIG_DFL);
    block(SIGTRAP, SIG_BLOCK);
    site();
    show("SIGTRAP default and blocked, site run", SIGTRAP);
    block(SIGTRAP, SIG_UNBLOCK);

    signal(SIGTRAP, on_trap);
    raise(SIGTRAP);
    raise(SIGTRAP);
    printf("a site in the SIGTRAP handler: %d traps handled\n", traps);
    show("after the handler", SIGTRAP);

    signal(SIGSEGV, on_segv);
    block(SIGSEGV, SIG_BLOCK);
    run_written_code();
    show("SIGSEGV handled and blocked, written code run", SIGSEGV);
    block(SIGSEGV, SIG_UNBLOCK);

    signal(SIGSEGV, SIG_IGN);
    run_written_code();
    show("SIGSEGV ignored, written code run", SIGSEGV);
    signal(SIGSEGV, SIG_DFL);
    block(SIGSEGV, SIG_BLOCK);
    run_written_code();
    show("SIGSEGV default and blocked, written code run", SIGSEGV);
    return 0;
}
