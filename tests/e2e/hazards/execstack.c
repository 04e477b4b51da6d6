/* gcc nested-function trampolines (executable stack), called from deep in the stack. */
#include <stdio.h>
#include <string.h>
static int apply(int (*f)(int), int x) { return f(x); }
static int deep(int depth, int k)
{
    int add(int x) { return x + k; }          /* needs a trampoline on the stack */
    volatile char pad[64 * 1024];
    memset((char *)pad, depth, sizeof pad);
    if (depth)
        return deep(depth - 1, k) + pad[100] * 0;
    return apply(add, 1);
}
int main(void)
{
    setvbuf(stdout, 0, _IONBF, 0);
    printf("shallow %d\n", deep(0, 41));
    printf("deep %d\n", deep(40, 41));    /* ~2.5 MiB below the initial stack */
    return 0;
}
