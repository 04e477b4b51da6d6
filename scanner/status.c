/* popek — status names and error formatting. */
#include "popek/status.h"

#include <stdio.h>

const char *pk_status_str(pk_status status)
{
    switch (status) {
    case PK_OK: return "success";
    case PK_ERR_USAGE: return "bad usage";
    case PK_ERR_IO: return "cannot read";
    case PK_ERR_FORMAT: return "malformed input";
    case PK_ERR_UNSUPPORTED: return "unsupported input";
    case PK_ERR_NOMEM: return "out of memory";
    case PK_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

pk_status pk_fail(pk_error *err, pk_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}
