// Command access serves IMAP and POP3 for every user from any pod, holding no
// state but its connections.
package main

import "github.com/mailfleet/mailfleet/services/access/internal/app"

func main() { app.Main() }
