/* popek — writing scan results and the catalog for people and scripts. */
#ifndef POPEK_REPORT_H
#define POPEK_REPORT_H

#include <stdio.h>

#include "popek/catalog.h"
#include "popek/image.h"
#include "popek/patch.h"
#include "popek/scan.h"

typedef enum pk_format {
    PK_FORMAT_TEXT,
    PK_FORMAT_JSON,      /* one JSON object per line; see docs/scan-json.md */
    PK_FORMAT_MARKDOWN,  /* explain only */
} pk_format;

typedef struct pk_report_options {
    pk_format format;
    ZydisFormatterStyle syntax;  /* ZYDIS_FORMATTER_STYLE_INTEL or _ATT */
    unsigned sweeps;             /* PK_FOUND_* bits the scan ran */
} pk_report_options;

/* Writes every site of scan, then the summaries per row and per region. */
pk_status pk_report_scan(FILE *out, const pk_image *img, const pk_scan *scan,
                         const pk_report_options *opts, pk_error *err);

/* Writes what `popek patch` did to img (into the file written): the sites
 * left out with their reasons; with full, the patches per tactic, why sites
 * took no jump, and the patches per row (text); or, as JSON, one object per
 * patch and per skip and a summary. */
void pk_report_patch(FILE *out, const pk_image *img, const pk_plan *plan, pk_format format,
                     bool full, const char *written);

/* Writes the catalog: every row of the given sets as a table (text), as
 * docs/catalog.md (markdown) or one object per row (json); or, when row is
 * not NULL, that row in full. */
void pk_report_catalog(FILE *out, pk_format format, unsigned sets, const pk_class *row);

#endif
