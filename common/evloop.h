#ifndef MH_EVLOOP_H
#define MH_EVLOOP_H

/*
 * Event-loop settings shared by the TLS front end and the simulator: both move one small
 * request and one small response per round trip over many connections, where the cost that
 * matters is system calls per request, not bytes.
 */

#include <event2/bufferevent.h>
#include <event2/event.h>

/*
 * A new event base with epoll's change list (and the usual locking, as other threads
 * activate events on it): libevent adds and removes a socket's write interest around every
 * response, and the change list folds an add and a delete made in the same loop turn into nothing
 * instead of two epoll_ctl calls. Returns an owned base (event_base_free), or NULL.
 */
struct event_base *mh_event_base_new(void);

/*
 * Makes a TLS bufferevent send what is queued as one TLS record when it is small. evhttp
 * queues the head and the body of a message as two buffer chains, and bufferevent_openssl
 * calls SSL_write once per chain: two records, two write() calls, and on the peer two records
 * to decrypt with two read() calls each. Joining the chains (up to MH_COALESCE_MAX bytes) as
 * they are queued halves all of that. bev is borrowed; the callback lives as long as its
 * output buffer. Returns 0, or -1 when the callback cannot be added.
 */
#define MH_COALESCE_MAX 16384
int mh_bev_coalesce_output(struct bufferevent *bev);

#endif
