#define _GNU_SOURCE
/* Signals the program sends itself to a thread that loops on PUSHF and
 * POPF, while a 1 ms SIGALRM keeps interrupting that thread (so that under
 * popek run --fast-path it is often being stepped out of a block when they
 * come): each SIGTRAP, SIGSEGV and SIGBUS sent with pthread_kill must reach
 * its handler once, with the siginfo pthread_kill gives (SI_TKILL). A sent
 * SIGSEGV is no fault to undo, and a signal that waits for a block must
 * keep its own siginfo. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static atomic_int handled, wrong_code, alarms, stop;

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (sig == SIGALRM) {
        alarms++;
        return;
    }
    handled++;
    if (si->si_code != SI_TKILL)
        wrong_code++;
}

static void *spin(void *arg)
{
    (void)arg;
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &alarm, NULL);
    while (!stop)
        __asm__ volatile("pushf\n\tnop\n\tnop\n\tnop\n\tnop\n\t"
                         "popf\n\tnop\n\tnop\n\tnop\n\tnop" ::: "memory", "cc");
    return NULL;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    static const int sent[] = { SIGTRAP, SIGSEGV, SIGBUS };
    for (int i = 0; i < 3; i++)
        sigaction(sent[i], &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    /* the timer's signals go to the spinning thread only */
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, NULL);
    pthread_t t;
    pthread_create(&t, NULL, spin, NULL);
    struct itimerval every = { { 0, 1000 }, { 0, 1000 } }, off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &every, NULL);
    int rounds = 900, late = 0;
    for (int i = 0; i < rounds; i++) {
        int before = handled;
        pthread_kill(t, sent[i % 3]);
        int waited = 0;
        while (handled == before && waited++ < 200000)
            usleep(10);
        late += handled == before;
    }
    setitimer(ITIMER_REAL, &off, NULL);
    stop = 1;
    pthread_join(t, NULL);
    printf("%d signals sent: %d handled, %d never, %d with another si_code\n", rounds,
           (int)handled, late, (int)wrong_code);
    return 0;
}
