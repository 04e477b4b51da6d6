/* sig_state.c as an i386 program. */
#include "sig_state.c"
