// Command storage serves the storage.v1 gRPC API: message bodies in an object
// store, everything else in etcd.
package main

import "github.com/mailfleet/mailfleet/services/storage/internal/app"

func main() { app.Main() }
