/* popek — arrays of addresses: growing, sorting, searching. */
#ifndef POPEK_INTERNAL_SEARCH_H
#define POPEK_INTERNAL_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Appends a to *v (*n entries, grown by doubling); false when out of
 * memory, leaving *v as it was. */
static inline bool pk_push_address(uint64_t **v, size_t *n, uint64_t a)
{
    if ((*n & (*n - 1)) == 0) { /* 0 or a power of two: the array is full */
        uint64_t *grown = realloc(*v, (*n ? 2 * *n : 1) * sizeof *grown);
        if (!grown)
            return false;
        *v = grown;
    }
    (*v)[(*n)++] = a;
    return true;
}

/* A qsort comparison of addresses. */
static inline int pk_compare_addresses(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The index of the first of v[0, n) (sorted) that is at least key, or n. */
static inline size_t pk_lower_bound(const uint64_t *v, size_t n, uint64_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* True when some element of v[0, n) (sorted) lies in [lo, hi). */
static inline bool pk_any_in(const uint64_t *v, size_t n, uint64_t lo, uint64_t hi)
{
    size_t i = pk_lower_bound(v, n, lo);
    return i < n && v[i] < hi;
}

#endif
