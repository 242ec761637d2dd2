#include "cert.h"

#include <openssl/evp.h>
#include <string.h>

int mh_cert_fingerprint(X509 *cert, uint8_t *out)
{
    unsigned int len = 0;
    if (X509_digest(cert, EVP_sha256(), out, &len) != 1 || len != MH_FINGERPRINT_LEN)
        return -1;
    return 0;
}

int mh_cert_subject_cn(X509 *cert, char *out, size_t outlen)
{
    X509_NAME *name = X509_get_subject_name(cert);
    if (name == NULL)
        return -1;
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0)
        return -1;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    int len = ASN1_STRING_length(s);
    if (len < 0 || (size_t)len >= outlen)
        return -1;
    memcpy(out, ASN1_STRING_get0_data(s), (size_t)len);
    out[len] = '\0';
    /* An embedded NUL would let "abc\0evil" pass as "abc". */
    if (strlen(out) != (size_t)len)
        return -1;
    return 0;
}
