/* popek — unit tests: the linear sweep, recursive descent, padding, and the
 * parallel sweep's identity with the reference sequential sweep. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "popek/popek.h"

static pk_image load(const uint8_t *code, size_t len, unsigned bits, uint64_t base)
{
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_raw_memory(&img, code, len, "test", bits, base, &err), PK_OK,
                 "%s", err.msg);
    return img;
}

static pk_scan scan(pk_image *img, unsigned sweeps, unsigned sets)
{
    pk_scan s;
    pk_error err;
    pk_scan_options o = { .sets = sets, .sweeps = sweeps };
    cr_assert_eq(pk_scan_image(img, &o, &s, &err), PK_OK, "%s", err.msg);
    return s;
}

static void add_root(pk_image *img, uint64_t addr)
{
    img->symbols = realloc(img->symbols, (img->nsymbols + 1) * sizeof *img->symbols);
    img->symbols[img->nsymbols++] = (pk_symbol){ .addr = addr, .name = strdup("f"), .func = true };
}

/* The sites of a scan as "addr:row:found" text, for readable asserts. */
static const char *sites_text(const pk_scan *s)
{
    static char buf[2048];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < s->nsites; i++)
        n += snprintf(buf + n, sizeof buf - n, "%s%llx:%s:%u", i ? " " : "",
                      (unsigned long long)s->sites[i].vaddr,
                      pk_class_get((pk_class_id)s->sites[i].cls)->key, s->sites[i].found);
    return buf;
}

