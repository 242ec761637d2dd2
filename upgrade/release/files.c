/* Files: written whole or not at all, never over an existing one; read with a bound. */
#include "release_internal.h"

#include "common/alloc.h"
#include "common/ids.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int upg_rel_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        mh_log(MH_LOG_ERROR, "%s: fsync: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int upg_rel_write_new(const char *path, const void *buf, size_t len, unsigned mode)
{
    int rc = -1, fd = -1;
    size_t plen = strlen(path);
    char *tmp = mh_malloc(plen + sizeof(".tmp.XXXXXX"));
    char *dcopy = mh_strdup(path);
    bool linked = false;

    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
    fd = mkstemp(tmp);
    if (fd < 0) {
        mh_log(MH_LOG_ERROR, "%s: cannot create a temporary file: %s", path, strerror(errno));
        tmp[0] = '\0';
        goto fail;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        mh_log(MH_LOG_ERROR, "%s: cannot write: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        mh_log(MH_LOG_ERROR, "%s: cannot write: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    /* link(2), unlike rename(2), fails when the target exists: no overwrite, even in a race. */
    if (link(tmp, path) != 0) {
        if (errno == EEXIST)
            mh_log(MH_LOG_ERROR, "%s: already exists; not overwritten", path);
        else
            mh_log(MH_LOG_ERROR, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    linked = true;
    if (upg_rel_fsync_dir(dirname(dcopy)) != 0)
        goto fail;
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0')
        unlink(tmp);
    if (rc != 0 && linked)
        unlink(path);
    free(dcopy);
    free(tmp);
    return rc;
}

/* Images are read in chunks of this size: large enough for few system calls, small enough to
 * keep the memory of a 256 MiB image out of the process. */
#define CHUNK (1u << 20)

int upg_rel_hash_file(const char *path, const char *what, int64_t max, int copy_fd,
                      char sha256[MH_RELEASE_HASH_HEX + 1], int64_t *size)
{
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t *buf = mh_malloc(CHUNK);
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    struct stat st;
    int64_t total = 0;

    *size = 0;
    if (fd < 0) {
        mh_log(MH_LOG_ERROR, "%s %s: %s", what, path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        mh_log(MH_LOG_ERROR, "%s %s: not a regular file", what, path);
        goto fail;
    }
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "SHA-256");
        goto fail;
    }
    while (total <= max) {
        size_t want = CHUNK;
        if ((int64_t)want > max + 1 - total)
            want = (size_t)(max + 1 - total);
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mh_log(MH_LOG_ERROR, "%s %s: %s", what, path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
            mh_log_openssl(MH_LOG_ERROR, "SHA-256");
            goto fail;
        }
        if (copy_fd >= 0 && write_all(copy_fd, buf, (size_t)n) != 0) {
            mh_log(MH_LOG_ERROR, "%s %s: cannot copy: %s", what, path, strerror(errno));
            goto fail;
        }
        total += n;
    }
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 32) {
        mh_log_openssl(MH_LOG_ERROR, "SHA-256");
        goto fail;
    }
    mh_hex_encode(digest, dlen, sha256);
    *size = total;
    rc = 0;
fail:
    free(buf);
    EVP_MD_CTX_free(md);
    if (fd >= 0)
        close(fd);
    return rc;
}
