#!/bin/sh
# bench/lib/rspamd-peer.sh: a private rspamd for bench/scan, from Debian's
# own packages but not installed (no system rspamd service): the two
# .debs (rspamd and its libhyperscan5) are fetched with `apt-get download`
# and unpacked with `dpkg -x` under var/bench-peers/rspamd (no root needed
# for that); rspamd's other runtime libraries come from apt-get. The binary runs with
# LD_LIBRARY_PATH pointing at the unpacked libhs and rspamd's private libs,
# and every rspamd path variable redirected (CONFDIR, RULESDIR, ...).
#
#   rspamd-peer.sh extract                          unpack (idempotent), print the root
#   rspamd-peer.sh setup DIR PORT CTLPORT REDIS DNS  config in DIR: workers on
#                   127.0.0.1:PORT (normal) and :CTLPORT (controller), Bayes in
#                   redis at 127.0.0.1:REDIS, DNS only to DNS (host:port)
#   rspamd-peer.sh start DIR                        start in the background, PID in DIR/run/rspamd.pid
#   rspamd-peer.sh stop DIR                         stop by that PID
#   rspamd-peer.sh rspamc ARGS...                   the unpacked rspamc
#
# Network tests are off, as with SpamAssassin's -L: the modules that ask DNS
# or HTTP services (RBLs and SURBLs, SPF, DKIM, DMARC, ARC, ASN, fuzzy
# storage, DCC, emails, reputation, ...) are disabled, and DNS is pointed at
# a local resolver that answers NXDOMAIN for everything, so nothing left
# waits on a timeout or leaves the machine.
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PEERS=${MOAT_BENCH_PEERS:-$REPO/var/bench-peers}
ROOT=$PEERS/rspamd
DEBS=$PEERS/debs
LIBS=$ROOT/usr/lib/rspamd:$ROOT/usr/lib/x86_64-linux-gnu

extract() {
  if [ -x "$ROOT/usr/bin/rspamd" ] && [ -e "$ROOT/usr/lib/x86_64-linux-gnu/libhs.so.5" ]; then
    echo "$ROOT"
    return
  fi
  mkdir -p "$DEBS" "$ROOT"
  # The runtime libraries rspamd needs besides libhs, all co-installable.
  missing=""
  for p in libglib2.0-0 libicu72 libluajit2-5.1-2 libsodium23 libunwind8 libsqlite3-0 libssl3 libpcre2-8-0 redis-server; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || { echo "rspamd-peer: needs apt-get install$missing (as root)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2
  fi
  (cd "$DEBS" && apt-get download rspamd libhyperscan5 >&2)
  for d in "$DEBS"/rspamd_*.deb "$DEBS"/libhyperscan5_*.deb; do dpkg -x "$d" "$ROOT"; done
  echo "$ROOT"
}

setup() {
  dir=$1 port=$2 ctl=$3 redis=$4 dns=$5
  mkdir -p "$dir/local/local.d" "$dir/local/override.d" "$dir/db" "$dir/run" "$dir/log" "$PEERS/rspamd-hs-cache"
  o=$dir/local/override.d
  l=$dir/local/local.d
  cat >"$o/worker-normal.inc" <<EOF
bind_socket = "127.0.0.1:$port";
EOF
  cat >"$o/worker-controller.inc" <<EOF
bind_socket = "127.0.0.1:$ctl";
secure_ip = "127.0.0.1";
EOF
  # The proxy is not used: rspamc talks to the normal worker.
  echo 'enabled = false;' >"$o/worker-proxy.inc"
  cat >"$o/logging.inc" <<EOF
level = "notice";
EOF
  cat >"$l/options.inc" <<EOF
dns {
  nameserver = ["$dns"];
  timeout = 1s;
  retransmits = 1;
}
local_addrs = [127.0.0.0/8];
# Compiled Hyperscan databases kept between bench runs, like moat's rules cache.
hs_cache_dir = "$PEERS/rspamd-hs-cache/";
EOF
  cat >"$l/classifier-bayes.conf" <<EOF
backend = "redis";
servers = "127.0.0.1:$redis";
autolearn = false;
EOF
  for m in rbl surbl spf dkim dmarc arc asn fuzzy_check dcc emails reputation mx_check neural \
           ratelimit greylist replies history_redis url_redirector rspamd_update dkim_signing \
           arc_signing external_services antivirus p0f clickhouse elastic metadata_exporter \
           bimi aws_s3 spamtrap; do
    echo 'enabled = false;' >"$l/$m.conf"
  done
  # The multimap maps of the stock config are on maps.rspamd.com.
  echo '' >"$o/multimap.conf"
  echo '' >"$o/phishing.conf"
}

vars() {
  dir=$1
  C=$ROOT/etc/rspamd
  S=$ROOT/usr/share/rspamd
  echo "--var=CONFDIR=$C --var=LOCAL_CONFDIR=$dir/local --var=RULESDIR=$S/rules --var=LUALIBDIR=$S/lualib" \
       "--var=PLUGINSDIR=$S/plugins --var=SHAREDIR=$S --var=WWWDIR=$S/www --var=DBDIR=$dir/db" \
       "--var=RUNDIR=$dir/run --var=LOGDIR=$dir/log"
}

start() {
  dir=$1
  # As root rspamd drops to an unprivileged user; its folders must be its.
  user=""
  if [ "$(id -u)" = 0 ]; then
    chown -R nobody:nogroup "$dir/db" "$dir/run" "$dir/log" "$PEERS/rspamd-hs-cache"
    user="-u nobody -g nogroup"
  fi
  # shellcheck disable=SC2046
  LD_LIBRARY_PATH=$LIBS "$ROOT/usr/bin/rspamd" -c "$ROOT/etc/rspamd/rspamd.conf" $user \
    -p "$dir/run/rspamd.pid" $(vars "$dir") >"$dir/log/start.out" 2>&1
}

stop() {
  dir=$1
  [ -f "$dir/run/rspamd.pid" ] || return 0
  pid=$(cat "$dir/run/rspamd.pid")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$pid" 2>/dev/null || true
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  extract) extract ;;
  setup) [ $# -eq 5 ] || { echo "usage: $0 setup DIR PORT CTLPORT REDISPORT DNS" >&2; exit 2; }; setup "$@" ;;
  start) start "$1" ;;
  stop) stop "$1" ;;
  rspamc) LD_LIBRARY_PATH=$LIBS exec "$ROOT/usr/bin/rspamc" "$@" ;;
  vars) vars "$1" ;;
  *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
