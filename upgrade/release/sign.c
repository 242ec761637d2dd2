/*
 * sign: the manifest of an image and its Ed25519 signature. Runs offline: the release key
 * never needs to be on a machine that talks to the service.
 */
#include "release_internal.h"

#include "common/tool.h"
#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *concat(const char *a, const char *b)
{
    size_t len = strlen(a) + strlen(b) + 1;
    char *p = mh_malloc(len);
    snprintf(p, len, "%s%s", a, b);
    return p;
}

/* --notes-file: the file's bytes, without one final newline (editors add it). */
static char *read_notes(const char *path)
{
    size_t len = 0;
    char *text = mh_read_file(path, MH_RELEASE_MAX_NOTES + 1, "notes file", &len);
    if (text == NULL)
        return NULL;
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if (len > MH_RELEASE_MAX_NOTES) {
        mh_log(MH_LOG_ERROR, "notes file %s: longer than %d bytes", path, MH_RELEASE_MAX_NOTES);
        goto fail;
    }
    if (strlen(text) != len) {
        mh_log(MH_LOG_ERROR, "notes file %s: contains a NUL byte", path);
        goto fail;
    }
    return text;
fail:
    free(text);
    return NULL;
}

static void warn_if_exposed(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        mh_log(MH_LOG_WARN, "%s: private key accessible by group or others (mode %04o)", path,
               (unsigned)(st.st_mode & 07777));
}

int upg_rel_sign(const upg_rel_args_t *args)
{
    int rc = -1;
    char err[256];
    EVP_PKEY *key = NULL;
    mh_manifest_t m;
    uint8_t *bytes = NULL;
    size_t len = 0;
    uint8_t sig[MH_RELEASE_SIG_LEN];
    char *sig_b64 = NULL, *sig_line = NULL;
    const char *prefix = args->out != NULL ? args->out : args->image;
    char *manifest_path = concat(prefix, ".manifest");
    char *sig_path = concat(prefix, ".manifest.sig");
    char release[MH_RELEASE_ID_LEN + 1];
    bool wrote_manifest = false, wrote_sig = false;

    memset(&m, 0, sizeof(m));
    /* Refuse before reading a 256 MiB image for nothing. */
    const char *outputs[2] = {manifest_path, sig_path};
    for (size_t i = 0; i < 2; i++)
        if (access(outputs[i], F_OK) == 0) {
            mh_log(MH_LOG_ERROR, "%s: already exists; not overwritten", outputs[i]);
            goto fail;
        }

    warn_if_exposed(args->key);
    key = mh_release_load_private(args->key, err, sizeof(err));
    if (key == NULL) {
        mh_log(MH_LOG_ERROR, "release key: %s", err);
        goto fail;
    }
    if (mh_release_key_ids(key, NULL, m.key_id) != 0)
        goto fail;

    if (upg_rel_hash_file(args->image, "image", MH_RELEASE_MAX_SIZE, -1, m.sha256, &m.size) != 0)
        goto fail;
    if (m.size == 0 || m.size > MH_RELEASE_MAX_SIZE) {
        mh_log(MH_LOG_ERROR, "image %s: %s", args->image,
               m.size == 0 ? "empty" : "larger than 268435456 bytes (256 MiB)");
        goto fail;
    }

    snprintf(m.version, sizeof(m.version), "%s", args->version);
    snprintf(m.hardware, sizeof(m.hardware), "%s", args->hardware);
    if (args->notes_file != NULL) {
        m.notes = read_notes(args->notes_file);
        if (m.notes == NULL)
            goto fail;
    } else {
        m.notes = mh_strdup(args->notes != NULL ? args->notes : "");
    }
    m.issued = (int64_t)time(NULL);
    m.expires = m.issued + args->expires_s;

    if (mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)) != 0) {
        mh_log(MH_LOG_ERROR, "%s", err);
        goto fail;
    }
    if (mh_release_sign(key, bytes, len, sig, err, sizeof(err)) != 0 ||
        mh_release_verify(key, bytes, len, sig, err, sizeof(err)) != 0) {
        mh_log(MH_LOG_ERROR, "%s", err);
        goto fail;
    }
    sig_b64 = mh_base64_encode(sig, sizeof(sig));
    sig_line = concat(sig_b64, "\n");
    mh_release_id(bytes, len, release);

    if (upg_rel_write_new(manifest_path, bytes, len, 0644) != 0)
        goto fail;
    wrote_manifest = true;
    if (upg_rel_write_new(sig_path, sig_line, strlen(sig_line), 0644) != 0)
        goto fail;
    wrote_sig = true;
    rc = mh_tool_print_json(
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I}", "release", release,
                  "manifest", manifest_path, "signature", sig_path, "version", m.version,
                  "hardware", m.hardware, "size", (json_int_t)m.size, "sha256", m.sha256, "key_id",
                  m.key_id, "issued", (json_int_t)m.issued, "expires", (json_int_t)m.expires));
fail:
    /* A manifest without its signature would only confuse: both or neither. */
    if (rc != 0 && wrote_manifest)
        unlink(manifest_path);
    if (rc != 0 && wrote_sig)
        unlink(sig_path);
    free(sig_line);
    free(sig_b64);
    free(bytes);
    mh_manifest_dispose(&m);
    EVP_PKEY_free(key);
    free(sig_path);
    free(manifest_path);
    return rc;
}
