/* The careful meter's checks: see upgrade.h. */
#include "device-sim/upgrade.h"

#include "common/ids.h"
#include "common/log.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* Longest base64 text of a manifest of MH_RELEASE_MAX_MANIFEST bytes (and one newline). */
#define SIM_MAX_MANIFEST_B64 (((MH_RELEASE_MAX_MANIFEST + 2) / 3) * 4 + 1)
#define SIM_MAX_SIGNATURE_B64 (((MH_RELEASE_SIG_LEN + 2) / 3) * 4 + 1)

const char *sim_upgrade_reason_name(sim_upgrade_reason_t r)
{
    switch (r) {
    case SIM_UPG_OK:
        return "ok";
    case SIM_UPG_OFFER:
        return "offer";
    case SIM_UPG_SIGNATURE:
        return "signature";
    case SIM_UPG_MANIFEST:
        return "manifest";
    case SIM_UPG_HARDWARE:
        return "hardware";
    case SIM_UPG_ROLLBACK:
        return "rollback";
    case SIM_UPG_EXPIRED:
        return "expired";
    case SIM_UPG_NOT_IN_LOG:
        return "not_in_log";
    case SIM_UPG_SIZE:
        return "size";
    case SIM_UPG_SHA256:
        return "sha256";
    case SIM_UPG_LOG_UNAVAILABLE:
        return "log_unavailable";
    case SIM_UPG_DOWNLOAD:
        return "download";
    case SIM_UPG_REASONS:
        break;
    }
    return "?";
}

bool sim_upgrade_reason_is_failure(sim_upgrade_reason_t r)
{
    return r == SIM_UPG_LOG_UNAVAILABLE || r == SIM_UPG_DOWNLOAD;
}

int sim_upgrade_offer_parse(const json_t *upgrade, sim_upgrade_offer_t *out,
                            sim_upgrade_reason_t *reason)
{
    const char *release = json_string_value(json_object_get(upgrade, "release"));
    const char *man64 = json_string_value(json_object_get(upgrade, "manifest"));
    const char *sig64 = json_string_value(json_object_get(upgrade, "signature"));
    const char *url = json_string_value(json_object_get(upgrade, "url"));
    const json_t *lg = json_object_get(upgrade, "log");
    const json_t *seq = json_object_get(lg, "seq");
    const char *prev = json_string_value(json_object_get(lg, "prev"));
    const char *hash = json_string_value(json_object_get(lg, "hash"));
    uint8_t *sig = NULL;
    size_t sig_len = 0;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(upgrade) || !mh_hex_valid(release, MH_RELEASE_ID_LEN) || man64 == NULL ||
        sig64 == NULL || url == NULL || strlen(url) >= sizeof(out->url) || !json_is_integer(seq) ||
        json_integer_value(seq) < 1 || !mh_hex_valid(prev, MH_RELEASE_HASH_HEX) ||
        !mh_hex_valid(hash, MH_RELEASE_HASH_HEX))
        goto fail;
    /* Bounded before decoding: an offer is a few kilobytes at most. */
    if (strlen(man64) > SIM_MAX_MANIFEST_B64 || strlen(sig64) > SIM_MAX_SIGNATURE_B64)
        goto fail;
    out->manifest = mh_base64_decode(man64, strlen(man64), &out->manifest_len);
    sig = mh_base64_decode(sig64, strlen(sig64), &sig_len);
    if (out->manifest == NULL || out->manifest_len == 0 ||
        out->manifest_len > MH_RELEASE_MAX_MANIFEST || sig == NULL || sig_len != MH_RELEASE_SIG_LEN)
        goto fail;
    memcpy(out->signature, sig, MH_RELEASE_SIG_LEN);
    free(sig);
    memcpy(out->release, release, sizeof(out->release));
    memcpy(out->log_prev, prev, sizeof(out->log_prev));
    memcpy(out->log_hash, hash, sizeof(out->log_hash));
    memcpy(out->url, url, strlen(url) + 1);
    out->log_seq = (int64_t)json_integer_value(seq);
    return 0;
fail:
    free(sig);
    free(out->manifest);
    memset(out, 0, sizeof(*out));
    *reason = SIM_UPG_OFFER;
    return -1;
}

void sim_upgrade_offer_dispose(sim_upgrade_offer_t *o)
{
    if (o->parsed)
        mh_manifest_dispose(&o->m);
    free(o->manifest);
    memset(o, 0, sizeof(*o));
}

/* The log part of the checks. */
static sim_upgrade_verdict_t check_log(const sim_upgrade_offer_t *o, const sim_release_log_t *log,
                                       sim_upgrade_reason_t *reason)
{
    char msha[MH_RELEASE_HASH_HEX + 1], hash[MH_RELEASE_HASH_HEX + 1];

    *reason = SIM_UPG_NOT_IN_LOG;
    /* The offer's own entry must hold together before the copy is even asked. */
    mh_sha256_hex(o->manifest, o->manifest_len, msha);
    if (mh_release_log_hash(o->log_seq, o->log_prev, msha, o->signature, hash) != 0 ||
        strcmp(hash, o->log_hash) != 0)
        return SIM_UPGRADE_REFUSE;
    if (log == NULL)
        return SIM_UPGRADE_REFUSE;
    const sim_log_entry_t *e = sim_release_log_find(log, o->log_seq);
    if (e == NULL)
        return log->broken ? SIM_UPGRADE_REFUSE : SIM_UPGRADE_NEED_LOG;
    /* The copy's entry verified from its own fields, so equal hashes mean the same manifest
     * and signature at the same place in the chain; the rest is said plainly all the same. */
    if (strcmp(e->hash, o->log_hash) != 0 || strcmp(e->prev, o->log_prev) != 0 ||
        strcmp(e->manifest_sha256, msha) != 0 ||
        CRYPTO_memcmp(e->signature, o->signature, MH_RELEASE_SIG_LEN) != 0)
        return SIM_UPGRADE_REFUSE;
    *reason = SIM_UPG_OK;
    return SIM_UPGRADE_ACCEPT;
}

