#!/usr/bin/env bash
#
# docs/openapi.yaml against the code and docs/api.md:
# - every path the router (api/server/routes.c) compares with is a path of the spec;
# - every operation of the spec is served by a running meterhub-api (never the router's generic
#   "no such resource", never 405), and a path's 405 names exactly its documented methods in
#   Allow; operations marked x-meterhub-pending must not be served yet;
# - with python3 and its yaml module (else: basic grep checks): the file parses as OpenAPI
#   3.0.3, every $ref resolves, path parameters are declared, request bodies refuse unknown
#   fields, the error codes of docs/api.md's table are all there and each code is one the
#   server sends, every request of docs/api.md is an operation; and against the server: an
#   operation that needs a token answers 401 without one (with WWW-Authenticate), one that
#   needs manage answers 403 to a read token (its request body example passing every check
#   before that), a documented query parameter is never refused as unknown and an unknown one
#   always is.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

spec="$MH_SRC/docs/openapi.yaml"
routes="$MH_SRC/api/server/routes.c"
dummy_hex=0f3c9a51d2e84b7c9e01a2b3c4d5e6f7

t_init api_openapi

# T_OPENAPI_NO_YAML=1 tries the checks made without python3's yaml.
have_yaml=0
if [[ "${T_OPENAPI_NO_YAML:-0}" != 1 ]] && command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import yaml' 2>/dev/null; then
    have_yaml=1
fi

