/*
 * The database pool: db_threads threads, each with its own blocking libpq connection, take
 * jobs from one queue. Blocking calls are fine here: they block a pool thread, never the
 * event loop. Answers go back through a list and one event the loop thread owns.
 */
#include "api_internal.h"

#include "common/log.h"
#include "common/pg.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_job_error(api_job_t *job, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    job->status = status;
    job->err_code = code;
    va_start(ap, fmt);
    vsnprintf(job->err_msg, sizeof(job->err_msg), fmt, ap);
    va_end(ap);
    json_decref(job->out);
    job->out = NULL;
}

void api_db_fail(api_job_t *job, PGconn *pg, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
    msg[strcspn(msg, "\r\n")] = '\0';
    mh_log(MH_LOG_ERROR, "api: %s: %s", what, msg[0] ? msg : "failed");
    atomic_fetch_add_explicit(&job->srv->metrics.db_errors, 1, memory_order_relaxed);
    if (!mh_pg_conn_lost(pg) && PQtransactionStatus(pg) != PQTRANS_IDLE) {
        PGresult *r = PQexec(pg, "ROLLBACK");
        PQclear(r);
    }
    api_job_error(job, 503, "unavailable", "the database is unavailable; retry later");
    job->retry_after = 2;
}

static bool exec_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

static const char token_auth_sql[] = "SELECT account_id, scope FROM api_token_auth($1::bytea)";
static const char bind_sql[] = "SELECT set_config('meterhub.account', $1, true)";

/*
 * Opens a transaction with begin_sql and binds account to it; account 0 (an anonymous caller)
 * binds none: api_account() is NULL and every policy but the public ones hides everything.
 * 0, or -1 after api_db_fail.
 */
static int bind_account(api_job_t *job, PGconn *pg, long long account, const char *begin_sql)
{
    char acc[24];
    const char *values[1] = {acc};

    snprintf(acc, sizeof(acc), "%lld", account);
    if (!exec_ok(pg, begin_sql)) {
        api_db_fail(job, pg, "BEGIN");
        return -1;
    }
    if (account == 0)
        return 0;
    /* true: local to this transaction, so a pooled connection never carries it further. */
    PGresult *r = api_db_exec_cached(pg, bind_sql, 1, values, NULL, NULL);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (!ok) {
        api_db_fail(job, pg, "binding the account");
        return -1;
    }
    return 0;
}

/* The account of the job's bearer token (wiped here), 0 for no token where the job allows
 * anonymous callers, or -1 with the job's error answer set. */
static long long token_account(api_job_t *job, PGconn *pg)
{
    uint8_t hash[32];
    const char *values[1];
    int lengths[1], formats[1] = {1};
    PGresult *r = NULL;
    long long account = -1;

    if (job->token[0] == '\0' && job->anonymous_ok) {
        account = 0;
        goto done;
    }
    if (job->token[0] == '\0') {
        api_job_error(job, 401, "unauthorized",
                      "send a bearer token: Authorization: Bearer <token> (POST /v1/tokens)");
        goto done;
    }
    if (!mh_token_well_formed(job->token) || mh_token_hash(job->token, hash) != 0) {
        api_job_error(job, 401, "invalid_token", "the token is not valid");
        goto done;
    }
    values[0] = (const char *)hash;
    lengths[0] = sizeof(hash);
    r = api_db_exec_cached(pg, token_auth_sql, 1, values, lengths, formats);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_fail(job, pg, "token check");
        goto done;
    }
    if (PQntuples(r) != 1) {
        api_job_error(job, 401, "invalid_token", "the token is not valid, expired or revoked");
        goto done;
    }
    if (job->need == API_SCOPE_MANAGE && strcmp(PQgetvalue(r, 0, 1), "manage") != 0) {
        api_job_error(job, 403, "insufficient_scope", "this needs a token with scope manage");
        goto done;
    }
    account = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
done:
    PQclear(r);
    OPENSSL_cleanse(job->token, sizeof(job->token));
    return account;
}

PGresult *api_db_exec(api_job_t *job, PGconn *pg, const char *sql, int n, const char *const *values,
                      const char *what)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        PQclear(r);
        api_db_fail(job, pg, what);
        return NULL;
    }
    return r;
}

/*
 * Statements prepared on this thread's connection, by the address of their text. Planning a
 * read costs more than running it (the readings table has a partition per month), so the hot
 * statements are planned once per connection. Thread-local: a pool thread owns one connection.
 */
#define PREPARED_MAX 64
static _Thread_local struct {
    const char *sql[PREPARED_MAX];
    int count;
} prepared;

/* Forgets every prepared statement: called when the thread's connection is (re)made. */
static void prepared_reset(void)
{
    prepared.count = 0;
}

