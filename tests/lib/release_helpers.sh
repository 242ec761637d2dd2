# shellcheck shell=bash
#
# tests/lib/release_helpers.sh: firmware releases for the tests, through meterhub-release.
# Source it after tests/lib/testlib.sh (before or after t_init):
#
#     source "$MH_SRC/tests/lib/testlib.sh"
#     source "$MH_SRC/tests/lib/release_helpers.sh"
#     t_init my_test
#     rel="$(t_release_new 2.4.1)"             # key, image, sign, publish: the release id
#     t_rollout create --release "$rel" --percent 100
#
# Everything is kept under the test's workdir and derived from it, so the helpers also work
# inside $(...) (a subshell cannot set variables for the caller, but it can create files):
#   T_RELEASE_KEY_DIR  $T_WORK/release-key: the release key pair (release.key, release.pub),
#                      made by the first helper that needs it
#   T_RELEASE_KEYS     $T_RELEASE_KEY_DIR/release.pub: what publish trusts
#   T_FIRMWARE_STORE   $T_WORK/firmware: the image store (MH_FIRMWARE_STORE, exported for the
#                      daemons that serve images)
#   T_RELEASE_OUT      $T_WORK/release.json: the JSON line of the last sign or publish
# Set any of them before the first call to use something else. t_release_env sets them (every
# helper calls it): call it right after t_init when a daemon needs MH_FIRMWARE_STORE before
# any release exists.

t_release_env() {
    [[ -n "${T_WORK:-}" ]] || {
        printf 'release_helpers: call t_init first\n' >&2
        return 1
    }
    : "${T_RELEASE_KEY_DIR:=$T_WORK/release-key}"
    : "${T_RELEASE_KEYS:=$T_RELEASE_KEY_DIR/release.pub}"
    : "${T_FIRMWARE_STORE:=$T_WORK/firmware}"
    : "${T_RELEASE_OUT:=$T_WORK/release.json}"
    export MH_FIRMWARE_STORE=$T_FIRMWARE_STORE
}

# t_release ARGS...: meterhub-release on this test's database, store and trusted keys (as the
# database owner, like meterhub-admin).
t_release() {
    t_release_env
    MH_PG_URI=$T_PG_URI MH_FIRMWARE_STORE=$T_FIRMWARE_STORE MH_RELEASE_KEYS=$T_RELEASE_KEYS \
        "$MH_BIN/meterhub-release" "$@"
}

# _t_json_field FILE KEY: the value of a string or number KEY in a one-line JSON file.
_t_json_field() {
    jq -r --arg k "$2" '.[$k]' "$1"
}

# t_release_keygen [DIR]: a new key pair in DIR (default $T_RELEASE_KEY_DIR); its JSON line
# goes to DIR/keygen.json; prints the key id.
t_release_keygen() {
    t_release_env
    local dir=${1:-$T_RELEASE_KEY_DIR} json
    mkdir -p "$(dirname "$dir")"
    json="$(t_release keygen --out "$dir")" || return
    printf '%s\n' "$json" >"$dir/keygen.json"
    jq -r .key_id <<<"$json"
}

# _t_release_key: makes the default key pair if there is none yet.
_t_release_key() {
    t_release_env
    [[ -f "$T_RELEASE_KEY_DIR/release.key" ]] || t_release_keygen "$T_RELEASE_KEY_DIR" >/dev/null ||
        return
}

# Each helper returns non-zero when meterhub-release fails (its message is on stderr).

# t_release_image FILE [SIZE]: SIZE random bytes (default 4096) into FILE; prints FILE.
t_release_image() {
    local file=$1 size=${2:-4096}
    mkdir -p "$(dirname "$file")"
    head -c "$size" /dev/urandom >"$file"
    printf '%s\n' "$file"
}

# t_release_sign IMAGE VERSION [HARDWARE [SIGN ARGS...]]: signs IMAGE with the default key
# (or --key K among the arguments), hardware flm02 by default; writes IMAGE.manifest and
# IMAGE.manifest.sig (or --out PREFIX); prints the release id. E.g.
#   t_release_sign "$img" 2.0 flm02 --expires 0.0001 --notes "quick"
t_release_sign() {
    local image=$1 version=$2 hardware=${3:-flm02}
    shift $(($# < 3 ? $# : 3))
    _t_release_key || return
    t_release sign --key "$T_RELEASE_KEY_DIR/release.key" --image "$image" --version "$version" \
        --hardware "$hardware" "$@" >"$T_RELEASE_OUT" || return
    _t_json_field "$T_RELEASE_OUT" release
}

# t_release_publish MANIFEST IMAGE [PUBLISH ARGS...]: publishes; prints the release id (the
# whole JSON line is in $T_RELEASE_OUT).
t_release_publish() {
    t_release_env
    t_release publish "$@" >"$T_RELEASE_OUT" || return
    _t_json_field "$T_RELEASE_OUT" release
}

# t_release_new VERSION [HARDWARE [SIZE [SIGN ARGS...]]]: a fresh random image of SIZE bytes
# (default 4096) in $T_WORK/releases/, signed and published; prints the release id.
t_release_new() {
    local version=$1 hardware=${2:-flm02} size=${3:-4096} image
    shift $(($# < 3 ? $# : 3))
    t_release_env
    image="$(mktemp -u "$T_WORK/releases/fw-$hardware-$version.XXXXXX")"
    t_release_image "$image" "$size" >/dev/null || return
    t_release_sign "$image" "$version" "$hardware" "$@" >/dev/null || return
    t_release_publish "$image.manifest" "$image"
}

# t_rollout ARGS...: meterhub-release rollout ARGS (create, pause, resume, abort, set,
# status); prints its JSON output. t_rollout_create prints just the new rollout's id:
#   ro="$(t_rollout_create --release "$rel" --percent 50)"
t_rollout() {
    t_release rollout "$@"
}

t_rollout_create() {
    local json
    json="$(t_release rollout create "$@")" || return
    jq -r .id <<<"$json"
}

# t_release_log_hash SEQ PREV MANIFEST_SHA256 SIGNATURE_BASE64: the log entry hash of
# docs/upgrade.md, computed with printf and sha256sum.
t_release_log_hash() {
    printf 'meterhub-release-log/1\n%s\n%s\n%s\n%s\n' "$1" "$2" "$3" "$4" | sha256sum | cut -c1-64
}

# t_release_stored SHA256: the store's path of the image with that digest.
t_release_stored() {
    t_release_env
    printf '%s/sha256/%s/%s\n' "$T_FIRMWARE_STORE" "${1:0:2}" "$1"
}

[[ -z "${T_WORK:-}" ]] || t_release_env