# oas_py MODE: python3 on the spec. Modes:
#   check: structural checks; prints each problem, exits 1 if there is any;
#   ops:   one line per operation, tab-separated: METHOD PATH SAMPLE_URL SCOPE PENDING AUTH
#          BODY QUERY (AUTH: bearer, optional (no token allowed) or none (no token used);
#          BODY: the request body example as JSON; QUERY: every documented query parameter,
#          the token parameters of its security included, with a sample value; "-": none).
oas_py() {
    python3 - "$1" "$spec" "$MH_SRC/docs/api.md" "$MH_SRC/api/server" <<'PY'
import json, os, re, sys, urllib.parse

import yaml

mode, spec_path, docs_path, src_dir = sys.argv[1:5]
spec = yaml.safe_load(open(spec_path))
problems = []
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def resolve(node, where):
    for _ in range(32):
        if not (isinstance(node, dict) and "$ref" in node):
            return node
        ref = node["$ref"]
        if not ref.startswith("#/"):
            problems.append(f"{where}: non-local $ref {ref}")
            return {}
        cur = spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(cur, dict) or part not in cur:
                problems.append(f"{where}: unresolved $ref {ref}")
                return {}
            cur = cur[part]
        node = cur
    problems.append(f"{where}: $ref loop")
    return {}


def walk_refs(node, where):
    if isinstance(node, dict):
        if "$ref" in node:
            resolve(node, where)
        for k, v in node.items():
            walk_refs(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_refs(v, f"{where}/{i}")


def operations():
    for path, item in (spec.get("paths") or {}).items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, item, op


def params(item, op):
    out = {}
    for p in (item.get("parameters") or []) + (op.get("parameters") or []):
        p = resolve(p, "parameter")
        out[(p.get("in"), p.get("name"))] = p
    return out


def auth(op):
    sec = op.get("security", spec.get("security"))
    if not sec:
        return "none"
    return "optional" if {} in sec else "bearer"


def sample(p):
    if "example" in p:
        return p["example"]
    s = resolve(p.get("schema") or {}, "parameter schema")
    for key in ("example", "default"):
        if key in s:
            return s[key]
    if s.get("enum"):
        return s["enum"][0]
    return s.get("minimum", 1)


def closed_objects(schema, where, seen):
    """Problems of a request schema: an object with properties that takes unknown fields."""
    schema = resolve(schema, where)
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    if schema.get("type") == "object" and "properties" in schema:
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where}: request object without additionalProperties: false")
    for k in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(schema.get(k) or []):
            closed_objects(sub, f"{where}/{k}/{i}", seen)
    for name, sub in (schema.get("properties") or {}).items():
        closed_objects(sub, f"{where}/{name}", seen)
    if isinstance(schema.get("items"), dict):
        closed_objects(schema["items"], f"{where}/items", seen)
    if isinstance(schema.get("additionalProperties"), dict):
        closed_objects(schema["additionalProperties"], f"{where}/*", seen)


def error_codes(response, where):
    """The error codes a JSON error response lists (an enum on Error's error), or None."""
    response = resolve(response, where)
    media = (response.get("content") or {}).get("application/json")
    if media is None:
        return None
    schema = resolve(media.get("schema") or {}, where)
    parts = schema.get("allOf") or [schema]
    refs = [p.get("$ref") for p in parts if isinstance(p, dict)]
    if "#/components/schemas/Error" not in refs:
        problems.append(f"{where}: an error answer that is not an Error")
        return None
    codes = []
    for p in parts:
        codes += (((p.get("properties") or {}).get("error") or {}).get("enum")) or []
    if not codes:
        problems.append(f"{where}: no error codes listed")
    return codes


if mode == "ops":
    for path, method, item, op in operations():
        ps = params(item, op)
        url = path
        for (where, name), p in ps.items():
            if where == "path":
                url = url.replace("{" + name + "}", str(sample(p)))
        query = [(name, sample(p)) for (where, name), p in ps.items() if where == "query"]
        schemes = (spec.get("components") or {}).get("securitySchemes") or {}
        for req in op.get("security") or []:
            for name in req:
                s = schemes.get(name) or {}
                if s.get("type") == "apiKey" and s.get("in") == "query":
                    query.append((s["name"], "mht_openapi"))
        body = "-"
        rb = resolve(op.get("requestBody") or {}, "requestBody")
        media = (rb.get("content") or {}).get("application/json")
        if media is not None and "example" in media:
            body = json.dumps(media["example"], separators=(",", ":"))
        fields = [method.upper(), path, url, op.get("x-meterhub-scope", "-"),
                  op.get("x-meterhub-pending", "-"), auth(op), body,
                  urllib.parse.urlencode(query, safe="/") if query else "-"]
        print("\t".join(fields))
    sys.exit(0)

# --- mode check ------------------------------------------------------------------------------
if spec.get("openapi") != "3.0.3":
    problems.append(f"openapi: {spec.get('openapi')!r}, not '3.0.3'")
for key in ("title", "version"):
    if not (spec.get("info") or {}).get(key):
        problems.append(f"info.{key} is missing")
if not spec.get("paths"):
    problems.append("no paths")
walk_refs(spec, "#")
schemes = (spec.get("components") or {}).get("securitySchemes") or {}
op_ids = {}
codes_used = {}  # (status, code) -> pending?
for path, method, item, op in operations():
    where = f"{method.upper()} {path}"
    pending = "x-meterhub-pending" in op
    oid = op.get("operationId")
    if not oid or oid in op_ids:
        problems.append(f"{where}: operationId missing or not unique ({oid})")
    op_ids[oid] = where
    ps = params(item, op)
    for name in re.findall(r"\{([^}]+)\}", path):
        p = ps.get(("path", name))
        if p is None or p.get("required") is not True:
            problems.append(f"{where}: path parameter {name} not declared as required")
    for (pin, name), p in ps.items():
        if pin == "path" and "{" + name + "}" not in path:
            problems.append(f"{where}: path parameter {name} is not in the path")
    # Security: stated on every operation; a token only where the API lets one go without.
    if "security" not in op:
        problems.append(f"{where}: no security stated")
    for req in op.get("security") or []:
        for name, scopes in req.items():
            if name not in schemes:
                problems.append(f"{where}: unknown security scheme {name}")
            elif scopes:
                problems.append(f"{where}: scopes on a {schemes[name].get('type')} scheme")
    mode_ = auth(op)
    no_token = {"none": {"POST /v1/tokens", "POST /v1/accounts", "GET /v1/firmware",
                         "GET /v1/firmware/{release}"},
                "optional": {"GET /v1/sensors/{id}/readings", "GET /sensor/{id}"}}
    for m, allowed in no_token.items():
        if (mode_ == m) != (where in allowed):
            problems.append(f"{where}: security {mode_}, expected "
                            f"{m if where in allowed else 'a bearer token'}")
    scope = op.get("x-meterhub-scope")
    if mode_ != "none" and scope not in ("read", "manage"):
        problems.append(f"{where}: x-meterhub-scope {scope!r}, not read or manage")
    if mode_ == "none" and scope is not None:
        problems.append(f"{where}: x-meterhub-scope on an operation without a token")
    # Request bodies: JSON objects that refuse unknown fields, with an example.
    if "requestBody" in op:
        rb = resolve(op["requestBody"], where)
        media = (rb.get("content") or {}).get("application/json")
        if media is None:
            problems.append(f"{where}: a request body that is not application/json")
        else:
            schema = resolve(media.get("schema") or {}, where)
            if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
                problems.append(f"{where}: request body without additionalProperties: false")
            closed_objects(media.get("schema") or {}, f"{where} body", set())
            if "example" not in media:
                problems.append(f"{where}: request body without an example")
    responses = op.get("responses") or {}
    if not responses:
        problems.append(f"{where}: no responses")
    for status, response in responses.items():
        status = str(status)
        if not re.fullmatch(r"[1-5][0-9][0-9]", status):
            problems.append(f"{where}: response {status}")
            continue
        headers = resolve(response, where).get("headers") or {}
        if status != "413" and "Cache-Control" not in headers:
            problems.append(f"{where}: response {status} without Cache-Control")
        if status == "401" and "WWW-Authenticate" not in headers:
            problems.append(f"{where}: 401 without WWW-Authenticate")
        if status in ("429", "503") and "Retry-After" not in headers:
            problems.append(f"{where}: {status} without Retry-After")
        if status[0] in "45":
            for code in error_codes(response, f"{where} {status}") or []:
                codes_used[(status, code)] = codes_used.get((status, code), True) and pending

# Error responses of components no operation refers to (405 MethodNotAllowed: a method that is
# not an operation), with no status of their own.
referred = set(re.findall(r"#/components/responses/(\w+)", json.dumps(spec.get("paths"))))
loose_codes = set()
for name, response in ((spec.get("components") or {}).get("responses") or {}).items():
    if name not in referred:
        loose_codes.update(error_codes(response, f"components/responses/{name}") or [])
        codes_used.update({("loose", code): False for code in loose_codes})

# Every error of docs/api.md's table is in the spec, and the code sends every code the spec
# lists (those of operations still pending excepted).
docs = open(docs_path).read()
table = re.findall(r"^\| ([0-9]{3}) \| `([a-z_]+)` \|", docs, re.M)
if not table:
    problems.append("docs/api.md: no error table found")
for status, code in table:
    if (status, code) not in codes_used and code not in loose_codes:
        problems.append(f"docs/api.md's {status} {code} is not in the spec")
source = "".join(open(os.path.join(src_dir, f)).read()
                 for f in sorted(os.listdir(src_dir)) if f.endswith(".c"))
for (status, code), pending in sorted(codes_used.items()):
    if not pending and f'"{code}"' not in source:
        problems.append(f"{status} {code}: not a code api/server/*.c sends")
# Every request docs/api.md names is an operation.
ops = {(m.upper(), p) for p, m, _, _ in operations()}
for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[A-Za-z0-9_{}/.-]+)", docs):
    if (method, path.rstrip(".")) not in ops:
        problems.append(f"docs/api.md names {method} {path}, which the spec does not have")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
}

