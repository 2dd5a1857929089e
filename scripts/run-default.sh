#!/usr/bin/env bash
# `make run`: starts moatd on the embedded default (etc/moat.toml): loopback
# ports, data in ./var, a self-signed certificate made on first start.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MOAT_BIN:-build/bin}
mkdir -p var
cat <<'MSG'
moat: starting moatd with etc/moat.toml (data in ./var)
  SMTP         127.0.0.1:2525   (relays example.test to 127.0.0.1:2526,
                                 keeps local.test in the mailbox store)
  submission   127.0.0.1:2587   (STARTTLS + AUTH)
  submissions  127.0.0.1:2465   (implicit TLS + AUTH)

In another terminal, run a next hop and send a first message:
  /usr/sbin/smtp-sink -u nobody -c 127.0.0.1:2526 100 &
  swaks --server 127.0.0.1:2525 --from you@sender.test --to user@example.test
Queue:  build/bin/moatctl --config etc/moat.toml queue list

Local mail for local.test is kept in moat's own store (var/store). Add a user
(password on stdin), send, and read the mail:
  echo 'choose-a-password' | build/bin/moatctl --config etc/moat.toml user add alice@local.test
  swaks --server 127.0.0.1:2525 --from you@sender.test --to alice@local.test
  build/bin/moatctl --config etc/moat.toml mailbox messages alice@local.test
  build/bin/moatctl --config etc/moat.toml mailbox fetch alice@local.test INBOX 1
With a mail client: IMAP 127.0.0.1:2143 (STARTTLS) or 2993 (TLS), user
alice@local.test, once the IMAP listener is on (docs/imap.md); e.g.
  curl -k --ssl-reqd --user alice@local.test:choose-a-password 'imap://127.0.0.1:2143/INBOX;UID=1'
Stop with Ctrl-C.
MSG
exec "$BIN/moatd" --config etc/moat.toml
