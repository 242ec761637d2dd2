#ifndef MH_CONFIG_H
#define MH_CONFIG_H

/*
 * Configuration files: INI-style "key = value" lines under "[section]" headers, '#' or ';'
 * comments. Each module describes its keys in one table (type, default, bounds); the loader
 * fills a struct through the offsets in that table. Unknown sections or keys, values out of
 * bounds and malformed lines are errors: a typo must not silently fall back to a default.
 *
 * Strings (MH_CFG_STR, MH_CFG_SECRET) are heap copies owned by the struct; release them with
 * mh_config_dispose(). Secrets are never printed by mh_config_dump().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum mh_cfg_type {
    MH_CFG_INT,    /* long */
    MH_CFG_BOOL,   /* bool: true/false/yes/no/on/off/1/0 */
    MH_CFG_STR,    /* char * */
    MH_CFG_SECRET, /* char *, redacted when dumped */
} mh_cfg_type_t;

typedef struct mh_cfg_key {
    const char *name;
    mh_cfg_type_t type;
    size_t offset;   /* offsetof() the field in the section's struct */
    const char *def; /* default as text; NULL leaves a string NULL */
    long min, max;   /* bounds for MH_CFG_INT */
    const char *help;
} mh_cfg_key_t;

typedef struct mh_cfg_section {
    const char *name; /* "[name]" in the file */
    const mh_cfg_key_t *keys;
    size_t nkeys;
    void *dst; /* struct the keys' offsets point into (borrowed) */
} mh_cfg_section_t;

/* Sets every key of every section to its default. Returns 0, or -1 with err filled. */
int mh_config_defaults(const mh_cfg_section_t *sections, size_t nsections, char *err,
                       size_t errlen);

/*
 * Applies defaults, then the file at path (NULL: defaults only). Returns 0, or -1 with a
 * message "path:line: what" in err. On failure the structs hold defaults plus whatever was
 * parsed; the caller disposes them either way.
 */
int mh_config_load(const char *path, const mh_cfg_section_t *sections, size_t nsections, char *err,
                   size_t errlen);

/* Applies one "section.key=value" override (command line). Same errors as a file line. */
int mh_config_set(const mh_cfg_section_t *sections, size_t nsections, const char *assignment,
                  char *err, size_t errlen);

/* Writes the effective configuration as a config file; secrets print as "<redacted>". */
void mh_config_dump(FILE *out, const mh_cfg_section_t *sections, size_t nsections);

/* Frees the strings the loader allocated and sets them to NULL. */
void mh_config_dispose(const mh_cfg_section_t *sections, size_t nsections);

/* Reads the first line of a secret file (a password), without the newline. Refuses files
 * readable by group or others. Returns a heap string owned by the caller, or NULL with err. */
char *mh_config_read_secret_file(const char *path, char *err, size_t errlen);

#endif
