// Command submission accepts mail from users' clients (587/465, AUTH over
// TLS) and delivers it: locally at once, remotely through the durable queue.
package main

import "github.com/mailfleet/mailfleet/services/submission/internal/app"

func main() { app.Main() }
