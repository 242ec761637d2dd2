#include "device-sim/bad.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pg.h"
#include "common/provision.h"
#include "device-sim/backoff.h"

#include <math.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

/* The throwaway certificates are valid from a day ago for a day: long enough for any run, and
 * the clock skew of a test machine does not matter. */
#define SIM_BAD_CERT_DAYS 2

/* A certificate for subject_cn with pub, issued by issuer (self-signed when issuer is NULL,
 * as a CA) and signed with sign_key. Owned, or NULL (logged). */
static X509 *make_cert(const char *subject_cn, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *sign_key,
                       uint64_t serial)
{
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    X509_EXTENSION *ext = NULL;
    X509V3_CTX v3;

    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -86400L) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400L * (SIM_BAD_CERT_DAYS - 1)) == NULL ||
        X509_set_pubkey(x, pub) != 1)
        goto fail;
    name = X509_NAME_new();
    if (name == NULL ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)subject_cn, -1,
                                   -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   (const unsigned char *)"meterhub device", -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1)
        goto fail;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                              issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
        goto fail;
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "clientAuth");
    if (issuer != NULL && (ext == NULL || X509_add_ext(x, ext, -1) != 1))
        goto fail;
    if (X509_sign(x, sign_key, EVP_sha256()) == 0)
        goto fail;
    X509_EXTENSION_free(ext);
    X509_NAME_free(name);
    return x;
fail:
    mh_log_openssl(MH_LOG_ERROR, "mixed-bad: making a throwaway certificate");
    X509_EXTENSION_free(ext);
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

sim_bad_t *sim_bad_new(const sim_fleet_t *fleet, size_t ndevices, double fraction, uint64_t seed)
{
    sim_bad_t *bad = mh_calloc(1, sizeof(*bad));
    uint32_t *order = mh_malloc((ndevices ? ndevices : 1) * sizeof(*order));
    uint64_t rng = sim_rand_seed(seed ^ 0xBADBADBADull);
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    size_t nbad = (size_t)llround(fraction * (double)ndevices);

    if (nbad >= ndevices)
        nbad = ndevices > 0 ? ndevices - 1 : 0;
    bad->n = ndevices;
    bad->kind = mh_calloc(ndevices ? ndevices : 1, 1);
    bad->victim = mh_calloc(ndevices ? ndevices : 1, sizeof(*bad->victim));
    bad->cert = mh_calloc(ndevices ? ndevices : 1, sizeof(*bad->cert));
    /* Fisher-Yates: the first nbad of the shuffled order misbehave. */
    for (size_t i = 0; i < ndevices; i++)
        order[i] = (uint32_t)i;
    for (size_t i = ndevices; i > 1; i--) {
        size_t j = (size_t)(sim_rand_unit(&rng) * (double)i);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < nbad; i++) {
        sim_bad_kind_t k = (sim_bad_kind_t)(SIM_BAD_WRONG_CA + i % (SIM_BAD_KINDS - 1));
        bad->kind[order[i]] = (uint8_t)k;
        bad->devices[k]++;
    }
    bad->devices[SIM_BAD_NONE] = (uint32_t)(ndevices - nbad);
    for (size_t d = 0; d < ndevices; d++) {
        /* The next good device after d, cyclically: there is one (nbad < ndevices). */
        size_t v = (d + 1) % ndevices;
        while (bad->kind[v] != SIM_BAD_NONE)
            v = (v + 1) % ndevices;
        bad->victim[d] = (uint32_t)v;
    }
    if (bad->devices[SIM_BAD_WRONG_CA] > 0) {
        ca_key = EVP_EC_gen("P-256");
        if (ca_key == NULL) {
            mh_log_openssl(MH_LOG_ERROR, "mixed-bad: generating the throwaway CA key");
            goto fail;
        }
        ca = make_cert("meterhub-sim throwaway CA", ca_key, NULL, ca_key, 1);
        if (ca == NULL)
            goto fail;
        for (size_t d = 0; d < ndevices; d++) {
            if (bad->kind[d] != SIM_BAD_WRONG_CA)
                continue;
            /* The device's own name and key: only the issuer is wrong. */
            bad->cert[d] =
                make_cert(fleet->devices[d].id, fleet->devices[d].key, ca, ca_key, (uint64_t)d + 2);
            if (bad->cert[d] == NULL)
                goto fail;
        }
    }
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    free(order);
    return bad;
fail:
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    free(order);
    sim_bad_free(bad);
    return NULL;
}

int sim_bad_revoke(const sim_bad_t *bad, const sim_fleet_t *fleet, const char *pg_uri)
{
    PGconn *conn = NULL;
    int rc = -1;

    if (bad->devices[SIM_BAD_REVOKED] == 0)
        return 0;
    conn = mh_pg_connect(pg_uri, "meterhub-sim-revoke");
    if (conn == NULL)
        goto fail;
    for (size_t d = 0; d < bad->n; d++) {
        bool found = false;
        if (bad->kind[d] != SIM_BAD_REVOKED)
            continue;
        if (mh_prov_device_revoke(conn, fleet->devices[d].id, &found) != 0)
            goto fail;
        if (!found) {
            mh_log(MH_LOG_ERROR, "mixed-bad: device %s is not in the database",
                   fleet->devices[d].id);
            goto fail;
        }
    }
    rc = 0;
fail:
    PQfinish(conn);
    return rc;
}

void sim_bad_free(sim_bad_t *bad)
{
    if (bad == NULL)
        return;
    for (size_t d = 0; d < bad->n && bad->cert != NULL; d++)
        X509_free(bad->cert[d]);
    free(bad->cert);
    free(bad->kind);
    free(bad->victim);
    free(bad);
}
