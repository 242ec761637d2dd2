#ifndef MH_OPS_H
#define MH_OPS_H

/*
 * The operators' HTTP endpoint of a daemon: GET /metrics (Prometheus text format) and
 * GET /healthz, plain HTTP on a loopback address only (anything else is refused at start).
 * Runs on the event base it is given, in that base's thread.
 */

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>

typedef struct mh_ops_server mh_ops_server_t;

/* Appends the metrics in Prometheus text format. */
typedef void (*mh_ops_metrics_fn)(struct evbuffer *out, void *arg);
/* Appends a short JSON status; returns true when healthy (200), false otherwise (503). */
typedef bool (*mh_ops_health_fn)(struct evbuffer *out, void *arg);

/* Returns an owned server, or NULL after logging (non-loopback address, bind failure). */
mh_ops_server_t *mh_ops_server_new(struct event_base *base, const char *addr, int port,
                                   mh_ops_metrics_fn metrics, mh_ops_health_fn health, void *arg);
void mh_ops_server_free(mh_ops_server_t *ops);

/* True if addr is a numeric loopback address (127.0.0.0/8 or ::1). */
bool mh_addr_is_loopback(const char *addr);

#endif
