#include "common/evloop.h"

#include <event2/buffer.h>
#include <stddef.h>

struct event_base *mh_event_base_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base = NULL;
    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/*
 * Runs after every change to the output buffer. Only bytes added matter; pulling up moves
 * bytes without adding or draining any, so it does not call this again.
 */
static void coalesce_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)arg;
    size_t len = evbuffer_get_length(buf);
    if (info->n_added == 0 || len > MH_COALESCE_MAX)
        return;
    if (evbuffer_get_contiguous_space(buf) < len)
        evbuffer_pullup(buf, -1);
}

int mh_bev_coalesce_output(struct bufferevent *bev)
{
    return evbuffer_add_cb(bufferevent_get_output(bev), coalesce_cb, NULL) != NULL ? 0 : -1;
}
