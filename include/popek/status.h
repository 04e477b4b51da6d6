/* popek — status codes and error reporting shared by every component. */
#ifndef POPEK_STATUS_H
#define POPEK_STATUS_H

#include <stdarg.h>
#include <stddef.h>

/* Every exported function returns a pk_status: PK_OK or a negative error. */
typedef enum pk_status {
    PK_OK = 0,
    PK_ERR_USAGE = -1,       /* a caller passed bad arguments or options */
    PK_ERR_IO = -2,          /* the input could not be opened or read */
    PK_ERR_FORMAT = -3,      /* the input is malformed (truncated, corrupt) */
    PK_ERR_UNSUPPORTED = -4, /* well-formed, but not something popek handles */
    PK_ERR_NOMEM = -5,       /* out of memory */
    PK_ERR_INTERNAL = -6,    /* a library popek uses failed unexpectedly */
} pk_status;

/* Human-readable reason for a failure, filled by the function that failed. */
typedef struct pk_error {
    char msg[512];
} pk_error;

/* Returns a short name for a status ("format error", ...); never NULL. */
const char *pk_status_str(pk_status status);

/* Fills err (when not NULL) with a printf-style message and returns status,
 * so that a failing path reads `return pk_fail(err, PK_ERR_FORMAT, "...")`. */
pk_status pk_fail(pk_error *err, pk_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Evaluates expr once and returns its status from the caller on failure. */
#define PK_CHECK(expr)                                                         \
    do {                                                                       \
        pk_status pk_check_status_ = (expr);                                   \
        if (pk_check_status_ != PK_OK)                                         \
            return pk_check_status_;                                           \
    } while (0)

#endif
