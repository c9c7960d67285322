package pop3

import "os"

func tlsDir() (string, error) { return os.MkdirTemp("", "pop3-tls-") }
