#include "fileio.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mh_read_text_file(const char *path, size_t max)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        mh_log(MH_LOG_ERROR, "%s: %s", path, strerror(errno));
        goto fail;
    }
    buf = mh_malloc(max + 1);
    size_t n = fread(buf, 1, max + 1, f);
    if (ferror(f)) {
        mh_log(MH_LOG_ERROR, "%s: read error", path);
        goto fail;
    }
    if (n > max) {
        mh_log(MH_LOG_ERROR, "%s: larger than %zu bytes", path, max);
        goto fail;
    }
    buf[n] = '\0';
    if (strlen(buf) != n) {
        mh_log(MH_LOG_ERROR, "%s: contains a NUL byte", path);
        goto fail;
    }
    fclose(f);
    return buf;
fail:
    free(buf);
    if (f != NULL)
        fclose(f);
    return NULL;
}
