#include "tls.h"
#include "log.h"

#define MH_TLS12_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define MH_TLS_GROUPS "X25519:P-256:P-384"

static int apply_common(SSL_CTX *ctx)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, MH_TLS12_CIPHERS) != 1 ||
        SSL_CTX_set1_groups_list(ctx, MH_TLS_GROUPS) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: applying protocol settings");
        return -1;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    return 0;
}

SSL_CTX *mh_tls_server_ctx_new(const mh_tls_server_opts_t *opts)
{
    static const unsigned char sid_ctx[] = "meterhub";
    SSL_CTX *ctx = NULL;

    if (opts->cert_file == NULL || opts->key_file == NULL) {
        mh_log(MH_LOG_ERROR, "tls: a server certificate and key are required");
        goto fail;
    }
    if (opts->require_client_cert && opts->client_ca_file == NULL) {
        mh_log(MH_LOG_ERROR, "tls: client certificates required but no client CA configured");
        goto fail;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "tls: SSL_CTX_new");
        goto fail;
    }
    if (apply_common(ctx) != 0)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: session id context");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, opts->cert_file) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: loading server certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, opts->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: loading server key");
        goto fail;
    }
    if (opts->client_ca_file != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(opts->client_ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, opts->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            mh_log_openssl(MH_LOG_ERROR, "tls: loading client CA");
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (opts->require_client_cert)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *mh_tls_client_ctx_new(const char *ca_file, const char *cert_file, const char *key_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "tls: SSL_CTX_new");
        goto fail;
    }
    if (apply_common(ctx) != 0)
        goto fail;
    if (ca_file != NULL && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: loading CA");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            mh_log_openssl(MH_LOG_ERROR, "tls: loading client certificate");
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
