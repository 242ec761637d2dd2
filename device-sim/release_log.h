#ifndef SIM_RELEASE_LOG_H
#define SIM_RELEASE_LOG_H

/*
 * The careful meter's copy of the public release log (docs/upgrade.md "The release log"), as
 * meterhub-api publishes it at GET /v1/firmware. The meter keeps only what the chain commits
 * to and what it checks offers against: each entry's seq, prev, hash, manifest digest and
 * signature, and only as far as the chain verifies: an entry is kept when its hash recomputes
 * from those fields (mh_release_log_hash), its seq follows the last kept entry's and its prev
 * is that entry's hash (64 '0's for seq 1). The manifest shown with an entry is not kept:
 * offers are held to the digest. The first entry that fails breaks the chain: it and
 * everything after it are dropped for good (the log is append-only: a later page cannot mend
 * an earlier break).
 *
 * Pure: parsing JSON already read (sim_release_fetch.h does the I/O). Not thread-safe by
 * itself: meterhub-sim guards the shared copy with a lock (sim_internal.h).
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/release.h"

typedef struct sim_log_entry {
    int64_t seq;
    char release[MH_RELEASE_ID_LEN + 1]; /* the digest's first 32 hex */
    char prev[MH_RELEASE_HASH_HEX + 1];
    char hash[MH_RELEASE_HASH_HEX + 1];
    char manifest_sha256[MH_RELEASE_HASH_HEX + 1];
    uint8_t signature[MH_RELEASE_SIG_LEN];
} sim_log_entry_t;

typedef struct sim_release_log {
    sim_log_entry_t *v; /* v[i].seq == i + 1 */
    size_t n, alloc;
    bool broken;          /* an entry failed to verify: nothing more is ever appended */
    int64_t broken_seq;   /* the seq that broke it */
    char broken_why[128]; /* what was wrong with it, for the log */
} sim_release_log_t;

/* Most entries a copy holds (a bound on memory; a real log stays far below). */
#define SIM_RELEASE_LOG_MAX 1000000

void sim_release_log_init(sim_release_log_t *log);
void sim_release_log_dispose(sim_release_log_t *log);

/* The seq of the last verified entry; 0 when empty. */
int64_t sim_release_log_head(const sim_release_log_t *log);

/* The verified entry seq, borrowed; NULL beyond the head (or seq < 1). */
const sim_log_entry_t *sim_release_log_find(const sim_release_log_t *log, int64_t seq);

/*
 * Appends the entries of one GET /v1/firmware page (the whole JSON answer, borrowed) that
 * extend the chain. Entries at or below the head are skipped when they are the same entry
 * (a page fetched again), and break the chain when they are not. Sets *next_after to the
 * page's next_after (-1 when null: the page reaches the head). Returns the number of entries
 * appended, or -1 when the page itself is not of the documented shape (err says why; the
 * copy is unchanged). A broken chain is not an error here: see log->broken.
 */
long sim_release_log_add_page(sim_release_log_t *log, const json_t *page, int64_t *next_after,
                              char *err, size_t errlen);

#endif