Test(sweep, data_in_code_linear_and_recursive)
{
    /* 0: push rbp; pushfq; popfq; pop rbp; ret | 5 bytes of data | 0f 01 00: sgdt [rax] */
    static const uint8_t code[] = { 0x55, 0x9c, 0x9d, 0x5d, 0xc3,
                                    0xff, 0xff, 0xff, 0xff, 0xc3,
                                    0x0f, 0x01, 0x00, 0xc3 };
    pk_image img = load(code, sizeof code, 64, 0x1000);
    add_root(&img, 0x1000);
    pk_scan s = scan(&img, 0, PK_SET_PG);
    /* Recursive descent stops at the ret: SGDT is found by the linear sweep only. */
    cr_assert_str_eq(sites_text(&s), "1001:pushf:3 1002:popf:3 100a:sgdt:1");
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, jump_into_the_middle_of_an_instruction)
{
    /* jmp +1; then b8 9c 9d 90 90 reads as mov eax, imm32 to the linear
     * sweep, while the jump lands on 9c 9d (pushf; popf). */
    static const uint8_t code[] = { 0xeb, 0x01, 0xb8, 0x9c, 0x9d, 0x90, 0x90, 0xc3 };
    pk_image img = load(code, sizeof code, 32, 0x400000);
    add_root(&img, 0x400000);
    pk_scan s = scan(&img, 0, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "400003:pushf:2 400004:popf:2");
    pk_scan_free(&s);
    s = scan(&img, PK_FOUND_LINEAR, PK_SET_PG);
    cr_assert_eq(s.nsites, 0);
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, overlapping_paths_report_each_site_once)
{
    /* Two roots reach the same PUSHF; a conditional branch and a call are
     * followed both ways. */
    static const uint8_t code[] = {
        0x74, 0x02,             /* 0: je 4 */
        0xcd, 0x21,             /* 2: int 0x21 */
        0xe8, 0x01, 0, 0, 0,    /* 4: call 0xa */
        0xc3,                   /* 9: ret */
        0x9c,                   /* a: pushf */
        0x0e,                   /* b: push cs */
        0xcb,                   /* c: retf */
    };
    pk_image img = load(code, sizeof code, 32, 0);
    add_root(&img, 0);
    add_root(&img, 0xa);
    pk_scan s = scan(&img, 0, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "2:int:3 a:pushf:3 b:push-sreg:3 c:ret-far:3");
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, undecodable_bytes_resynchronise)
{
    /* 06 is PUSH ES in 32-bit code, invalid in 64-bit code. */
    static const uint8_t code[] = { 0x06, 0x06, 0x9c, 0xc3 };
    pk_image img = load(code, sizeof code, 64, 0);
    pk_scan s = scan(&img, PK_FOUND_LINEAR, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "2:pushf:1");
    cr_assert_eq(s.stats[0].undecodable, 2);
    cr_assert_eq(s.stats[0].instructions, 2);
    pk_scan_free(&s);
    pk_image_free(&img);
    img = load(code, sizeof code, 32, 0);
    s = scan(&img, PK_FOUND_LINEAR, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "0:push-sreg:1 1:push-sreg:1 2:pushf:1");
    cr_assert_eq(s.stats[0].undecodable, 0);
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, int3_padding_is_counted_apart)
{
    uint8_t code[48];
    memset(code, 0xcc, sizeof code);
    code[0] = 0xc3;         /* ret; then int3 x 15 up to 0x10: padding */
    code[16] = 0x90;        /* nop; int3 at 0x11 ends at 0x12: a real INT3 */
    code[18] = 0x9c;        /* pushf; CC from 0x13 to the end: padding */
    pk_image img = load(code, sizeof code, 64, 0);
    pk_scan s = scan(&img, PK_FOUND_LINEAR, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "11:int3:1 12:pushf:1");
    cr_assert_eq(s.stats[0].padding_bytes, 15 + 29);
    cr_assert_eq(s.stats[0].padding_runs, 2);
    cr_assert_eq(s.stats[0].instructions, 48); /* all one-byte instructions */
    pk_scan_free(&s);

    /* A prefixed INT3 (66 cc) is an instruction, never padding. */
    code[0x20] = 0x66;
    pk_image_free(&img);
    img = load(code, sizeof code, 64, 0);
    s = scan(&img, PK_FOUND_LINEAR, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "11:int3:1 12:pushf:1 20:int3:1");
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, sets_and_only_filter_rows)
{
    static const uint8_t code[] = { 0x9c, 0xfa, 0x0f, 0xa2, 0x0f, 0x05, 0xc3 };
    pk_image img = load(code, sizeof code, 64, 0);
    pk_scan s = scan(&img, PK_FOUND_LINEAR, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "0:pushf:1");
    pk_scan_free(&s);
    s = scan(&img, PK_FOUND_LINEAR, PK_SET_ALL);
    cr_assert_str_eq(sites_text(&s), "0:pushf:1 1:cli:1 2:cpuid:1 4:syscall:1");
    pk_scan_free(&s);
    bool only[PK_CLASS_COUNT] = { [PK_CLASS_CPUID] = true };
    pk_scan_options o = { .only = only, .sweeps = PK_FOUND_LINEAR };
    pk_error err;
    cr_assert_eq(pk_scan_image(&img, &o, &s, &err), PK_OK);
    cr_assert_str_eq(sites_text(&s), "2:cpuid:1");
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, relocatable_sections_at_zero_stay_apart)
{
    /* Recursive descent prefers targets in the branch's own region. */
    static const uint8_t code[] = { 0xeb, 0x00, 0x9c, 0xc3 };
    pk_image img = load(code, sizeof code, 64, 0);
    add_root(&img, 0);
    pk_scan s = scan(&img, PK_FOUND_RECURSIVE, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "2:pushf:2");
    cr_assert_eq(s.stats[0].reached, 3);
    pk_scan_free(&s);
    pk_image_free(&img);
}

/* ---- the parallel sweep equals the reference sweep --------------------------- */

