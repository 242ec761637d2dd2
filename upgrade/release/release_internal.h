#ifndef UPG_RELEASE_INTERNAL_H
#define UPG_RELEASE_INTERNAL_H

/*
 * meterhub-release, the operators' firmware tool (docs/upgrade.md, "meterhub-release"). main.c
 * parses the command line (args.c) and calls one job; each command group is one file:
 *   keygen.c   keygen                     (no database)
 *   sign.c     sign                       (no database; the only reader of a private key)
 *   publish.c  publish, with store.c      (verifies, stores the image, appends to the log)
 *   rollout.c  rollout create|pause|resume|abort|set|status
 *   logcheck.c log verify
 * files.c writes files atomically without overwriting; session.c holds what the database jobs
 * share. Single-threaded.
 *
 * Output: one JSON object per line on stdout; errors and progress on stderr through mh_log.
 * Nothing prints a private key or the connection string. Every job returns 0, or -1 after
 * logging why (exit status 1).
 */

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/release.h"

/* Exit statuses. */
#define UPG_REL_EXIT_OK 0
#define UPG_REL_EXIT_FAIL 1  /* refused or failed: bad input file, database, signature... */
#define UPG_REL_EXIT_USAGE 2 /* malformed command line */

/* sign --expires: default and largest validity, days. */
#define UPG_REL_EXPIRES_DEFAULT_DAYS 90.0
#define UPG_REL_EXPIRES_MAX_DAYS 3650.0
/* Longest --devices list (lines that name a device). */
#define UPG_REL_MAX_LIST 1000000

/* ---- command line (args.c) --------------------------------------------------------------- */

typedef enum upg_rel_cmd {
    UPG_REL_CMD_HELP,
    UPG_REL_CMD_KEYGEN,
    UPG_REL_CMD_SIGN,
    UPG_REL_CMD_PUBLISH,
    UPG_REL_CMD_ROLLOUT_CREATE,
    UPG_REL_CMD_ROLLOUT_PAUSE,
    UPG_REL_CMD_ROLLOUT_RESUME,
    UPG_REL_CMD_ROLLOUT_ABORT,
    UPG_REL_CMD_ROLLOUT_SET,
    UPG_REL_CMD_ROLLOUT_STATUS,
    UPG_REL_CMD_LOG_VERIFY,
} upg_rel_cmd_t;

/* The parsed command line. Strings are borrowed from argv; NULL: not given. */
typedef struct upg_rel_args {
    upg_rel_cmd_t cmd;
    /* database and publishing */
    const char *pg_uri;
    const char *store;
    const char *trusted_keys;
    /* keygen --out DIR; sign --out PREFIX */
    const char *out;
    /* sign */
    const char *key;
    const char *image;
    const char *version;
    const char *hardware; /* also rollout create's guard */
    int64_t expires_s;    /* validity in seconds, >= 1 */
    const char *notes;
    const char *notes_file;
    /* publish MANIFEST IMAGE [--signature SIG] */
    const char *manifest;
    const char *signature;
    /* rollout */
    const char *release;
    bool has_percent;
    int percent_bp; /* basis points, 0..10000 */
    const char *devices_file;
    bool has_id;
    int64_t id; /* rollout id */
} upg_rel_args_t;

/*
 * Parses argv[1..argc-1]. Options may come anywhere after the program name; options take
 * their value as the next argument or after '='; "--" ends the options; -h/--help anywhere
 * (before "--") gives UPG_REL_CMD_HELP. An option that does not apply to the command is an
 * error. Returns 0, or -1 with a one-line message in err (a usage error). Pure: reads
 * neither the environment nor files.
 */
int upg_rel_args_parse(int argc, char **argv, upg_rel_args_t *out, char *err, size_t errlen);

/* Parses a percentage "0" to "100" with at most two decimals ("12.5", "0.01") into basis
 * points. Returns 0 or -1. Pure. */
int upg_rel_parse_percent(const char *s, int *bp);

/* Parses a number of days (decimal, "> 0", at most UPG_REL_EXPIRES_MAX_DAYS, e.g. "0.0001")
 * into whole seconds, rounded, at least 1. Returns 0 or -1. Pure. */
int upg_rel_parse_days(const char *s, int64_t *seconds);

/* The usage text. */
extern const char upg_rel_usage[];

