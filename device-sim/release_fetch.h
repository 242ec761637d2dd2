#ifndef SIM_RELEASE_FETCH_H
#define SIM_RELEASE_FETCH_H

/*
 * Where the meters' copy of the public release log comes from (--release-log): a saved
 * GET /v1/firmware answer on disk, or meterhub-api itself over HTTPS (no client certificate:
 * the log is public; the server is verified against --api-ca). Blocking: the main thread
 * loads and refreshes the copy while the workers run; the workers only read it, under lock.
 */

#include <pthread.h>
#include <stdbool.h>

#include "device-sim/release_log.h"

/* True when source names the API (an https:// URL) rather than a file. */
bool sim_release_source_is_url(const char *source);

/* Adds the entries of the saved answer in path to log (see sim_release_log_add_page).
 * Returns 0, or -1 (logged) when the file cannot be read or is not such an answer. */
int sim_release_log_load_file(const char *path, sim_release_log_t *log);

/*
 * Brings log up to the API's head: GET <url>?after=<head>&limit=100, then each next_after,
 * until a page reaches the head (at most SIM_RELEASE_FETCH_PAGES pages). Each page is
 * appended under lock (taken for writing; NULL: none). url is https://host[:port]/path, without
 * a query. timeout_s bounds each request. Returns 0, or -1 (logged) when a request fails or an
 * answer is not of the documented shape; what was appended before stays.
 */
int sim_release_log_fetch(const char *url, const char *ca_file, unsigned timeout_s,
                          sim_release_log_t *log, pthread_rwlock_t *lock);

#define SIM_RELEASE_FETCH_PAGES 10000

#endif
