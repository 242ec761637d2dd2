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

static bool lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

bool mh_id_valid_n(const char *s, size_t len)
{
    return len == MH_ID_LEN && lower_hex(s, len);
}

bool mh_hex_valid(const char *s, size_t len)
{
    return s != NULL && strnlen(s, len + 1) == len && lower_hex(s, len);
}

bool mh_hardware_valid(const char *s)
{
    size_t n = s != NULL ? strnlen(s, MH_HARDWARE_MAX + 1) : 0;
    if (n == 0 || n > MH_HARDWARE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

bool mh_id_valid(const char *s)
{
    return s != NULL && mh_id_valid_n(s, strnlen(s, MH_ID_LEN + 1));
}
