/* popek — small output helpers shared by the report writers. */
#include "internal/text.h"

#include <string.h>

void pk_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\r': fputs("\\r", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

void pk_write_wrapped(FILE *out, const char *s, unsigned indent, unsigned width)
{
    unsigned col = indent;
    while (*s) {
        while (*s == ' ')
            s++;
        size_t word = strcspn(s, " ");
        if (!word)
            break;
        if (col > indent && col + 1 + word > width) {
            fprintf(out, "\n%*s", (int)indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fwrite(s, 1, word, out);
        col += (unsigned)word;
        s += word;
    }
    fputc('\n', out);
}
