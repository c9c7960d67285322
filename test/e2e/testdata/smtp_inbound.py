"""An independent SMTP client (python's smtplib) delivers to the MX.

Usage: smtp_inbound.py HOST PORT RCPT MSGFILE
"""
import smtplib
import ssl
import sys

host, port, rcpt, msgfile = sys.argv[1:5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with open(msgfile, "rb") as f:
    msg = f.read()
s = smtplib.SMTP(host, int(port), local_hostname="py.example.org", timeout=15)
s.ehlo()
assert s.has_extn("starttls") and s.has_extn("size") and s.has_extn("8bitmime")
s.starttls(context=ctx)
s.ehlo()
refused = s.sendmail("py@example.org", [rcpt], msg)
assert not refused, refused
try:
    s.sendmail("py@example.org", ["nobody@example.test"], msg)
    raise SystemExit("unknown recipient accepted")
except smtplib.SMTPRecipientsRefused as e:
    code = e.recipients["nobody@example.test"][0]
    assert code == 550, code
s.quit()
print("OK")
