#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t size)
{
    fprintf(stderr, "meterhub: out of memory allocating %zu bytes\n", size);
    abort();
}

void *mh_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *mh_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *mh_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

char *mh_strdup(const char *s)
{
    return mh_strndup(s, strlen(s));
}

char *mh_strndup(const char *s, size_t n)
{
    char *p = mh_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
