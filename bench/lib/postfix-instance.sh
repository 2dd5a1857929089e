#!/usr/bin/env bash
# A private, stock Postfix relay for benchmarks: its own config, queue and
# data directories under DIR, listening on 127.0.0.1:PORT only, relaying
# example.test to smtp:[127.0.0.1]:SINKPORT. Default fsync behaviour and
# default process/concurrency limits: this is the baseline moat is compared to.
# It never touches /etc/postfix or the system's queue.
#
#   postfix-instance.sh setup DIR PORT SINKPORT   write the config, `postfix check`
#   postfix-instance.sh start DIR                 postfix -c DIR/etc start, wait for PORT
#   postfix-instance.sh stop DIR                  postfix -c DIR/etc stop (waits for master)
#   postfix-instance.sh queue-empty DIR           exit 0 when the queue holds nothing
#
# Must run as root (Postfix's master runs as root, services as mail_owner postfix).
set -euo pipefail

die() { echo "postfix-instance: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
getent passwd postfix >/dev/null || die "user postfix missing (apt-get install postfix)"
getent group postdrop >/dev/null || die "group postdrop missing"

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 setup|start|stop|queue-empty DIR [PORT SINKPORT]"
etc="$dir/etc"

setup() {
  local port=$1 sinkport=$2
  mkdir -p "$etc" "$dir/queue" "$dir/data"
  chown postfix "$dir/data"
  # postfix-files lists what `postfix check` sets up in the queue directory.
  cp /etc/postfix/postfix-files "$etc/"
  [ -d /etc/postfix/postfix-files.d ] && cp -r /etc/postfix/postfix-files.d "$etc/"
  [ -f /etc/postfix/dynamicmaps.cf ] && cp /etc/postfix/dynamicmaps.cf "$etc/"
  [ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d "$etc/"
  cat >"$etc/main.cf" <<MAIN
# moat bench: a stock Postfix relay on loopback (written by bench/lib/postfix-instance.sh)
compatibility_level = 3.6
config_directory = $etc
queue_directory = $dir/queue
data_directory = $dir/data
meta_directory = $etc
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
transport_maps = inline:{example.test=smtp:[127.0.0.1]:$sinkport}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
biff = no
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
MAIN
  # master.cf: the stock services, chroot off (no copies of /etc files
  # needed), and the smtpd listener moved to 127.0.0.1:PORT.
  cat >"$etc/master.cf" <<MASTER
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$port inet n  -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
MASTER
  local out
  out=$(postfix -c "$etc" check 2>&1) || die "postfix check failed: $out"
  # `check` prints warnings for anything odd; show them, they matter for a fair baseline
  [ -z "$out" ] || echo "postfix check: $out" >&2
}

master_pid() { [ -f "$dir/queue/pid/master.pid" ] && tr -d ' \n' <"$dir/queue/pid/master.pid"; }

start() {
  local port
  port=$(postconf -c "$etc" -M | awk '$2=="inet"{split($1,a,":"); print a[2]; exit}')
  postfix -c "$etc" start >/dev/null 2>&1 || { cat "$dir/maillog" >&2 2>/dev/null; die "postfix start failed"; }
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "postfix did not listen on 127.0.0.1:$port"
}

stop() {
  local pid
  pid=$(master_pid || true)
  postfix -c "$etc" stop >/dev/null 2>&1 || true
  if [ -n "${pid:-}" ]; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

queue_empty() {
  # Files in the queues that hold mail in flight (not counting active deferral state).
  local n
  n=$(find "$dir/queue/incoming" "$dir/queue/active" "$dir/queue/deferred" "$dir/queue/maildrop" -type f 2>/dev/null | wc -l)
  [ "$n" -eq 0 ]
}

case "$cmd" in
  setup) [ $# -eq 4 ] || die "usage: $0 setup DIR PORT SINKPORT"; setup "$3" "$4" ;;
  start) start ;;
  stop) stop ;;
  queue-empty) queue_empty ;;
  *) die "unknown command $cmd" ;;
esac