static void expect_identical(pk_image *img, unsigned threads, uint64_t chunk, unsigned seed)
{
    pk_error err;
    pk_scan_options o = { .sets = PK_SET_ALL, .sweeps = PK_FOUND_LINEAR, .threads = threads,
                          .chunk_size = chunk };
    pk_scan fast, ref;
    cr_assert_eq(pk_scan_image(img, &o, &fast, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_scan_region_reference(img, 0, &o, &ref, &err), PK_OK, "%s", err.msg);
#define REPLAY "replay: seed %u threads %u chunk %llu", seed, threads, (unsigned long long)chunk
    cr_assert_eq(fast.nsites, ref.nsites, REPLAY);
    for (size_t i = 0; i < ref.nsites; i++) {
        cr_assert_eq(fast.sites[i].vaddr, ref.sites[i].vaddr, REPLAY);
        cr_assert_eq(fast.sites[i].cls, ref.sites[i].cls, REPLAY);
        cr_assert_eq(fast.sites[i].len, ref.sites[i].len, REPLAY);
    }
    cr_assert_eq(fast.stats[0].instructions, ref.stats[0].instructions, REPLAY);
    cr_assert_eq(fast.stats[0].undecodable, ref.stats[0].undecodable, REPLAY);
    cr_assert_eq(fast.stats[0].padding_bytes, ref.stats[0].padding_bytes, REPLAY);
    cr_assert_eq(fast.stats[0].padding_runs, ref.stats[0].padding_runs, REPLAY);
#undef REPLAY
    pk_scan_free(&fast);
    pk_scan_free(&ref);
}

/* Random bytes, biased towards catalog opcodes, CC runs and prefixes so that
 * chunk boundaries fall inside runs, long instructions and garbage. */
static uint8_t *random_code(unsigned seed, size_t len)
{
    static const uint8_t interesting[] = { 0x9c, 0x9d, 0x0f, 0x01, 0x00, 0x66, 0x48, 0xcd,
                                           0x8c, 0x8e, 0xfa, 0xfb, 0x90, 0xc3, 0xe8, 0xff };
    uint8_t *b = malloc(len);
    srand(seed);
    for (size_t i = 0; i < len;) {
        int r = rand() % 16;
        if (r == 0) { /* a CC run */
            size_t n = 1 + rand() % 40;
            for (size_t k = 0; k < n && i < len; k++)
                b[i++] = 0xcc;
        } else if (r < 6) {
            b[i++] = interesting[rand() % sizeof interesting];
        } else {
            b[i++] = (uint8_t)rand();
        }
    }
    return b;
}

Test(sweep, parallel_sweep_equals_reference_on_random_code, .timeout = 60)
{
    static const uint64_t chunks[] = { 1, 7, 64, 333, 4096, 5000 };
    static const unsigned bits[] = { 16, 32, 64 };
    for (unsigned seed = 1; seed <= 12; seed++) {
        size_t len = 20000 + seed * 997;
        uint8_t *code = random_code(seed, len);
        pk_image img = load(code, len, bits[seed % 3], 0x10000 + seed);
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
            for (unsigned t = 1; t <= 4; t++)
                expect_identical(&img, t, chunks[c], seed);
        pk_image_free(&img);
        free(code);
    }
}

Test(sweep, parallel_sweep_equals_reference_on_libc, .timeout = 120)
{
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_file(&img, "/lib/x86_64-linux-gnu/libc.so.6", &err), PK_OK,
                 "%s", err.msg);
    /* Region by region, as raw code, so the reference covers each. */
    for (size_t r = 0; r < img.nregions; r++) {
        pk_image one = load(img.regions[r].bytes, img.regions[r].size, 64, img.regions[r].vaddr);
        expect_identical(&one, 2, 4096, 0);
        expect_identical(&one, 3, 65536, 0);
        pk_image_free(&one);
    }
    pk_image_free(&img);
}

