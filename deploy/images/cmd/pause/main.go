// Command pause is the sandbox ("pause") container of a pod on clusters
// built without a registry (hack/local-k8s.sh): it holds the pod's
// namespaces open and does nothing until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
