"""python's smtplib sends through submission: implicit TLS (465) with AUTH
LOGIN, and STARTTLS (587) with AUTH PLAIN.

Usage: smtp_submission.py HOST PORT587 PORT465 USER PASSWORD RCPT
"""
import smtplib
import ssl
import sys

host, p587, p465, user, password, rcpt = sys.argv[1:7]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = "From: %s\r\nTo: %s\r\nSubject: from python\r\n\r\nhello\r\n" % (user, rcpt)

s = smtplib.SMTP_SSL(host, int(p465), context=ctx, timeout=15)
s.ehlo()
s.login(user, password)  # smtplib prefers CRAM-MD5, then PLAIN, then LOGIN
s.sendmail(user, [rcpt], msg)
s.quit()

s = smtplib.SMTP(host, int(p587), timeout=15)
s.ehlo()
assert not s.has_extn("auth"), "AUTH offered before TLS"
s.starttls(context=ctx)
s.ehlo()
try:
    s.login(user, "wrong password")
    raise SystemExit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.login(user, password)
s.sendmail(user, [rcpt], msg)
s.quit()
print("OK")
