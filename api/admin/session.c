/* What every job needs: a database connection (common/tool.h prints and logs). */
#include "admin_internal.h"

#include "common/tool.h"

PGconn *api_admin_connect(const api_admin_ctx_t *ctx)
{
    return mh_tool_connect(ctx->pg_uri, "meterhub-admin");
}
