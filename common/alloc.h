#ifndef MH_ALLOC_H
#define MH_ALLOC_H

/*
 * Allocation wrappers. An allocation failure aborts the process through one place: a daemon
 * that cannot allocate a few bytes cannot keep any promise it made to a meter, and failing
 * loudly is better than half-handling it at every call site.
 */

#include <stddef.h>

/* Like malloc/calloc/realloc/strdup, but never return NULL. Result owned by the caller. */
void *mh_malloc(size_t size);
void *mh_calloc(size_t n, size_t size);
void *mh_realloc(void *ptr, size_t size);
char *mh_strdup(const char *s);
char *mh_strndup(const char *s, size_t n);

#endif
