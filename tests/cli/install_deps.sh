# scripts/install-deps.sh against a fake apt-get (first on the PATH; dpkg-query reports everything
# missing): it waits while another apt holds the lock, passes apt's lock timeout, and fails at once
# on any other error.
. "$(dirname "$0")/_lib.sh"
F="$T/fake"; rm -rf "$F"; mkdir -p "$F/bin"
cat > "$F/bin/dpkg-query" <<'SH'
#!/bin/sh
exit 1
SH
cat > "$F/bin/apt-get" <<SH
#!/bin/sh
n=\$(cat "$F/count" 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n > "$F/count"
echo "\$*" >> "$F/args"
if [ "\$n" -le \${FAKE_LOCKED:-0} ]; then echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)"; exit 100; fi
[ -n "\${FAKE_BROKEN:-}" ] && { echo "E: Unable to locate package nonsense"; exit 100; }
exit 0
SH
chmod +x "$F/bin/"*
export LV_APT_RETRY_SLEEP=0
rm -f "$F/count" "$F/args"
FAKE_LOCKED=3 PATH="$F/bin:$PATH" bash scripts/install-deps.sh >"$T/out" 2>"$T/err" || fail "waits for the lock: $(cat "$T/err")"
grep -c "holds the package lock; waiting" "$T/err" | grep -qx 3 || fail "says it waits, once per try: $(cat "$T/err")"
[ "$(grep -c '^-o DPkg::Lock::Timeout=[0-9]* update' "$F/args")" = 4 ] && grep -q "^-o DPkg::Lock::Timeout=[0-9]* install -y" "$F/args" ||
  fail "update retried, then install, both with apt's lock timeout: $(cat "$F/args")"
echo "ok: waits while another apt holds the lock"
rm -f "$F/count" "$F/args"
FAKE_BROKEN=1 PATH="$F/bin:$PATH" bash scripts/install-deps.sh >"$T/out" 2>"$T/err" && fail "another apt error is a failure"
[ "$(wc -l < "$F/args")" = 1 ] || fail "no retry on other errors: $(cat "$F/args")"
echo "ok: other apt errors fail at once"