PGresult *api_db_exec_cached(PGconn *pg, const char *sql, int n, const char *const *values,
                             const int *lengths, const int *formats)
{
    char name[16];
    int i = 0;
    while (i < prepared.count && prepared.sql[i] != sql)
        i++;
    if (i == prepared.count) {
        if (i == PREPARED_MAX)
            return PQexecParams(pg, sql, n, NULL, values, lengths, formats, 0);
        snprintf(name, sizeof(name), "mh%d", i);
        PGresult *r = PQprepare(pg, name, sql, n, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return PQexecParams(pg, sql, n, NULL, values, lengths, formats, 0);
        prepared.sql[prepared.count++] = sql;
    }
    snprintf(name, sizeof(name), "mh%d", i);
    return PQexecPrepared(pg, name, n, values, lengths, formats, 0);
}

long long api_db_begin_as(api_job_t *job, PGconn *pg)
{
    long long account = token_account(job, pg);
    if (account < 0 || bind_account(job, pg, account, "BEGIN") != 0)
        return -1;
    return account;
}

long long api_db_begin_snapshot_as(api_job_t *job, PGconn *pg)
{
    long long account = token_account(job, pg);
    if (account < 0 ||
        bind_account(job, pg, account, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0)
        return -1;
    return account;
}

int api_db_bind(api_job_t *job, PGconn *pg, long long account)
{
    return bind_account(job, pg, account, "BEGIN");
}

int api_db_commit(api_job_t *job, PGconn *pg)
{
    PGresult *r = PQexec(pg, "COMMIT");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!ok) {
        api_db_fail(job, pg, "COMMIT");
        return -1;
    }
    return 0;
}

static PGconn *connect_pg(api_server_t *srv, bool *logged)
{
    char err[512];
    PGconn *pg = mh_pg_connect_quiet(srv->cfg->pg.conninfo, "meterhub-api", err, sizeof(err));
    if (pg == NULL) {
        if (!*logged)
            mh_log(MH_LOG_WARN, "api: PostgreSQL unavailable (%s); answering 503", err);
        *logged = true;
        return NULL;
    }
    /* A hung query must not hold a pool thread for ever. */
    if (!exec_ok(pg, "SET statement_timeout = '10s'")) {
        PQfinish(pg);
        return NULL;
    }
    prepared_reset();
    if (*logged)
        mh_log(MH_LOG_INFO, "api: PostgreSQL connection restored");
    *logged = false;
    return pg;
}

static void finish(api_server_t *srv, api_job_t *job)
{
    pthread_mutex_lock(&srv->lock);
    job->next = NULL;
    if (srv->done_tail)
        srv->done_tail->next = job;
    else
        srv->done_head = job;
    srv->done_tail = job;
    pthread_mutex_unlock(&srv->lock);
    event_active(srv->done_ev, EV_READ, 0);
}

static void *db_main(void *arg)
{
    api_server_t *srv = arg;
    bool down_logged = false;
    /* Connect at once: health reports the pool, and the first request should not wait. */
    PGconn *pg = connect_pg(srv, &down_logged);
    if (pg != NULL)
        atomic_fetch_add(&srv->db_ready, 1);

    for (;;) {
        pthread_mutex_lock(&srv->lock);
        while (srv->queue_head == NULL && !srv->stopping)
            pthread_cond_wait(&srv->cond, &srv->lock);
        if (srv->queue_head == NULL) { /* stopping and nothing left */
            pthread_mutex_unlock(&srv->lock);
            break;
        }
        api_job_t *job = srv->queue_head;
        srv->queue_head = job->next;
        if (srv->queue_head == NULL)
            srv->queue_tail = NULL;
        pthread_mutex_unlock(&srv->lock);

        if (pg != NULL && mh_pg_conn_lost(pg)) {
            PQfinish(pg);
            pg = NULL;
            atomic_fetch_sub(&srv->db_ready, 1);
        }
        if (pg == NULL) {
            pg = connect_pg(srv, &down_logged);
            if (pg != NULL)
                atomic_fetch_add(&srv->db_ready, 1);
        }
        if (pg == NULL) {
            api_job_error(job, 503, "unavailable", "the database is unavailable; retry later");
            job->retry_after = 2;
        } else {
            job->run(job, pg);
        }
        OPENSSL_cleanse(job->token, sizeof(job->token));
        finish(srv, job);
    }
    if (pg != NULL)
        PQfinish(pg);
    return NULL;
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    api_server_t *srv = arg;
    pthread_mutex_lock(&srv->lock);
    api_job_t *list = srv->done_head;
    srv->done_head = srv->done_tail = NULL;
    pthread_mutex_unlock(&srv->lock);
    while (list != NULL) {
        api_job_t *next = list->next;
        api_job_answer(list);
        list = next;
    }
}

int api_db_start(api_server_t *srv)
{
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    srv->done_ev = event_new(srv->base, -1, EV_PERSIST, done_cb, srv);
    if (srv->done_ev == NULL)
        return -1;
    srv->threads = calloc((size_t)srv->cfg->api.db_threads, sizeof(*srv->threads));
    if (srv->threads == NULL)
        return -1;
    for (long i = 0; i < srv->cfg->api.db_threads; i++) {
        if (pthread_create(&srv->threads[i], NULL, db_main, srv) != 0) {
            mh_log(MH_LOG_ERROR, "api: cannot start database thread %ld", i);
            return -1;
        }
        srv->nthreads++;
    }
    return 0;
}

void api_db_stop(api_server_t *srv)
{
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < srv->nthreads; i++)
        pthread_join(srv->threads[i], NULL);
    srv->nthreads = 0;
    free(srv->threads);
    srv->threads = NULL;
    /* Answers that arrived after the loop stopped are dropped with their connections. */
    while (srv->done_head != NULL) {
        api_job_t *next = srv->done_head->next;
        api_stream_free(srv->done_head->stream);
        json_decref(srv->done_head->in);
        json_decref(srv->done_head->out);
        free(srv->done_head->text);
        free(srv->done_head);
        srv->done_head = next;
    }
    if (srv->done_ev != NULL)
        event_free(srv->done_ev);
    srv->done_ev = NULL;
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->lock);
}

void api_db_submit(api_server_t *srv, api_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&srv->lock);
    if (srv->queue_tail)
        srv->queue_tail->next = job;
    else
        srv->queue_head = job;
    srv->queue_tail = job;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}
