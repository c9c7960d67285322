// Command inbound is the MX: SMTP from the Internet for local recipients,
// with SPF, DKIM and DMARC checks.
package main

import "github.com/mailfleet/mailfleet/services/inbound/internal/app"

func main() { app.Main() }
