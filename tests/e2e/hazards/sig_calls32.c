/* sig_calls.c as an i386 program (the old calls). */
#include "sig_calls.c"
