#!/usr/bin/env bash
#
# A small firmware campaign end to end: a release signed and published by meterhub-release, a
# rollout, owners' consent set as owners set it, and a fleet of meterhub-sim meters (half of
# them with their own remote_upgrade flag on) running the upgrade scenario against ingest: only
# the meters with both the flag and consent (auto, or ask with the release approved) are
# offered the release and served its image; each downloads it, cut on purpose and resumed with
# Range, checks it, installs it, reports it, and then runs the new version. The run's report and
# PostgreSQL (upgrade_offers, devices, the audit trail) must agree.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/release_helpers.sh"
source "$MH_SRC/tests/lib/sim_upgrade_helpers.sh"

t_init sim_upgrade
t_upg_start

fleet="$T_WORK/fleet"
t_upg_mixed_fleet "$fleet" 16 0.5 3 2
mapfile -t ids < <(jq -r .device "$fleet/fleet.json")

# The flags are fixed by the ids: sort the fleet by flag, then pick owners' choices so that
# each kind of meter is there: flag on with consent (auto; one under ask with the release
# approved), flag on without (ask not approved, off), flag off with consent.
on=() off=()
for id in "${ids[@]}"; do
    if t_upg_flag "$id" 0.5; then on+=("$id"); else off+=("$id"); fi
done
# Flag on: the first half of them consent (the first under ask), the rest do not.
nyes=$(((${#on[@]} + 1) / 2))
yes=("${on[@]:0:nyes}")
no=("${on[@]:nyes}")
# Flag off: the first two consent all the same (they must never be offered anything).
offyes=("${off[@]:0:2}")

rel="$(t_release_new 2.4.1 flm02 200000)"
t_rollout_create --release "$rel" --percent 100 >/dev/null

t_upg_consent "${yes[0]}" ask
t_upg_approve "${yes[0]}" "$rel"
for id in "${yes[@]:1}" "${offyes[@]}"; do t_upg_consent "$id" auto; done
# Flag on without consent: one under ask (not approved), the others left off.
t_upg_consent "${no[0]}" ask
printf '%s\n' "${yes[@]}" "${offyes[@]}" >"$T_WORK/consent.txt"

t_upg_sim "$fleet" campaign --expect-consent "$T_WORK/consent.txt" --remote-upgrade 0.5 \
    --download-drop-after 50000
sed 's/^/# /' "$T_WORK/campaign.out"
n=${#yes[@]}
t_eq "campaign: exit 0 (every expected meter installed)" 0 "$T_UPG_RC"
((T_UPG_RC == 0)) || t_upg_show campaign
J="$T_WORK/campaign.json"
t_eq "report: meters with the flag on" "${#on[@]}" "$(jq .upgrade.flag_on "$J")"
t_eq "report: expected = flag on and consent" "$n" "$(jq .upgrade.campaign.expected "$J")"
t_eq "report: offered to exactly those" "$n" "$(jq .upgrade.offered "$J")"
t_eq "report: downloaded by each" "$n" "$(jq .upgrade.downloaded "$J")"
t_eq "report: installed by each" "$n" "$(jq .upgrade.installed "$J")"
t_eq "report: nothing refused or failed" 0 "$(jq '.upgrade.refused + .upgrade.failed' "$J")"
t_eq "report: each download cut on purpose" "$n" "$(jq .upgrade.downloads.interrupted "$J")"
t_eq "report: and resumed with Range" "$n" "$(jq .upgrade.downloads.resumed "$J")"
t_ok "report: images served per second" test "$(jq '.upgrade.downloads.images_per_s > 0' "$J")" = true
t_ok "report: the time until all installed" test "$(jq '.upgrade.campaign.all_installed_s != null' "$J")" = true
t_eq "report: the double opt-in held" 0 "$(jq .upgrade.violations.total "$J")"
t_eq "report: every report acknowledged" "$n" "$(jq .upgrade.reports.acknowledged "$J")"
out="$(cat "$T_WORK/campaign.out")"
t_like "report: human summary" "offered +$n, downloaded $n, installed $n, refused 0, failed 0" "$out"
t_like "report: the campaign line" "$n of $n expected meters reported, $n installed; all installed after" "$out"

# PostgreSQL agrees: installed offers for exactly the expected meters, each downloaded; no
# offer row at all for any other meter.
expect_sorted="$(printf '%s\n' "${yes[@]}" | sort | tr '\n' ' ')"
t_eq "db: installed offers are the expected meters'" "$expect_sorted" \
    "$(t_psql "SELECT d.id FROM upgrade_offers o JOIN devices d ON d.did = o.did
               WHERE o.release_id = '$rel' AND o.state = 'installed' AND o.downloaded_at IS NOT NULL
               ORDER BY d.id" | tr '\n' ' ')"
t_eq "db: no offer to any other meter" "$n" "$(t_psql "SELECT count(*) FROM upgrade_offers")"
t_eq "db: each offered, downloaded and installed once in the audit trail" "$n $n $n" \
    "$(t_psql "SELECT count(*) FILTER (WHERE kind = 'firmware_offered') || ' ' ||
                      count(*) FILTER (WHERE kind = 'firmware_downloaded') || ' ' ||
                      count(*) FILTER (WHERE kind = 'firmware_installed')
               FROM audit_log WHERE detail->>'release' = '$rel'")"
# The report came in a heartbeat already saying the new version (the trail records what the
# meter said it runs), and no meter with its flag off ever said otherwise.
t_eq "db: each meter reported installed while running 2.4.1" "$n" \
    "$(t_psql "SELECT count(*) FROM audit_log WHERE kind = 'firmware_installed'
               AND detail->>'release' = '$rel' AND detail->>'running' = '2.4.1'")"
on_list="$(printf "'%s'," "${on[@]}")"
t_eq "db: no meter with its flag off said remote_upgrade true" 0 \
    "$(t_psql "SELECT count(*) FROM devices WHERE remote_upgrade AND id NOT IN (${on_list%,})")"

t_done