Test(sweep, recursive_descent_stops_at_padding)
{
    /* call to a function that does not return, then padding up to the next
     * function: recursive descent must not walk (and list) the padding, but
     * a breakpoint INT3 in straight-line code is listed and passed. */
    uint8_t code[32];
    memset(code, 0xcc, sizeof code);
    static const uint8_t head[] = { 0xcc, 0x9c, 0xe8, 0x09, 0, 0, 0 }; /* int3; pushf; call 0x10 */
    memcpy(code, head, sizeof head);
    code[0x10] = 0x0f; /* 0x10: ud2 */
    code[0x11] = 0x0b;
    pk_image img = load(code, sizeof code, 64, 0);
    add_root(&img, 0);
    pk_scan s = scan(&img, PK_FOUND_RECURSIVE, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "0:int3:2 1:pushf:2");
    cr_assert_eq(s.stats[0].reached, 4);
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, recursive_only_sites_merge_in_address_order)
{
    /* Three "mov eax, 0x9090909c" whose second bytes are also entered as
     * functions (PUSHF, recursive only), then three PUSHF both sweeps see. */
    uint8_t code[18];
    for (int i = 0; i < 3; i++)
        memcpy(code + 5 * i, (const uint8_t[]){ 0xb8, 0x9c, 0x90, 0x90, 0x90 }, 5);
    memset(code + 15, 0x9c, 3);
    pk_image img = load(code, sizeof code, 64, 0);
    for (int i = 0; i < 3; i++)
        add_root(&img, 5 * i + 1);
    add_root(&img, 15);
    pk_scan s = scan(&img, 0, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "1:pushf:2 6:pushf:2 b:pushf:2 f:pushf:3 10:pushf:3 "
                                     "11:pushf:3");
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, branch_targets_wrap_at_the_operand_size)
{
    /* 32-bit code at 0x10000: 66 e9 0c 00 is a jump with a 16-bit operand
     * size, to (EIP + 4 + 0xc) AND 0xFFFF = 0x10, outside the code; the
     * PUSHF at 0x10010 stays unreachable. */
    uint8_t code[32];
    memset(code, 0x90, sizeof code);
    memcpy(code, (const uint8_t[]){ 0x66, 0xe9, 0x0c, 0x00 }, 4);
    code[0x10] = 0x9c;
    code[0x11] = 0xc3;
    pk_image img = load(code, sizeof code, 32, 0x10000);
    add_root(&img, 0x10000);
    pk_scan s = scan(&img, PK_FOUND_RECURSIVE, PK_SET_PG);
    cr_assert_eq(s.nsites, 0, "%s", sites_text(&s));
    cr_assert_eq(s.stats[0].reached, 1);
    pk_scan_free(&s);
    pk_image_free(&img);

    /* 16-bit code at 0xfff0 in a segment based at 0: 66 e9 rel32 takes a
     * 32-bit IP past 0xffff, to 0x10016. */
    uint8_t code16[0x30];
    memset(code16, 0x90, sizeof code16);
    memcpy(code16, (const uint8_t[]){ 0x66, 0xe9, 0x20, 0x00, 0x00, 0x00 }, 6);
    code16[0x26] = 0x9c;
    code16[0x27] = 0xc3;
    img = load(code16, sizeof code16, 16, 0xfff0);
    add_root(&img, 0xfff0);
    s = scan(&img, PK_FOUND_RECURSIVE, PK_SET_PG);
    cr_assert_str_eq(sites_text(&s), "10016:pushf:2");
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, chunk_sizes_at_the_limits)
{
    static const uint8_t code[] = { 0x9c, 0x9d, 0xc3 };
    pk_image img = load(code, sizeof code, 64, 0);
    expect_identical(&img, 2, UINT64_MAX, 0);
    expect_identical(&img, 2, UINT64_MAX - 1, 0);
    expect_identical(&img, 3, 1, 0);
    pk_image_free(&img);
}

/* ---- what the sweeps note for the patcher (pk_scan_options.flow) ------------ */

static pk_scan scan_flow(pk_image *img, unsigned sweeps, unsigned threads, uint64_t chunk)
{
    pk_scan s;
    pk_error err;
    pk_scan_options o = { .sweeps = sweeps, .flow = true, .threads = threads,
                          .chunk_size = chunk };
    cr_assert_eq(pk_scan_image(img, &o, &s, &err), PK_OK, "%s", err.msg);
    return s;
}

