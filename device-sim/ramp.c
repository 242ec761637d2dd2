#include "device-sim/ramp.h"

#include "common/alloc.h"
#include "common/log.h"

#include <stdlib.h>

struct sim_ramp {
    sim_run_t *run;
    uint32_t *rank;
    size_t active, step;
    double every_s, p99_ms;
    double step_start_s;  /* when the current step began, seconds since the start */
    sim_stats_t *at_step; /* merged figures when the current step began */
    sim_stats_t *now, *scratch;
    sim_ramp_step_t *steps;
    size_t nsteps, alloc;
    long knee;
    bool done;
    sim_ramp_end_t end;
};

sim_ramp_t *sim_ramp_new(sim_run_t *run, unsigned nthreads)
{
    sim_ramp_t *r = mh_calloc(1, sizeof(*r));
    const sim_options_t *o = run->opts;
    size_t n = run->ndevices, tenth = n / 10 ? n / 10 : 1, next = 0;

    r->run = run;
    r->rank = mh_malloc((n ? n : 1) * sizeof(*r->rank));
    /* Round-robin over the workers' slices: step k's devices are spread over every thread. */
    for (size_t i = 0; next < n; i++)
        for (unsigned t = 0; t < nthreads; t++) {
            size_t first = n * t / nthreads, count = n * (t + 1) / nthreads - first;
            if (i < count)
                r->rank[first + i] = (uint32_t)next++;
        }
    r->active = o->ramp_start ? o->ramp_start : tenth;
    if (r->active > n)
        r->active = n;
    r->step = o->ramp_step ? o->ramp_step : tenth;
    r->every_s = o->ramp_every_s;
    r->p99_ms = o->ramp_p99_ms;
    r->knee = -1;
    r->end = SIM_RAMP_END_STOPPED;
    r->at_step = mh_malloc(sizeof(*r->at_step));
    r->now = mh_malloc(sizeof(*r->now));
    r->scratch = mh_malloc(sizeof(*r->scratch));
    sim_stats_init(r->at_step);
    run->rank = r->rank;
    atomic_store(&run->active, r->active);
    return r;
}

static void merge_all(sim_ramp_t *r, sim_worker_t **workers, size_t nworkers)
{
    sim_stats_init(r->now);
    for (size_t i = 0; i < nworkers; i++) {
        sim_worker_snapshot(workers[i], r->scratch);
        sim_stats_merge(r->now, r->scratch);
    }
}

/* Ends the ramp: the workers stop at their next tick. */
static void finish(sim_ramp_t *r, sim_ramp_end_t end)
{
    r->done = true;
    r->end = end;
    atomic_store(&r->run->stop, true);
}

void sim_ramp_poll(sim_ramp_t *r, sim_worker_t **workers, size_t nworkers)
{
    double el = (double)(sim_mono_us() - r->run->t0_mono_us) / 1e6;
    if (r->done || el - r->step_start_s < r->every_s)
        return;
    /* The run stopped for another reason meanwhile: the step is not a whole one. */
    if (atomic_load(&r->run->stop))
        return;
    merge_all(r, workers, nworkers);
    sim_ramp_step_t st = {0};
    st.devices = (uint32_t)r->active;
    st.seconds = el - r->step_start_s;
    st.requests = r->now->requests - r->at_step->requests;
    st.errors = st.requests - (r->now->ok - r->at_step->ok);
    /* The step's own latencies: the histogram now less the one at its start. */
    r->scratch->latency = r->now->latency;
    sim_hist_sub(&r->scratch->latency, &r->at_step->latency);
    st.p50_ms = (double)sim_hist_quantile(&r->scratch->latency, 0.5) / 1000.0;
    st.p99_ms = (double)sim_hist_quantile(&r->scratch->latency, 0.99) / 1000.0;
    if (r->nsteps == r->alloc) {
        r->alloc = r->alloc ? r->alloc * 2 : 16;
        r->steps = mh_realloc(r->steps, r->alloc * sizeof(*r->steps));
    }
    r->steps[r->nsteps++] = st;
    *r->at_step = *r->now;
    r->step_start_s = el;
    if (!sim_ramp_step_ok(&st, r->p99_ms)) {
        finish(r, st.p99_ms > r->p99_ms ? SIM_RAMP_END_P99 : SIM_RAMP_END_ERRORS);
        return;
    }
    r->knee = (long)r->nsteps - 1;
    if (r->active >= r->run->ndevices) {
        finish(r, SIM_RAMP_END_FLEET);
        return;
    }
    r->active += r->step;
    if (r->active > r->run->ndevices)
        r->active = r->run->ndevices;
    atomic_store(&r->run->active, r->active);
    mh_log(MH_LOG_INFO, "ramp: step %zu, %zu devices", r->nsteps + 1, r->active);
}

void sim_ramp_report(const sim_ramp_t *r, sim_report_t *report)
{
    report->ramp = true;
    report->steps = r->steps;
    report->nsteps = r->nsteps;
    report->knee = r->knee;
    report->ramp_end = r->end;
    report->ramp_every_s = r->every_s;
    report->ramp_p99_ms = r->p99_ms;
}

void sim_ramp_free(sim_ramp_t *r)
{
    if (r == NULL)
        return;
    free(r->rank);
    free(r->at_step);
    free(r->now);
    free(r->scratch);
    free(r->steps);
    free(r);
}
