/* keygen --out DIR: a new Ed25519 release key pair. */
#include "release_internal.h"

#include "common/tool.h"
#include "common/alloc.h"
#include "common/log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The PEM text of key (private: PKCS#8, unencrypted; else SubjectPublicKeyInfo) into *out
 * (owned; the caller wipes a private one). Returns 0 or -1 (logged). */
static int key_pem(EVP_PKEY *key, bool private_key, char **out, size_t *len)
{
    int rc = -1;
    char *data = NULL;
    long n = 0;
    BIO *bio = BIO_new(BIO_s_mem());

    *out = NULL;
    if (bio == NULL)
        goto fail;
    if (private_key ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1
                    : PEM_write_bio_PUBKEY(bio, key) != 1)
        goto fail;
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0)
        goto fail;
    *out = mh_malloc((size_t)n);
    memcpy(*out, data, (size_t)n);
    *len = (size_t)n;
    rc = 0;
fail:
    if (rc != 0)
        mh_log_openssl(MH_LOG_ERROR, "cannot encode the key");
    /* The memory BIO's buffer held the private key too: BIO_free_all does not wipe it. */
    if (data != NULL && n > 0 && private_key)
        OPENSSL_cleanse(data, (size_t)n);
    BIO_free(bio);
    return rc;
}

static char *join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *p = mh_malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

/* DIR itself: created 0700, or an existing directory (warned about when others can enter). */
static int make_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST) {
        mh_log(MH_LOG_ERROR, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        mh_log(MH_LOG_ERROR, "%s: exists and is not a directory", dir);
        return -1;
    }
    if (st.st_mode & 077)
        mh_log(MH_LOG_WARN, "%s: accessible by group or others (mode %04o)", dir,
               (unsigned)(st.st_mode & 07777));
    return 0;
}

int upg_rel_keygen(const upg_rel_args_t *args)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    char *key_path = join(args->out, "release.key");
    char *pub_path = join(args->out, "release.pub");
    char *priv = NULL, *pub = NULL;
    size_t priv_len = 0, pub_len = 0;
    char fingerprint[MH_RELEASE_HASH_HEX + 1], key_id[MH_RELEASE_KEY_ID_LEN + 1];
    bool wrote_key = false, wrote_pub = false;

    if (make_dir(args->out) != 0)
        goto fail;
    /* Refuse before generating anything, so that a refusal leaves both files as they were. */
    const char *paths[2] = {key_path, pub_path};
    for (size_t i = 0; i < 2; i++)
        if (access(paths[i], F_OK) == 0) {
            mh_log(MH_LOG_ERROR, "%s: already exists; not overwritten", paths[i]);
            goto fail;
        }
    key = mh_release_keygen();
    if (key == NULL || mh_release_key_ids(key, fingerprint, key_id) != 0)
        goto fail;
    if (key_pem(key, true, &priv, &priv_len) != 0 || key_pem(key, false, &pub, &pub_len) != 0)
        goto fail;
    if (upg_rel_write_new(key_path, priv, priv_len, 0600) != 0)
        goto fail;
    wrote_key = true;
    if (upg_rel_write_new(pub_path, pub, pub_len, 0644) != 0)
        goto fail;
    wrote_pub = true;
    rc =
        mh_tool_print_json(json_pack("{s:s, s:s, s:s, s:s}", "key_id", key_id, "fingerprint",
                                     fingerprint, "public_key", pub_path, "private_key", key_path));
fail:
    /* Half a key pair is no key pair. */
    if (rc != 0 && wrote_key)
        unlink(key_path);
    if (rc != 0 && wrote_pub)
        unlink(pub_path);
    if (priv != NULL)
        OPENSSL_cleanse(priv, priv_len);
    free(priv);
    free(pub);
    EVP_PKEY_free(key);
    free(pub_path);
    free(key_path);
    return rc;
}