Test(sweep, flow_notes_the_code_addresses_instructions_name)
{
    uint8_t code[0x60];
    memset(code, 0x90, sizeof code);
    static const uint8_t head[] = {
        0xe8, 0x1b, 0x00, 0x00, 0x00,             /* 1000: call 0x1020 */
        0x48, 0x8d, 0x05, 0x24, 0x00, 0x00, 0x00, /* 1005: lea rax, [rip+0x24] = 0x1030 */
        0xbf, 0x40, 0x10, 0x00, 0x00,             /* 100c: mov edi, 0x1040 */
        0xff, 0xe0,                               /* 1011: jmp rax */
        0xff, 0x25, 0x00, 0x10, 0x00, 0x00,       /* 1013: jmp [0x2019]: a tail call */
        0x74, 0x35,                               /* 1019: jz 0x1050 */
        0xb8, 0x00, 0x00, 0x01, 0x00,             /* 101b: mov eax, 0x10000: not code */
    };
    memcpy(code, head, sizeof head);
    pk_image img = load(code, sizeof code, 64, 0x1000);
    add_root(&img, 0x1000);
    pk_scan s = scan_flow(&img, 0, 0, 0);
    static const uint64_t named[] = { 0x1020, 0x1030, 0x1040, 0x1050 };
    for (unsigned i = 0; i < 4; i++)
        cr_assert(pk_scan_has_target(&s, named[i], named[i] + 1), "0x%llx",
                  (unsigned long long)named[i]);
    cr_assert_not(pk_scan_has_target(&s, 0x1000, 0x1020));
    cr_assert_not(pk_scan_has_target(&s, 0x1021, 0x1030));
    cr_assert_eq(s.nopaque_jumps, 1, "jmp rax; not the jump through a fixed pointer");
    cr_assert_eq(s.opaque_jumps[0], 0x1011);
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, flow_notes_of_32_bit_code_high_in_memory)
{
    /* push $0xd0000010 is sign-extended to 64 bits by the decoder; the code
     * address is the low 32 (an i386 kernel lives at 0xc0000000 and up). */
    uint8_t code[0x20];
    memset(code, 0x90, sizeof code);
    static const uint8_t push[] = { 0x68, 0x10, 0x00, 0x00, 0xd0 };
    memcpy(code, push, sizeof push);
    pk_image img = load(code, sizeof code, 32, 0xd0000000);
    pk_scan s = scan_flow(&img, PK_FOUND_LINEAR, 0, 0);
    cr_assert(pk_scan_has_target(&s, 0xd0000010, 0xd0000011));
    pk_scan_free(&s);
    pk_image_free(&img);
}

Test(sweep, flow_notes_of_the_parallel_sweep_equal_a_sequential_one, .timeout = 60)
{
    static const uint64_t chunks[] = { 1, 7, 333, 4096 };
    for (unsigned seed = 1; seed <= 6; seed++) {
        size_t len = 20000 + seed * 997;
        uint8_t *code = random_code(seed, len);
        pk_image img = load(code, len, seed % 2 ? 64 : 32, 0x10000);
        pk_scan one = scan_flow(&img, PK_FOUND_LINEAR, 1, len);
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            pk_scan many = scan_flow(&img, PK_FOUND_LINEAR, 3, chunks[c]);
            cr_assert_eq(memcmp(many.targets[0], one.targets[0], len / 8 + 1), 0,
                         "seed %u chunk %llu", seed, (unsigned long long)chunks[c]);
            cr_assert_eq(many.nopaque_jumps, one.nopaque_jumps);
            cr_assert_eq(memcmp(many.opaque_jumps, one.opaque_jumps,
                                one.nopaque_jumps * sizeof *one.opaque_jumps), 0);
            pk_scan_free(&many);
        }
        pk_scan_free(&one);
        pk_image_free(&img);
        free(code);
    }
}
