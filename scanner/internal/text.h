/* popek — small output helpers shared by the report writers. */
#ifndef POPEK_INTERNAL_TEXT_H
#define POPEK_INTERNAL_TEXT_H

#include <stdio.h>

/* Writes s as a JSON string literal, quotes included. */
void pk_json_string(FILE *out, const char *s);

/* Writes s word-wrapped to width columns and ends the line. The caller has
 * already written the first line up to column indent; later lines are
 * indented by indent spaces. */
void pk_write_wrapped(FILE *out, const char *s, unsigned indent, unsigned width);

#endif
