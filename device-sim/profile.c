/*
 * Household profiles. Every rate is a pure function of (household key, time): the daily shape
 * comes from smooth bumps over the hours of the day (UTC), and the random events (appliances,
 * heating cycles, water draws) are drawn by hashing the key with the index of a fixed time slot. So
 * the rate at t does not depend on when or how often it is sampled, sensors of one household
 * agree (the power gauge is what the electricity counter integrates), and a repeated run gives
 * the same series. The per-sensor generator only decides gaps, the gauge's measurement noise
 * and the starting meter reading.
 *
 * Averages over many households (factor 0.5..2, median 1, i.e. two or three people):
 * electricity ~10-11 kWh/day, water ~360 L/day, gas ~9 m3/day in January and ~0.5 m3/day in
 * July; the power gauge stays below ~8 kW.
 */
#include "device-sim/profile.h"

#include "device-sim/backoff.h"

#include <math.h>

#define DAY_S 86400.0
#define YEAR_D 365.2425
#define TWO_PI 6.283185307179586

/* Integration step: short water draws (10 s taps) must not fall between two samples. */
#define STEP_S 10.0
/* A long outage integrates with coarser steps rather than costing unbounded time. */
#define MAX_STEPS 8640

#define GAP_PROB 0.005

/* Salts separating the hash streams of one household. */
enum {
    SALT_HOUSEHOLD = 1,
    SALT_BASE,
    SALT_SHIFT_AM,
    SALT_SHIFT_PM,
    SALT_FRIDGE,
    SALT_HEAT_PHASE,
    SALT_THERMOSTAT,
    SALT_APPLIANCE,
    SALT_GAS_DRAW,
    SALT_WATER_DRAW,
};

/* Household parameters, recomputed from the key at each reading (a few hashes): the profile
 * struct stays as small as its header promises. */
typedef struct household {
    uint64_t key;
    double scale;    /* ~0.5..2, how big the household is */
    double base_w;   /* always-on load */
    double shift_am; /* hours the morning routine is early (< 0) or late */
    double shift_pm; /* same for the evening */
    double fridge_s; /* phase of the fridge compressor cycle */
    double heat_s;   /* phase of the boiler's thermostat cycle */
    double thermo;   /* heating demand factor (insulation, thermostat setting) */
} household_t;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash3(uint64_t key, uint64_t salt, uint64_t n)
{
    return mix64(key ^ mix64(salt * 0x9E3779B97F4A7C15ull + mix64(n)));
}

/* Uniform in [0, 1) from a hash. */
static double unit_of(uint64_t h)
{
    return (double)(h >> 11) * 0x1p-53;
}

static double key_unit(uint64_t key, uint64_t salt)
{
    return unit_of(hash3(key, salt, 0));
}

static double household_scale(uint64_t key)
{
    /* Log-uniform over 0.5..2: as many households half the median size as twice it. */
    return exp(log(0.5) + key_unit(key, SALT_HOUSEHOLD) * log(4.0));
}

static void household_load(household_t *hh, uint64_t key, double scale)
{
    hh->key = key;
    hh->scale = scale;
    hh->base_w = (100.0 + 200.0 * key_unit(key, SALT_BASE)) * scale;
    hh->shift_am = key_unit(key, SALT_SHIFT_AM) - 0.5;
    hh->shift_pm = key_unit(key, SALT_SHIFT_PM) - 0.5;
    hh->fridge_s = 2400.0 * key_unit(key, SALT_FRIDGE);
    hh->heat_s = 1200.0 * key_unit(key, SALT_HEAT_PHASE);
    hh->thermo = 0.7 + 0.6 * key_unit(key, SALT_THERMOSTAT);
}

/* Hour of the day in [0, 24), UTC. */
static double hour_of(double t)
{
    double s = fmod(t, DAY_S);
    if (s < 0)
        s += DAY_S;
    return s / 3600.0;
}

/* 1 in mid-January, 0 in mid-July (northern hemisphere heating season). */
static double winter_of(double t)
{
    double doy = fmod(t / DAY_S, YEAR_D);
    if (doy < 0)
        doy += YEAR_D;
    return 0.5 * (1.0 + cos(TWO_PI * (doy - 15.0) / YEAR_D));
}

/* Raised cosine over [from, to]: 0 at both ends, 1 in the middle. */
static double bump(double h, double from, double to)
{
    if (h <= from || h >= to)
        return 0;
    return 0.5 * (1.0 - cos(TWO_PI * (h - from) / (to - from)));
}

static double morning(const household_t *hh, double h)
{
    return bump(h - hh->shift_am, 6.0, 9.0);
}

static double evening(const household_t *hh, double h)
{
    return bump(h - hh->shift_pm, 17.0, 23.0);
}

/* How likely someone is to be doing something at hour h: low at night. */
static double activity(const household_t *hh, double h)
{
    double a = (h >= 0.5 && h < 6.0) ? 0.05 : 0.4;
    return a + 1.2 * morning(hh, h) + 1.0 * evening(hh, h);
}

