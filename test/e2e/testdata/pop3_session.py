"""An independent POP3 client (python's poplib) runs a scripted session.

Usage: pop3_session.py HOST PORT(STLS) PORT(TLS) USER PASSWORD OUTDIR
Writes each retrieved message to OUTDIR/<n>.eml and prints a summary line
per step; any protocol error raises and exits non-zero.
"""
import os
import poplib
import ssl
import sys

host, stls_port, tls_port, user, password, outdir = sys.argv[1:7]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

# 1. Plain port: STLS, then log in, read everything, delete nothing.
p = poplib.POP3(host, int(stls_port), timeout=15)
caps = p.capa()
assert "STLS" in caps, caps
assert "USER" not in caps, "USER offered before TLS"
p.stls(context=ctx)
assert "USER" in p.capa()
p.user(user)
p.pass_(password)
count, size = p.stat()
print("STAT", count, size)
resp, listing, _ = p.list()
sizes = {int(l.split()[0]): int(l.split()[1]) for l in listing}
resp, uidl, _ = p.uidl()
print("UIDL", b" ".join(uidl).decode())
for n in range(1, count + 1):
    resp, lines, octets = p.retr(n)
    body = b"\r\n".join(lines) + b"\r\n"
    assert len(body) == sizes[n], (n, len(body), sizes[n])
    with open(os.path.join(outdir, "%d.eml" % n), "wb") as f:
        f.write(body)
resp, top, _ = p.top(1, 0)
assert top[-1] == b"", top
print("TOP", len(top))
p.quit()

# 2. Implicit TLS: delete the first message and commit with QUIT.
p = poplib.POP3_SSL(host, int(tls_port), context=ctx, timeout=15)
p.user(user)
p.pass_(password)
p.dele(1)
p.quit()
p = poplib.POP3_SSL(host, int(tls_port), context=ctx, timeout=15)
p.user(user)
p.pass_(password)
print("AFTER", p.stat()[0])
p.quit()
