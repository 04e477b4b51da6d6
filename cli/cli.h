/* popek — what the subcommands of the command line share. */
#ifndef POPEK_CLI_H
#define POPEK_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "popek/popek.h"

enum { EXIT_BAD = 2 };

/* Reports bad usage on stderr and returns the exit status for it. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports a bad input ("popek: WHAT: reason") and returns EXIT_BAD. */
int input_error(const char *what, const pk_error *err);

/* A decimal, 0x hex or 0 octal number; strtoull alone would also take
 * leading blanks and a minus sign. */
bool parse_u64(const char *s, uint64_t *v);

/* Takes --set (is_only false) or --only into so; only[] holds the rows.
 * Returns 0, or reports bad usage and returns EXIT_BAD. */
int filter_option(bool is_only, const char *arg, pk_scan_options *so, bool only[PK_CLASS_COUNT]);

/* Flushes stdout; a failed write (a full disk, a closed pipe) is an error. */
int finish_output(void);

int cmd_boot(int argc, char **argv);
int cmd_run(int argc, char **argv);

#endif