sim_upgrade_verdict_t sim_upgrade_offer_check(sim_upgrade_offer_t *o, const sim_meter_self_t *self,
                                              const sim_release_log_t *log,
                                              sim_upgrade_reason_t *reason)
{
    char err[160], id[MH_RELEASE_ID_LEN + 1], url[sizeof(o->url)];
    uint32_t running[MH_RELEASE_VERSION_PARTS];

    /* Nothing of the manifest is looked at before its signature verifies. */
    *reason = SIM_UPG_SIGNATURE;
    if (self->key == NULL || mh_release_verify(self->key, o->manifest, o->manifest_len,
                                               o->signature, err, sizeof(err)) != 0)
        return SIM_UPGRADE_REFUSE;
    if (!o->parsed) {
        *reason = SIM_UPG_MANIFEST;
        if (mh_manifest_parse(o->manifest, o->manifest_len, &o->m, err, sizeof(err)) != 0) {
            mh_log(MH_LOG_DEBUG, "offer %s: manifest: %s", o->release, err);
            return SIM_UPGRADE_REFUSE;
        }
        o->parsed = true;
    }
    *reason = SIM_UPG_OFFER;
    if (mh_release_id(o->manifest, o->manifest_len, id) != 0 || strcmp(id, o->release) != 0)
        return SIM_UPGRADE_REFUSE;
    snprintf(url, sizeof(url), "/firmware/%s", id);
    if (strcmp(url, o->url) != 0)
        return SIM_UPGRADE_REFUSE;
    *reason = SIM_UPG_HARDWARE;
    if (strcmp(o->m.hardware, self->hardware) != 0)
        return SIM_UPGRADE_REFUSE;
    /* A meter that cannot compare its own version cannot prove the offer newer. */
    *reason = SIM_UPG_ROLLBACK;
    if (mh_release_version_parse(self->version, running) != 0 ||
        mh_release_version_cmp(o->m.version_key, running) <= 0)
        return SIM_UPGRADE_REFUSE;
    *reason = SIM_UPG_EXPIRED;
    if (self->now >= o->m.expires)
        return SIM_UPGRADE_REFUSE;
    return check_log(o, log, reason);
}

int sim_image_check_init(sim_image_check_t *c, int64_t size, const char *sha256)
{
    memset(c, 0, sizeof(*c));
    c->size = size;
    snprintf(c->sha256, sizeof(c->sha256), "%s", sha256);
    c->ctx = EVP_MD_CTX_new();
    if (c->ctx == NULL || EVP_DigestInit_ex(c->ctx, EVP_sha256(), NULL) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "image check: SHA-256");
        EVP_MD_CTX_free(c->ctx);
        c->ctx = NULL;
        return -1;
    }
    return 0;
}

sim_upgrade_reason_t sim_image_check_feed(sim_image_check_t *c, const uint8_t *buf, size_t len)
{
    if (c->ctx == NULL)
        return SIM_UPG_DOWNLOAD;
    if ((uint64_t)len > (uint64_t)(c->size - c->received))
        return SIM_UPG_SIZE;
    if (len > 0 && EVP_DigestUpdate(c->ctx, buf, len) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "image check: SHA-256");
        return SIM_UPG_DOWNLOAD;
    }
    c->received += (int64_t)len;
    return SIM_UPG_OK;
}

int sim_image_check_restart(sim_image_check_t *c)
{
    c->received = 0;
    if (c->ctx == NULL || EVP_DigestInit_ex(c->ctx, EVP_sha256(), NULL) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "image check: SHA-256");
        return -1;
    }
    return 0;
}

sim_upgrade_reason_t sim_image_check_finish(sim_image_check_t *c)
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    char hex[MH_RELEASE_HASH_HEX + 1];

    if (c->ctx == NULL)
        return SIM_UPG_DOWNLOAD;
    if (c->received != c->size)
        return SIM_UPG_SIZE;
    if (EVP_DigestFinal_ex(c->ctx, md, &mdlen) != 1 || mdlen != sizeof(md)) {
        mh_log_openssl(MH_LOG_ERROR, "image check: SHA-256");
        return SIM_UPG_DOWNLOAD;
    }
    mh_hex_encode(md, sizeof(md), hex);
    return strcmp(hex, c->sha256) == 0 ? SIM_UPG_OK : SIM_UPG_SHA256;
}

void sim_image_check_dispose(sim_image_check_t *c)
{
    EVP_MD_CTX_free(c->ctx);
    memset(c, 0, sizeof(*c));
}
