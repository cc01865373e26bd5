#!/usr/bin/env bash
# Container smoke test (make smoke-image; part of make test): builds the image here with podman and runs it as
# a deployment does, against the machine's PostgreSQL and Redis.
#
#   1. a base image from Debian bookworm packages (mmdebstrap from the machine's own apt mirror, read from its
#      apt sources at run time), imported into podman;
#   2. the Containerfile built on it (--network host; the host's CA bundle mounted for pip, never stored);
#   3. the image's properties checked: non-root user, no compiler, no CA bundle, a HEALTHCHECK;
#   4. a fresh PostgreSQL database; `lbp-cds migrate` run in the image;
#   5. the Kubernetes Deployment's init container script run in the image on ConfigMap-style content overrides
#      (refusing broken ones); the service run read-only on a free 127.0.0.1 port with the content it made, a
#      test issuer whose JWK Set is served from this host, and Redis as the replay store;
#   6. discovery, the example hook call with a signed ES384 JWT, a replay refused, feedback stored in
#      PostgreSQL, /readyz, /metrics, the health check, and no JWT in the service's log (tools/smoke_image.py).
#
# Whatever happens, the trap stops and removes the container and removes the images built here (by id),
# the JWK Set server and the database. Prints the image size and the build times.
# SMOKE_BASE_IMAGE=ID reuses a base image made earlier (step 1 skipped; that image is left in place).
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF="$PWD/deploy/containers.conf"  # runc and the ulimits this machine needs; /etc untouched
PYTHON=${SMOKE_PYTHON:-.venv/bin/python}
HELPER=(env PYTHONDONTWRITEBYTECODE=1 "$PYTHON" tools/smoke_image.py)
POSTGRES_URL=${LBP_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
REDIS_PORT=6379
SUITE=bookworm  # Python 3.11, which lbp-cds supports
HOST_CA=/etc/ssl/certs/ca-certificates.crt
# The container reaches the host's loopback services at 10.0.2.2 (slirp4netns, allow_host_loopback).
NETWORK=slirp4netns:allow_host_loopback=true

work=$(mktemp -d "${TMPDIR:-/tmp}/lbp-cds-smoke.XXXXXX")
base_id="" image_id="" container_id="" jwks_pid="" database=""

cleanup() {
    local status=$?
    set +e
    if [ -n "$container_id" ]; then
        if [ "$status" -ne 0 ]; then
            echo "smoke: the service's log (last 40 lines):"
            podman logs --tail 40 "$container_id" 2>&1 | sed 's/^/    /'
        fi
        podman rm --force --time 10 "$container_id" >/dev/null
    fi
    [ -n "$image_id" ] && podman rmi "$image_id" >/dev/null
    [ -n "$base_id" ] && podman rmi "$base_id" >/dev/null
    [ -n "$jwks_pid" ] && kill "$jwks_pid" 2>/dev/null
    [ -n "$database" ] && "${HELPER[@]}" drop-db "$POSTGRES_URL" "$database"
    rm -rf "$work"
    if [ "$status" -eq 0 ]; then echo "smoke: passed"; else echo "smoke: FAILED (exit $status)" >&2; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f", b - a }'; }
started=$(seconds)

# 1. The base image: Debian's python3 and its venv module, nothing else (no recommends, no docs).
t=$(seconds)
if [ -n "${SMOKE_BASE_IMAGE:-}" ]; then
    base_image="$SMOKE_BASE_IMAGE"
    echo "smoke: reusing the base image $base_image"
else
    mirror=$("${HELPER[@]}" mirror)
    echo "smoke: building the $SUITE base image with mmdebstrap"
    mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt='Apt::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --format=tar "$SUITE" "$work/base.tar" "deb $mirror $SUITE main" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -30 "$work/mmdebstrap.log" >&2; echo "smoke: FAIL mmdebstrap" >&2; exit 1; }
    base_id=$(podman import --quiet "$work/base.tar")
    base_image="$base_id"
    rm -f "$work/base.tar"
fi
base_seconds=$(elapsed "$t")

# 2. The image. No layer cache is kept (--layers=false): nothing but the final image is left to remove.
echo "smoke: building the image (Containerfile)"
t=$(seconds)
podman build --layers=false --force-rm --format docker --network host \
    -v "$HOST_CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt \
    --build-arg BASE_IMAGE="$base_image" --iidfile "$work/image-id" -f Containerfile . >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; echo "smoke: FAIL podman build" >&2; exit 1; }
image_id=$(cat "$work/image-id")
image_seconds=$(elapsed "$t")
size=$(podman image inspect --format '{{.Size}}' "$image_id")
awk -v s="$size" 'BEGIN { printf "smoke: image size %.0f MB (%d bytes)\n", s / 1e6, s }'
echo "smoke: build time: base image ${base_seconds} s (mmdebstrap and import), image ${image_seconds} s (no cache)"

# 3. What the image is.
user=$(podman image inspect --format '{{.Config.User}}' "$image_id")
[ "$user" = "10001:10001" ] || { echo "smoke: FAIL the image runs as '$user', not 10001:10001" >&2; exit 1; }
healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$image_id")
[ "$healthcheck" != "null" ] || { echo "smoke: FAIL the image has no HEALTHCHECK" >&2; exit 1; }
inside=(podman run --rm --no-healthcheck --read-only --network none --entrypoint /bin/sh "$image_id" -c)
"${inside[@]}" 'for c in cc gcc g++ clang make ld as; do if command -v $c; then exit 1; fi; done' \
    || { echo "smoke: FAIL a compiler is in the image" >&2; exit 1; }
"${inside[@]}" '! test -e /run/host-ca.crt' || { echo "smoke: FAIL the build's CA bundle is in the image" >&2; exit 1; }
echo "smoke: ok   the image runs as 10001, has a HEALTHCHECK, no compiler and no CA bundle of the build"

# 4. A database of this run, migrated by the image's own command (the deploy step).
read -r database container_database < <("${HELPER[@]}" create-db "$POSTGRES_URL")
host_database="${POSTGRES_URL%/*}/$database"
state=(--mount type=tmpfs,destination=/var/lib/lbp-cds,chown=true)  # the state folder, the service's user's
migrated=$(podman run --rm --no-healthcheck --read-only "${state[@]}" --network "$NETWORK" \
    -e CDS_DATABASE_URL="$container_database" "$image_id" migrate)
echo "smoke: ok   lbp-cds migrate in the image: $migrated"

# 5. The service, as deployed: read-only, unprivileged, a test issuer, Redis, mounted content.
"${HELPER[@]}" keys "$work"
jwks_port=$("${HELPER[@]}" free-port)
"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$work/jwks" "$jwks_port" >"$work/jwks.log" 2>&1 &
jwks_pid=$!
# The content as a Kubernetes pod gets it: the Deployment's init container (its script, from
# deploy/kubernetes/deployment.yaml) lays ConfigMap-style overrides over the image's content and validates them.
init_script=$("${HELPER[@]}" init-script deploy/kubernetes/deployment.yaml)
assemble() {  # OVERRIDES_DIR CONTENT_DIR: the init container's run
    mkdir "$2" && chown 10001:10001 "$2"
    podman run --rm --no-healthcheck --read-only --network none "${state[@]}" -e CDS_CONTENT_DIR=/srv/lbp-cds/content \
        -v "$1:/etc/lbp-cds/content-overrides:ro" -v "$2:/srv/lbp-cds/content" \
        --entrypoint /bin/sh "$image_id" -c "$init_script"
}
chmod a+x "$work"
mkdir "$work/broken"
"${HELPER[@]}" overrides --broken "$work/broken" >/dev/null
if assemble "$work/broken/overrides" "$work/broken/content" >"$work/broken.log" 2>&1; then
    echo "smoke: FAIL the init container accepted invalid content" >&2; exit 1
fi
echo "smoke: ok   the init container refuses invalid overrides: $(grep -m1 '^/srv/lbp-cds/content/policy.yaml, line' "$work/broken.log")"
content_version=$("${HELPER[@]}" overrides "$work")
assembled=$(assemble "$work/overrides" "$work/content" 2>&1 | tail -1)
[ "$assembled" = "OK: /srv/lbp-cds/content is valid (content version $content_version)." ] \
    || { echo "smoke: FAIL the init container: $assembled" >&2; exit 1; }
echo "smoke: ok   the init container lays the overrides over the image's content: $assembled"
port=$("${HELPER[@]}" free-port)
base="http://127.0.0.1:$port"
issuers="{\"https://ehr.smoke-test.invalid\": {\"jwks_urls\": [\"http://10.0.2.2:$jwks_port/jwks.json\"]}}"
# The image's HEALTHCHECK is run below with `podman exec`: podman's own timer for it needs systemd.
container_id=$(podman run -d --read-only --tmpfs /tmp "${state[@]}" \
    --cap-drop ALL --security-opt no-new-privileges --no-healthcheck \
    --network "$NETWORK" -p "127.0.0.1:$port:8080" \
    -v "$work/content:/srv/lbp-cds/content:ro" -e CDS_CONTENT_DIR=/srv/lbp-cds/content \
    -e CDS_DATABASE_URL="$container_database" -e CDS_REDIS_URL="redis://10.0.2.2:$REDIS_PORT/0" \
    -e CDS_PUBLIC_BASE_URL="$base" -e CDS_TRUSTED_ISSUERS="$issuers" -e WEB_CONCURRENCY=2 \
    -e CDS_FORM_SIGNING_KEY="smoke test form-link signing key, 32+ characters" \
    "$image_id")
for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; then break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$container_id")" = "true" ] \
        || { echo "smoke: FAIL the service stopped" >&2; exit 1; }
    sleep 0.5
done
echo "smoke: the service answers at $base"

# 6. The calls.
"${HELPER[@]}" check --base "$base" --key "$work/key.pem" --database "$host_database" \
    --redis "redis://127.0.0.1:$REDIS_PORT/0" --content-version "$content_version" --tokens-file "$work/tokens"
mapfile -t health < <(podman image inspect --format '{{range .Config.Healthcheck.Test}}{{println .}}{{end}}' "$image_id")
[ "${health[0]}" = CMD ] || { echo "smoke: FAIL unexpected HEALTHCHECK form: ${health[*]}" >&2; exit 1; }
podman exec "$container_id" "${health[@]:1}" || { echo "smoke: FAIL the image's HEALTHCHECK command" >&2; exit 1; }
echo "smoke: ok   the image's HEALTHCHECK command passes in the running container"
podman logs "$container_id" >"$work/service.log" 2>&1
if grep -F -q -f "$work/tokens" "$work/service.log"; then
    echo "smoke: FAIL a JWT appears in the service's log" >&2
    exit 1
fi
echo "smoke: ok   no JWT in the service's log ($(wc -l <"$work/service.log") lines)"

echo "smoke: image $(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }'), built in ${base_seconds} s (base)" \
    "+ ${image_seconds} s (image); the whole smoke test took $(elapsed "$started") s"
