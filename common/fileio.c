#include "fileio.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *mh_read_file(const char *path, size_t max, const char *what, size_t *len)
{
    char *buf = NULL;
    struct stat st;
    size_t n = 0, cap = 0;
    const char *sep = what != NULL ? " " : "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    what = what != NULL ? what : "";
    *len = 0;
    if (fd < 0) {
        mh_log(MH_LOG_ERROR, "%s%s%s: %s", what, sep, path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        mh_log(MH_LOG_ERROR, "%s%s%s: not a regular file", what, sep, path);
        goto fail;
    }
    /* Sized by the file, grown should it grow meanwhile; one byte more than allowed is read
     * to tell "exactly max" from "too large". */
    cap = (size_t)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
    buf = mh_malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap == max + 1)
                break;
            cap = cap * 2 < max + 1 ? cap * 2 : max + 1;
            buf = mh_realloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            mh_log(MH_LOG_ERROR, "%s%s%s: %s", what, sep, path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        mh_log(MH_LOG_ERROR, "%s%s%s: larger than %zu bytes", what, sep, path, max);
        goto fail;
    }
    buf[n] = '\0';
    close(fd);
    *len = n;
    return buf;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

char *mh_read_text_file(const char *path, size_t max)
{
    size_t n;
    char *buf = mh_read_file(path, max, NULL, &n);
    if (buf != NULL && strlen(buf) != n) {
        mh_log(MH_LOG_ERROR, "%s: contains a NUL byte", path);
        free(buf);
        return NULL;
    }
    return buf;
}
