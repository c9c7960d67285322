"""An independent IMAP client (python's imaplib) runs a scripted session.

Usage: imap_session.py HOST PORT(STARTTLS) USER PASSWORD OUTFILE
Writes the fetched message to OUTFILE; any protocol error raises.
"""
import imaplib
import ssl
import sys

host, port, user, password, outfile = sys.argv[1:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

m = imaplib.IMAP4(host, int(port), timeout=15)
assert "STARTTLS" in m.capabilities, m.capabilities
assert "LOGINDISABLED" in m.capabilities
m.starttls(ssl_context=ctx)
m.login(user, password)
typ, boxes = m.list()
assert typ == "OK" and any(b"\\Sent" in b for b in boxes), boxes
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"2", data
typ, data = m.search(None, "SUBJECT", "python")
assert data[0] == b"2", data
typ, data = m.uid("FETCH", "2", "(BODY.PEEK[] FLAGS)")
with open(outfile, "wb") as f:
    f.write(data[0][1])
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
assert typ == "OK", data
typ, data = m.expunge()
assert typ == "OK" and data == [b"1"], data
typ, data = m.status("INBOX", "(MESSAGES)")
assert b"MESSAGES 1" in data[0], data
m.logout()
print("OK")