/*
 * A slot-drawn event: slot n (slot_s long) holds at most one event, present with probability
 * p_scale * activity at the slot's middle, starting at a hashed offset within the slot. Its
 * length is the caller's, from len_u, so an event may run into the following slots: callers
 * look back over as many slots as their longest event spans.
 */
typedef struct event {
    double start; /* seconds */
    double len_u; /* uniform in [0, 1), for the length */
    uint64_t h;   /* further randomness for the caller */
} event_t;

static bool slot_event(const household_t *hh, uint64_t salt, int64_t n, double slot_s,
                       double p_scale, event_t *ev)
{
    uint64_t h = hash3(hh->key, salt, (uint64_t)n);
    double p = p_scale * activity(hh, hour_of(((double)n + 0.5) * slot_s));
    if (p > 0.9)
        p = 0.9;
    if (unit_of(h) >= p)
        return false;
    h = mix64(h);
    ev->start = (double)n * slot_s + slot_s * unit_of(h);
    h = mix64(h);
    ev->len_u = unit_of(h);
    ev->h = mix64(h);
    return true;
}

static int64_t slot_index(double t, double slot_s)
{
    return (int64_t)floor(t / slot_s);
}

/* Appliances: kettle, microwave, cooking, washing machine, dishwasher, vacuum. */
static double appliance_w(const household_t *hh, double t)
{
    static const struct {
        double w, min_s, max_s;
    } kinds[] = {
        {2000, 90, 240},   {900, 60, 300},    {1800, 600, 1800},
        {2000, 900, 1800}, {1800, 900, 1800}, {1200, 300, 900},
    };
    const double slot_s = 600;
    const double max_s = 1800;
    double w = 0;
    int64_t n = slot_index(t, slot_s);
    for (int64_t k = n - (int64_t)(max_s / slot_s); k <= n; k++) {
        event_t ev;
        if (!slot_event(hh, SALT_APPLIANCE, k, slot_s, 0.06 * sqrt(hh->scale), &ev))
            continue;
        unsigned kind = (unsigned)(ev.h % (sizeof(kinds) / sizeof(kinds[0])));
        double len = kinds[kind].min_s + (kinds[kind].max_s - kinds[kind].min_s) * ev.len_u;
        if (t >= ev.start && t < ev.start + len)
            w += kinds[kind].w;
    }
    return w;
}

static double electricity_w(const household_t *hh, double t)
{
    double h = hour_of(t);
    double w = hh->base_w;
    /* The compressor runs about 15 minutes in 40. */
    if (fmod(t + hh->fridge_s, 2400.0) < 900.0)
        w += 90.0;
    w += 450.0 * hh->scale * morning(hh, h);
    /* Lighting makes winter evenings heavier. */
    w += (700.0 + 300.0 * winter_of(t)) * hh->scale * evening(hh, h);
    return w + appliance_w(hh, t);
}

/* Water draws in L/s: showers (8-10 L/min for minutes), taps and toilet flushes. */
static double water_lps(const household_t *hh, double t)
{
    const double slot_s = 300;
    const double max_s = 600;
    double lps = 0;
    int64_t n = slot_index(t, slot_s);
    for (int64_t k = n - (int64_t)(max_s / slot_s); k <= n; k++) {
        event_t ev;
        if (!slot_event(hh, SALT_WATER_DRAW, k, slot_s, 0.12 * hh->scale, &ev))
            continue;
        double u = unit_of(ev.h), v = unit_of(mix64(ev.h));
        double h = hour_of(ev.start);
        /* Showers mostly belong to the routines, taps and flushes to any waking hour. */
        double p_shower = 0.05 + 0.4 * (morning(hh, h) + evening(hh, h));
        double len, lpm;
        if (u < p_shower) {
            lpm = 8.0 + 2.0 * v;
            len = 240.0 + 360.0 * ev.len_u;
        } else if (u < p_shower + 0.35 * (1 - p_shower)) {
            lpm = 6.0 + 2.0 * v; /* toilet cistern refilling */
            len = 50.0 + 30.0 * ev.len_u;
        } else {
            lpm = 4.0 + 4.0 * v;
            len = 10.0 + 80.0 * ev.len_u;
        }
        if (t >= ev.start && t < ev.start + len)
            lps += lpm / 60.0;
    }
    return lps;
}

