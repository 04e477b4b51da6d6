/* popek — binary search over sorted addresses. */
#ifndef POPEK_INTERNAL_SEARCH_H
#define POPEK_INTERNAL_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
