#!/usr/bin/env bash
#
# ingest/accept.lua, the script every accepted batch goes through, run against the real Redis
# as meterhub_ingest (SCRIPT LOAD + EVALSHA, as ingest does): several batches in one call make
# one stream entry with a field "e" per accepted batch; batches of one sensor in one call see
# each other; a counter going backwards is refused alone, naming the stored reading; a replay
# of stored readings is accepted without moving the counter state back; a call whose batches
# are all refused adds nothing; a full stream refuses the whole call and changes nothing.
set -euo pipefail
# shellcheck source=tests/lib/testlib.sh
source "$MH_SRC/tests/lib/testlib.sh"

t_init accept_script

Q="$T_PREFIX:{0}:q"
LAST="$T_PREFIX:{0}:last"
sha="$(t_redis_as ingest SCRIPT LOAD "$(cat "$MH_SRC/ingest/accept.lua")")"
t_like "meterhub_ingest loads the script" '^[0-9a-f]{40}$' "$sha"

# accept MAX_BACKLOG N ARGS...: the reply, one element per line (an empty verdict is an empty
# line), then "end" (so that $(...) keeps trailing empty verdicts).
accept() {
    t_redis_as ingest EVALSHA "$sha" 2 "$Q" "$LAST" "$@" 2>&1
    echo end
}
# entry_fields ID: the field values of one stream entry, space-separated.
entry_fields() { t_redis XRANGE "$Q" "$1" "$1" | sed -n '3~2p' | paste -sd' '; }
nth() { sed -n "${1}p" <<<"$2"; }

# 1. A counter batch (sensor 7: readings at 100 and 101), a gauge and a heartbeat.
r="$(accept 1000 3 \
    counter-a 7 101 6 2 100 5 101 6 \
    gauge-a "" "" "" 0 \
    heartbeat-a "" "" "" 0)"
id="$(nth 1 "$r")"
t_like "three batches: one entry" '^[0-9]+-[0-9]+$' "$id"
t_eq "the stream's length is answered" 1 "$(nth 2 "$r")"
t_eq "three verdicts, all accepted" "||" "$(sed -n '3,5p' <<<"$r" | paste -sd'|')"
t_eq "the entry holds the three batches, in order" "counter-a gauge-a heartbeat-a" "$(entry_fields "$id")"
t_eq "one entry in the stream" 1 "$(t_redis XLEN "$Q")"
t_eq "the counter's newest reading is recorded" "101 6" "$(t_redis HGET "$LAST" 7)"

# 2. Two batches of sensor 7 in one call: the second goes backwards from the first.
r="$(accept 1000 2 counter-b 7 102 7 1 102 7 counter-c 7 103 4 1 103 4)"
id="$(nth 1 "$r")"
t_eq "the first is accepted" "" "$(nth 3 "$r")"
t_eq "the second is refused against the first, not the stored state" "D102 7" "$(nth 4 "$r")"
t_eq "the entry holds only the accepted batch" "counter-b" "$(entry_fields "$id")"
t_eq "the state is the accepted batch's newest" "102 7" "$(t_redis HGET "$LAST" 7)"

# 3. A replay of stored readings (none newer than the state): accepted, state unchanged.
r="$(accept 1000 1 counter-replay 7 102 7 3 100 5 101 6 102 7)"
t_eq "a replay is accepted" "" "$(nth 3 "$r")"
t_eq "a replay leaves the state" "102 7" "$(t_redis HGET "$LAST" 7)"
t_eq "three entries so far" 3 "$(t_redis XLEN "$Q")"

# 4. Every batch refused: no entry at all.
r="$(accept 1000 1 counter-d 7 104 1 1 104 1)"
t_eq "nothing joined: no id" "" "$(nth 1 "$r")"
t_eq "the refusal names the stored reading" "D102 7" "$(nth 3 "$r")"
t_eq "still three entries" 3 "$(t_redis XLEN "$Q")"
t_eq "the state is unchanged by a refusal" "102 7" "$(t_redis HGET "$LAST" 7)"

# 5. A full stream refuses the whole call and changes nothing.
r="$(accept 3 2 gauge-b "" "" "" 0 counter-e 7 200 9 1 200 9)"
t_like "a full stream refuses the call" '^MHBACKLOG' "$r"
t_eq "no entry added by a refused call" 3 "$(t_redis XLEN "$Q")"
t_eq "no state changed by a refused call" "102 7" "$(t_redis HGET "$LAST" 7)"

t_done
