// Package flagenv lets every flag be set from the environment too (12-factor):
// flag "etcd-endpoints" of a program with prefix MAILFLEET is read from
// MAILFLEET_ETCD_ENDPOINTS. A flag given on the command line wins.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the variable that sets a flag.
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, after applying the environment.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(EnvName(prefix, f.Name)); ok && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s: %w", EnvName(prefix, f.Name), serr)
			}
		}
		f.Usage += fmt.Sprintf(" (env %s)", EnvName(prefix, f.Name))
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}
