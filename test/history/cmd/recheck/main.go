// Command recheck runs the history checker again on a history that
// TestHistoryUnderFaults wrote (MAILFLEET_HISTORY_OUT, or the file it names
// on a violation), to debug the checker without running the cluster again:
//
//	go run ./test/history/cmd/recheck /tmp/mailfleet-history-<seed>.json
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mailfleet/mailfleet/test/history"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: recheck HISTORY.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var run struct {
		History *history.History
		Final   *history.Final
	}
	if err := json.Unmarshal(b, &run); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vs, cov := history.Check(run.History, run.Final)
	for _, v := range vs {
		fmt.Println(run.History.Report(v))
	}
	fmt.Printf("checked: %s\n%d operations, %d violations\n", cov, len(run.History.Ops), len(vs))
	if len(vs) > 0 {
		os.Exit(1)
	}
}
