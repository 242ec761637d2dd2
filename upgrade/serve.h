#ifndef UPG_SERVE_H
#define UPG_SERVE_H

/*
 * What serving a firmware image needs besides the offer check (docs/upgrade.md): where the
 * content-addressed store keeps an image, and the HTTP Range requests a meter uses to resume
 * an interrupted download. Pure functions, no I/O.
 */

#include <stddef.h>
#include <stdint.h>

/* The image with SHA-256 sha256_hex (64 lowercase hex) lives at
 * <store>/sha256/<first 2 hex>/<64 hex>. Writes the path into out. Returns 0, or -1 when
 * the digest is malformed or the path does not fit. */
int upg_store_path(const char *store, const char *sha256_hex, char *out, size_t outlen);

/* A Range header as far as meterhub serves it: one byte range, or the whole image. */
typedef enum upg_range_kind {
    UPG_RANGE_ALL,    /* no Range, or one we ignore (another unit, several ranges, malformed) */
    UPG_RANGE_FROM,   /* bytes=a- */
    UPG_RANGE_SPAN,   /* bytes=a-b */
    UPG_RANGE_SUFFIX, /* bytes=-n: the last n bytes */
} upg_range_kind_t;

typedef struct upg_range {
    upg_range_kind_t kind;
    int64_t a, b; /* FROM: a; SPAN: a..b inclusive; SUFFIX: n in a */
} upg_range_t;

/* Parses a Range header value (NULL: none). A header we do not serve is ignored, as HTTP
 * allows: the answer is then the whole image. */
void upg_range_parse(const char *value, upg_range_t *out);

/* The bytes [*first, *last] of an image of size bytes that range asks for. Returns 0, or -1
 * when the range cannot be satisfied (it starts at or past the end, or is empty). */
int upg_range_resolve(const upg_range_t *range, int64_t size, int64_t *first, int64_t *last);

#endif
