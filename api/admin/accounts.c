/* account add NAME [--if-missing] */
#include "admin_internal.h"

#include "common/log.h"
#include "common/provision.h"

int api_admin_account_add(const api_admin_ctx_t *ctx, const char *name, bool if_missing)
{
    int rc = -1;
    PGconn *conn = NULL;
    int64_t id = 0;
    bool created = false;

    if (!mh_account_name_valid(name)) {
        mh_log(MH_LOG_ERROR,
               "account '%.80s': invalid name (1-64 of A-Z a-z 0-9 . _ @ -, "
               "starting with a letter or digit)",
               name);
        goto fail;
    }
    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;
    if (mh_prov_account_ensure(conn, name, &id, &created) != 0)
        goto fail;
    if (!created && !if_missing) {
        mh_log(MH_LOG_ERROR, "account %s already exists (id %lld)", name, (long long)id);
        goto fail;
    }
    rc = api_admin_print_json(json_pack("{s:s, s:I}", "account", name, "id", (json_int_t)id));
fail:
    PQfinish(conn);
    return rc;
}