/* ---- what the jobs share (session.c) ----------------------------------------------------- */

/* After the command line and the environment were consulted. NULL: not given. */
typedef struct upg_rel_ctx {
    const char *pg_uri; /* never printed */
    const char *store;
    const char *trusted_keys;
} upg_rel_ctx_t;

/* Connects as "meterhub-release" with notices below WARNING silenced. Returns an owned
 * connection or NULL (logged). */
PGconn *upg_rel_connect(const upg_rel_ctx_t *ctx);

/* Runs a statement with text parameters (NULL: SQL NULL) and checks its status (TUPLES_OK or
 * COMMAND_OK). Returns the owned result, or NULL after logging "what: server message". */
PGresult *upg_rel_query(PGconn *conn, const char *what, const char *sql, int nparams,
                        const char *const *params);

/* ROLLBACK, ignoring errors (the connection is about to be closed or reused after a failure). */
void upg_rel_rollback(PGconn *conn);

/* ---- files (files.c) ---------------------------------------------------------------------- */

/*
 * Writes len bytes to path, atomically and never over an existing file: a temporary file in
 * the same directory (mode), fsync, then link(2) to path (refused when path exists), unlink
 * of the temporary, fsync of the directory. Returns 0, or -1 (logged; nothing left behind).
 */
int upg_rel_write_new(const char *path, const void *buf, size_t len, unsigned mode);

/*
 * Streams the regular file at path through SHA-256, reading at most max + 1 bytes (so a file
 * larger than max is seen as such without reading it all), and writes what it read to copy_fd
 * too unless copy_fd is -1. *size gets the bytes read, sha256 their digest (64 hex + NUL).
 * Returns 0, or -1 (logged, what naming the file) on a read or write error.
 */
int upg_rel_hash_file(const char *path, const char *what, int64_t max, int copy_fd,
                      char sha256[MH_RELEASE_HASH_HEX + 1], int64_t *size);

/* fsync of directory dir, so that a rename or link in it survives a crash. Returns 0 or -1
 * (logged). */
int upg_rel_fsync_dir(const char *dir);

/* ---- jobs --------------------------------------------------------------------------------- */

/* keygen.c: DIR/release.key (0600, DIR created 0700) and DIR/release.pub; never overwrites. */
int upg_rel_keygen(const upg_rel_args_t *args);

/* sign.c: PREFIX.manifest and PREFIX.manifest.sig for an image; never overwrites. */
int upg_rel_sign(const upg_rel_args_t *args);

/* publish.c: verifies a signed manifest and its image against the trusted keys, stores the
 * image in the store and appends the release to the log, in one transaction. */
int upg_rel_publish(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args);

/*
 * The trusted keys of path: a .pub file, or every *.pub of a directory. Returns an owned
 * key whose key id is key_id, NULL after logging when none matches or a file is unreadable.
 */
EVP_PKEY *upg_rel_trusted_key(const char *path, const char *key_id);

/*
 * store.c: copies the image at image_path into the content-addressed store (DIR/sha256/<2
 * hex>/<64 hex>) while checking that it is exactly size bytes whose SHA-256 is sha256; an
 * identical file already there is kept. Nothing is left in the store when the image does
 * not match. *stored_path (owned) gets the file's path. Returns 0 or -1 (logged).
 */
int upg_rel_store_image(const char *store, const char *image_path, int64_t size, const char *sha256,
                        char **stored_path);

/* rollout.c */
int upg_rel_rollout_create(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args);
int upg_rel_rollout_change(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args);
int upg_rel_rollout_status(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args);

/*
 * Parses a --devices list held in buf (len bytes): one device id per line; blank lines and
 * lines starting with '#' (after blanks) are ignored; blanks around an id and a CR before the
 * newline are ignored. Fills *ids (owned array of owned strings, free with
 * upg_rel_free_list) and *n. Returns 0, or -1 with "line N: ..." in err. Pure.
 */
int upg_rel_parse_device_list(const char *buf, size_t len, char ***ids, size_t *n, char *err,
                              size_t errlen);
void upg_rel_free_list(char **ids, size_t n);

/* logcheck.c: recomputes the whole release log and checks every release row against it. */
int upg_rel_log_verify(const upg_rel_ctx_t *ctx);

#endif
