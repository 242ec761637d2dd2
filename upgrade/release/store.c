/*
 * The firmware image store: content-addressed files DIR/sha256/<first 2 hex>/<64 hex>, what
 * ingest serves. A file appears under its final name only once its bytes were checked against
 * the manifest and are on disk (temporary file in DIR/tmp, fsync, rename, fsync of the
 * directory), so a reader never sees a partial or unverified image.
 */
#include "release_internal.h"

#include "common/alloc.h"
#include "common/log.h"
#include "upgrade/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directories readable by the daemons that serve the images. */
#define DIR_MODE 0755
#define FILE_MODE 0644

static int make_dir(const char *path)
{
    struct stat st;
    if (mkdir(path, DIR_MODE) == 0 ||
        (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    mh_log(MH_LOG_ERROR, "store: %s: cannot create the directory: %s", path, strerror(errno));
    return -1;
}

static char *path_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *path_of(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = mh_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int upg_rel_store_image(const char *store, const char *image_path, int64_t size, const char *sha256,
                        char **stored_path)
{
    int rc = -1, fd = -1;
    char two[3] = {sha256[0], sha256[1], '\0'};
    char *tmp_dir = path_of("%s/tmp", store);
    char *top = path_of("%s/sha256", store);
    char *dir = path_of("%s/sha256/%s", store, two);
    /* The layout is upg_store_path's, the one ingest serves from. */
    size_t final_len = strlen(store) + sizeof("/sha256/xx/") + MH_RELEASE_HASH_HEX;
    char *final = mh_malloc(final_len);
    char *tmp = path_of("%s/tmp/%s.XXXXXX", store, sha256);
    char got[MH_RELEASE_HASH_HEX + 1], have[MH_RELEASE_HASH_HEX + 1];
    int64_t got_size = 0, have_size = 0;
    bool tmp_made = false;

    *stored_path = NULL;
    if (upg_store_path(store, sha256, final, final_len) != 0) {
        mh_log(MH_LOG_ERROR, "store: no path for digest %.64s", sha256);
        goto fail;
    }
    if (make_dir(store) != 0 || make_dir(tmp_dir) != 0)
        goto fail;
    fd = mkstemp(tmp);
    if (fd < 0) {
        mh_log(MH_LOG_ERROR, "store: %s: cannot create a temporary file: %s", tmp_dir,
               strerror(errno));
        goto fail;
    }
    tmp_made = true;
    if (fchmod(fd, FILE_MODE) != 0) {
        mh_log(MH_LOG_ERROR, "store: %s: %s", tmp, strerror(errno));
        goto fail;
    }
    /* One pass: hash and copy. The bytes stored are the bytes checked, whatever happens to
     * the image file meanwhile. */
    if (upg_rel_hash_file(image_path, "image", size, fd, got, &got_size) != 0)
        goto fail;
    if (got_size != size) {
        if (got_size > size)
            mh_log(MH_LOG_ERROR, "image %s: larger than the manifest's size, %lld bytes",
                   image_path, (long long)size);
        else
            mh_log(MH_LOG_ERROR, "image %s: %lld bytes, the manifest says %lld", image_path,
                   (long long)got_size, (long long)size);
        goto fail;
    }
    if (strcmp(got, sha256) != 0) {
        mh_log(MH_LOG_ERROR, "image %s: SHA-256 %s, the manifest says %s", image_path, got, sha256);
        goto fail;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        mh_log(MH_LOG_ERROR, "store: %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;

    if (make_dir(top) != 0 || make_dir(dir) != 0)
        goto fail;
    if (access(final, F_OK) == 0) {
        /* Content-addressed: a file that hashes to its name is this image already. */
        if (upg_rel_hash_file(final, "stored image", size, -1, have, &have_size) == 0 &&
            have_size == size && strcmp(have, sha256) == 0) {
            mh_log(MH_LOG_INFO, "store: %s already holds this image", final);
            *stored_path = final;
            final = NULL;
            rc = 0;
            goto fail;
        }
        mh_log(MH_LOG_WARN, "store: %s does not hash to its name: replaced", final);
    }
    if (rename(tmp, final) != 0) {
        mh_log(MH_LOG_ERROR, "store: %s: %s", final, strerror(errno));
        goto fail;
    }
    tmp_made = false;
    if (upg_rel_fsync_dir(dir) != 0)
        goto fail;
    *stored_path = final;
    final = NULL;
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    if (tmp_made)
        unlink(tmp);
    free(tmp);
    free(final);
    free(dir);
    free(top);
    free(tmp_dir);
    return rc;
}
