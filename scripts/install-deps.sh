#!/usr/bin/env bash
# Installs the Debian 12 packages moat builds and tests with; a no-op when all are present.
# Everything comes from Debian's archive: nothing is vendored or downloaded.
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake pkg-config g++ clang-14 libclang-rt-14-dev lld-14
  libboost1.81-dev libssl-dev libsqlite3-dev libargon2-dev libunbound-dev
  libtomlplusplus-dev catch2 libevent-dev
  libopendkim-dev
  libpsl-dev publicsuffix
  libspf2-dev libyaml-dev zlib1g-dev
  libvectorscan-dev libpcre2-dev libmagic-dev libarchive-dev libzstd-dev libclamav-dev
  libgmime-3.0-dev
)
# Real peers the tests talk to.
TEST_PKGS=(
  python3 python3-pytest python3-pytest-timeout swaks openssl postfix unbound dnsutils procps psmisc
  python3-dkim opendkim-tools
  python3-spf
  clamav-testfiles spamassassin fetchmail curl
)
# Peers only the benchmarks compare against (bench/*): kept out of `make test`
# so CI never starts a system IMAP server.
BENCH_PKGS=(bogofilter dovecot-imapd dovecot-pop3d rspamd)

want=("${BUILD_PKGS[@]}")
case "${1:-}" in
  --test) want+=("${TEST_PKGS[@]}") ;;
  --bench) want+=("${TEST_PKGS[@]}" "${BENCH_PKGS[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix is only a test peer and bench baseline: keep it from configuring itself
# as a system MTA on port 25.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