# --- structure --------------------------------------------------------------------------------
t_ok "docs/openapi.yaml exists" test -s "$spec"
t_eq "no tabs" 0 "$(grep -c $'\t' "$spec" || true)"
t_eq "no trailing spaces" 0 "$(grep -c ' $' "$spec" || true)"
t_eq "indents are multiples of 2" 0 "$(grep -cE '^( {2})* [^ ]' "$spec" || true)"
for key in openapi info servers paths components; do
    t_ok "top-level key $key" grep -q "^$key:" "$spec"
done
t_ok "openapi: 3.0.3" grep -qx 'openapi: 3.0.3' "$spec"
if ((have_yaml)); then
    t_ok "parses as OpenAPI 3.0.3, consistent with docs/api.md and the code" oas_py check
else
    _t_log "python3 with yaml is not available: grep checks only"
fi

# The operations: "METHOD PATH SAMPLE_URL SCOPE PENDING AUTH BODY QUERY", tab-separated. Without
# yaml, read from the file's layout (2-space indents): paths at 2, methods at 4, keys at 6; a
# path parameter's sample is the example of its component (components/parameters), else a hex
# id.
ops_by_layout() {
    awk '
        function flush() {
            if (m == "") return
            u = url; gsub(/\{[^}]*\}/, "'"$dummy_hex"'", u)
            printf "%s\t%s\t%s\t%s\t%s\n", toupper(m), p, u, scope, pending
            m = ""
        }
        # First pass: the examples of components/parameters.
        NR == FNR {
            if (/^[^ ]/) in_comp = ($0 == "components:")
            else if (in_comp && /^  [a-z]/) in_params = ($0 == "  parameters:")
            else if (in_comp && in_params && /^    [A-Za-z]+:$/) c = substr($0, 5, length($0) - 5)
            else if (in_comp && in_params && /^      name: /) pname[c] = $2
            else if (in_comp && in_params && /^      example: /) pexample[c] = $2
            next
        }
        /^[^ #]/ { flush(); in_paths = ($0 == "paths:"); next }
        !in_paths { next }
        /^  \/[^ ]*:$/ { flush(); p = substr($0, 3, length($0) - 3); url = p; next }
        /^    (get|put|post|delete|patch):$/ {
            flush(); m = substr($0, 5, length($0) - 5); scope = "-"; pending = "-"; next
        }
        /^    [a-z]/ { flush() }
        /^ +- \$ref: .#\/components\/parameters\/[A-Za-z]+.$/ {
            c = $3; gsub(/^.#\/components\/parameters\/|.$/, "", c)
            if ((c in pexample) && index(url, "{" pname[c] "}"))
                sub("\\{" pname[c] "\\}", pexample[c], url)
        }
        m != "" && /^      x-meterhub-scope: / { scope = $2 }
        m != "" && /^      x-meterhub-pending: / { pending = $2 }
        END { flush() }
    ' "$spec" "$spec"
}
if ((have_yaml)); then
    oas_py ops >"$T_WORK/ops"
    t_eq "the file's layout gives the same operations as its YAML" \
        "$(cut -f1-5 "$T_WORK/ops")" "$(ops_by_layout)"
