/* popek — unit tests: JSON strings in the reports. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../scanner/internal/text.h"

static char *json(const char *s)
{
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    pk_json_string(f, s);
    fclose(f);
    return buf;
}

Test(text, json_escapes_and_keeps_utf8)
{
    char *j = json("a\"b\\c\n\t\x01 é ✓");
    cr_assert_str_eq(j, "\"a\\\"b\\\\c\\n\\t\\u0001 é ✓\"");
    free(j);
}

Test(text, json_replaces_bytes_that_are_not_utf8)
{
    /* A lone continuation byte, a truncated sequence, an overlong "/", a
     * UTF-16 surrogate, and a lead byte at the very end. */
    char *j = json("x\x80y\xe2\x9cz\xc0\xafw\xed\xa0\x80v\xf0");
    cr_assert_str_eq(j, "\"x\\ufffdy\\ufffd\\ufffdz\\ufffd\\ufffdw\\ufffd\\ufffd\\ufffdv\\ufffd\"");
    free(j);
}
