#ifndef MH_TLS_H
#define MH_TLS_H

/*
 * TLS contexts. Server settings follow Mozilla's "intermediate" profile, narrowed to ECDHE
 * with AEAD ciphers: TLS 1.2 minimum (1.3 preferred), no compression, no renegotiation, no
 * session tickets (stateful session cache instead: tickets made full mutual-TLS handshakes
 * dearer on the reference machine and saved nothing).
 */

#include <openssl/ssl.h>
#include <stdbool.h>

typedef struct mh_tls_server_opts {
    const char *cert_file;      /* PEM chain: leaf first */
    const char *key_file;       /* PEM private key */
    const char *client_ca_file; /* PEM CA bundle for client certificates; NULL: none asked */
    bool require_client_cert;   /* refuse the handshake without a valid client certificate */
} mh_tls_server_opts_t;

/*
 * Creates a server context. Requiring client certificates without a CA file is refused (fail
 * closed). Returns a context owned by the caller (SSL_CTX_free), or NULL after logging why.
 */
SSL_CTX *mh_tls_server_ctx_new(const mh_tls_server_opts_t *opts);

/* A client context trusting ca_file, presenting cert_file/key_file when not NULL. Same
 * protocol floor as the server. Returns an owned context or NULL after logging. */
SSL_CTX *mh_tls_client_ctx_new(const char *ca_file, const char *cert_file, const char *key_file);

#endif