/* Gas in L/s: space heating cycling on a thermostat, plus hot water and cooking. */
static double gas_lps(const household_t *hh, double t)
{
    double h = hour_of(t);
    double w = winter_of(t);
    /* Night setback, a warm-up before breakfast, a lower daytime level, a warm evening. */
    double schedule = (h >= 23.0 || h < 5.5) ? 0.05 : 0.2;
    schedule += 0.7 * morning(hh, h) + 0.4 * evening(hh, h);
    if (h >= 17.0 && h < 22.5)
        schedule += 0.25;
    double duty = hh->thermo * w * w * schedule;
    if (duty > 1)
        duty = 1;
    double lph = 0;
    /* The burner fires at full rate for a share of each 20-minute cycle. */
    if (fmod(t + hh->heat_s, 1200.0) < duty * 1200.0)
        lph += 1200.0 * sqrt(hh->scale);

    const double slot_s = 600;
    const double max_s = 1800;
    int64_t n = slot_index(t, slot_s);
    for (int64_t k = n - (int64_t)(max_s / slot_s); k <= n; k++) {
        event_t ev;
        if (!slot_event(hh, SALT_GAS_DRAW, k, slot_s, 0.03 * hh->scale, &ev))
            continue;
        /* Either a hot-water draw through the boiler or a hob burning for a meal. */
        if (unit_of(ev.h) < 0.6) {
            if (t >= ev.start && t < ev.start + 300.0 + 300.0 * ev.len_u)
                lph += 1800.0;
        } else {
            if (t >= ev.start && t < ev.start + 900.0 + 900.0 * ev.len_u)
                lph += 300.0;
        }
    }
    return lph / 3600.0;
}

/* The rate of a counter in its unit per second. */
static double counter_rate(const household_t *hh, sim_sensor_kind_t kind, double t)
{
    switch (kind) {
    case SIM_ELECTRICITY_WH:
        return electricity_w(hh, t) / 3600.0;
    case SIM_GAS_L:
        return gas_lps(hh, t);
    case SIM_WATER_L:
        return water_lps(hh, t);
    case SIM_POWER_W:
        break;
    }
    return 0;
}

/* Midpoint rule over (t0, t1]: a function of the two timestamps only, so a repeated call
 * sequence integrates bit-identically. */
static double integrate(const household_t *hh, sim_sensor_kind_t kind, double t0, double t1)
{
    double dt = t1 - t0;
    long steps = (long)ceil(dt / STEP_S);
    if (steps < 1)
        steps = 1;
    if (steps > MAX_STEPS)
        steps = MAX_STEPS;
    double h = dt / (double)steps, sum = 0;
    for (long i = 0; i < steps; i++)
        sum += counter_rate(hh, kind, t0 + ((double)i + 0.5) * h);
    return sum * h;
}

sim_sensor_kind_t sim_profile_kind(unsigned sensor_index)
{
    return (sim_sensor_kind_t)(sensor_index % 4);
}

void sim_profile_continue(sim_profile_t *p, double value)
{
    if (sim_profile_is_counter(p->kind) && isfinite(value) && value > p->counter)
        p->counter = value;
}

bool sim_profile_is_counter(sim_sensor_kind_t kind)
{
    return kind != SIM_POWER_W;
}

void sim_profile_init(sim_profile_t *p, uint64_t seed, uint64_t device_index, unsigned sensor_index)
{
    uint64_t dev = mix64(sim_rand_seed(seed) ^ mix64(device_index + 1));
    p->kind = sim_profile_kind(sensor_index);
    p->key = mix64(dev ^ (sensor_index / 4 + 1) * 0xD1B54A32D192ED03ull);
    p->rng = sim_rand_seed(dev ^ mix64((uint64_t)sensor_index + 0x5EED));
    p->household = household_scale(p->key);
    p->last_ts = 0;
    p->gap_prob = GAP_PROB;
    /* An installed meter has been counting for years. */
    double u = sim_rand_unit(&p->rng);
    switch (p->kind) {
    case SIM_ELECTRICITY_WH:
        p->counter = floor(1e6 + u * 4.9e7);
        break;
    case SIM_GAS_L:
        p->counter = floor(1e5 + u * 2e7);
        break;
    case SIM_WATER_L:
        p->counter = floor(1e4 + u * 5e6);
        break;
    case SIM_POWER_W:
        p->counter = 0;
        break;
    }
}

bool sim_profile_next(sim_profile_t *p, int64_t ts, double *value)
{
    household_t hh;
    household_load(&hh, p->key, p->household);

    /* Both draws happen on every call, so the stream stays aligned with the call sequence
     * whichever branch is taken. */
    bool gap = sim_rand_unit(&p->rng) < p->gap_prob;
    double noise = sim_rand_unit(&p->rng);

    if (sim_profile_is_counter(p->kind)) {
        /* Time going backwards (a caller bug) adds nothing rather than subtracting. */
        if (p->last_ts != 0 && ts > p->last_ts)
            p->counter += integrate(&hh, p->kind, (double)p->last_ts, (double)ts);
    }
    if (p->last_ts == 0 || ts > p->last_ts)
        p->last_ts = ts;
    if (gap)
        return false;

    if (sim_profile_is_counter(p->kind)) {
        /* Meters count whole pulses (1 Wh, 1 L); floor keeps the series non-decreasing. */
        *value = floor(p->counter);
    } else {
        /* A clamp-meter reading is within about 1 % of the true load. */
        double w = electricity_w(&hh, (double)ts) * (0.99 + 0.02 * noise);
        *value = floor(w + 0.5);
    }
    return true;
}