else
    ops_by_layout | awk -F'\t' -v OFS='\t' '{ print $1, $2, $3, $4, $5, "?", "-", "-" }' \
        >"$T_WORK/ops"
fi
t_ok "operations found" test -s "$T_WORK/ops"
cut -f2 "$T_WORK/ops" | sort -u >"$T_WORK/paths"

# --- (1) every route of the router is a path of the spec --------------------------------------
# strcmp(path, "/x") is /x; strncmp(path, "/x/", n) is /x/{param}...; strcmp(path + n, "/y"),
# a suffix, is .../{param}/y.
literals="$(grep -oE 'str(n)?cmp\(path( \+ [0-9]+)?, "[^"]*"' "$routes" || true)"
t_ok "the router's path literals found" test -n "$literals"
while IFS= read -r lit; do
    s="$(sed -E 's/.*"([^"]*)"$/\1/' <<<"$lit")"
    if [[ "$lit" == *'path +'* ]]; then
        t_ok "route suffix $s is in the spec" grep -qE "\}${s//./\\.}\$" "$T_WORK/paths"
    elif [[ "$lit" == strncmp* ]]; then
        t_ok "route prefix $s is in the spec" grep -qF "$s{" "$T_WORK/paths"
    else
        t_ok "route $s is in the spec" grep -qxF "$s" "$T_WORK/paths"
    fi
done <<<"$literals"
t_ok "the router's generic 404 is still 'no such resource'" grep -qF '"no such resource"' "$routes"

# --- (2) every operation of the spec is served -------------------------------------------------
# shellcheck disable=SC2119 # the default instance
t_start_api
umask 077
printf 'openapi-check-passw0rd\n' >"$T_WORK/alice.pw"
t_admin account add alice --password-file "$T_WORK/alice.pw" >/dev/null
t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary \
    '{"username":"alice","password":"openapi-check-passw0rd","scope":"read"}' >/dev/null
read_token="$(sed -n 's/.*"token":"\(mht_[A-Za-z0-9_-]*\)".*/\1/p' "$T_BODY")"
t_like "a read token for alice" '^mht_' "$read_token"

error_code() { sed -n 's/.*"error":"\([a-z_]*\)".*/\1/p' "$T_BODY"; }
message() { sed -n 's/.*"message":"\(.*\)"}$/\1/p' "$T_BODY"; }
header() { { grep -i "^$1:" "$T_HEADERS" || true; } | tr -d '\r'; }

# served CODE: the last answer was the route's own, not the router's "no such resource" nor a
# 405 (a method the path does not serve).
served() {
    ! { [[ "$1" == 404 ]] && grep -qF '"no such resource"' "$T_BODY"; } && [[ "$1" != 405 ]]
}

declare -A unserved=()
while IFS=$'\t' read -r method path url scope pending auth body query; do
    op="$method $path"
    json=()
    [[ "$body" != - ]] && json=(-H 'Content-Type: application/json' --data-binary "$body")
    code="$(t_api "$method" "$url" "" "${json[@]}")"
    if [[ "$pending" != - ]]; then
        if served "$code"; then
            _t_fail "$op is served ($code): drop its x-meterhub-pending ($pending)"
        else
            t_ok "$op is not served yet (pending: $pending)" true
            unserved[$op]=1
        fi
        continue
    fi
    t_ok "$op is served ($url: $code $(error_code))" served "$code"
    case "$auth" in
    bearer)
        t_eq "  without a token: 401 unauthorized" "401 unauthorized" "$code $(error_code)"
        t_like "  with WWW-Authenticate" '^WWW-Authenticate: Bearer' "$(header WWW-Authenticate)"
        ;;
    optional | none)
        t_ok "  takes no token ($code $(error_code))" \
            test "$code $(error_code)" != "401 unauthorized"
        ;;
    esac
    t_like "  not cached" '^Cache-Control: no-store' "$(header Cache-Control)"
    if [[ "$auth" == bearer || "$auth" == optional ]]; then
        code="$(t_api "$method" "$url" "$read_token" "${json[@]}")"
        if [[ "$scope" == manage ]]; then
            t_eq "  needs manage: a read token gets 403 insufficient_scope" \
                "403 insufficient_scope" "$code $(error_code)"
        else
            t_ok "  a read token is enough ($code $(error_code))" \
                test "$code" != 401 -a "$code" != 403 -o "$(error_code)" = resolution_not_allowed
        fi
    fi
    if [[ "$query" != - ]]; then
        t_api "$method" "$url?$query" "" >/dev/null
        t_fails "  every documented query parameter is known ($(message))" \
            grep -qE 'unknown parameter|given twice' "$T_BODY"
        code="$(t_api "$method" "$url?$query&openapi_check=1" "")"
        t_eq "  an unknown one is refused" "400 invalid_request" "$code $(error_code)"
        t_like "  by name" "openapi_check" "$(message)"
    fi
done <"$T_WORK/ops"

# A method a path does not document answers 405, with exactly the documented ones in Allow.
while IFS= read -r path; do
    documented="$(awk -F'\t' -v p="$path" '$2 == p { print $1 }' "$T_WORK/ops")"
    expected=""
    for m in $documented; do
        [[ -n "${unserved["$m $path"]:-}" ]] || expected+="$m "
    done
    [[ -n "$expected" ]] || continue
    other=""
    for m in GET POST PUT PATCH DELETE; do
        grep -qx "$m" <<<"$documented" || {
            other=$m
            break
        }
    done
    [[ -n "$other" ]] || continue
    url="$(awk -F'\t' -v p="$path" '$2 == p { print $3; exit }' "$T_WORK/ops")"
    code="$(t_api "$other" "$url" "")"
    t_eq "$other $path: 405" 405 "$code"
    allow="$(header Allow | sed 's/^[^:]*: *//' | tr -d ' ' | tr ',' '\n' | sort | paste -sd' ')"
    t_eq "  Allow is what the spec documents" \
        "$(tr ' ' '\n' <<<"$expected" | grep . | sort | paste -sd' ')" "$allow"
done <"$T_WORK/paths"

t_done
