#!/bin/sh
# Install everything postern needs to build, run and test, from Debian 12's
# packages only. Idempotent: a second run installs nothing.
set -eu

BUILD_PKGS="meson ninja-build pkg-config gcc clang libclang-rt-14-dev make
  libevent-dev libssl-dev libc-ares-dev libsqlite3-dev libsodium-dev libjansson-dev zlib1g-dev
  libgmime-3.0-dev libgumbo-dev libmagic-dev libpcre2-dev
  libclamav-dev libpsl-dev libldap-dev"
TEST_PKGS="python3 python3-pytest python3-aiosmtpd python3-dnslib python3-yaml python3-dkim swaks postfix openssl procps
  clamav-daemon clamav-testfiles bogofilter slapd ldap-utils"
# The peers of bench/accuracy (bogofilter comes with the test set).
BENCH_PKGS="bogofilter spamassassin rspamd redis-server"

missing=""
for p in $BUILD_PKGS ${WITH_TEST_PKGS:+$TEST_PKGS} ${WITH_BENCH_PKGS:+$BENCH_PKGS}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	# Postfix is only a test peer (smtp-source, smtp-sink, the relay benchmark):
	# never let its package configure or start a system MTA.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	# slapd is only a test peer too (tests/tools/slapd.py runs its own):
	# no directory configured, no system service to wait on.
	echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing
fi

# The unprivileged user the daemon runs as after binding its ports.
if ! getent passwd postern >/dev/null; then
	useradd --system --home-dir /var/spool/postern --no-create-home \
		--shell /usr/sbin/nologin postern
fi
