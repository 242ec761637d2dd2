#include "ids.h"

#include <openssl/rand.h>
#include <string.h>

void mh_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

int mh_id_random(char *out)
{
    uint8_t raw[MH_ID_LEN / 2];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    mh_hex_encode(raw, sizeof(raw), out);
    return 0;
}

bool mh_id_valid_n(const char *s, size_t len)
{
    if (len != MH_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

bool mh_id_valid(const char *s)
{
    return s != NULL && mh_id_valid_n(s, strnlen(s, MH_ID_LEN + 1));
}
