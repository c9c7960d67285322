package helm

import (
	"slices"
	"testing"
)

// inboundArgs returns the MX container's arguments.
func inboundArgs(t *testing.T, objs []map[string]any) []any {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == "Deployment" && get(o, "metadata", "name") == "mf-mailfleet-inbound" {
			return get(get(o, "spec", "template", "spec", "containers").([]any)[0], "args").([]any)
		}
	}
	t.Fatal("no inbound Deployment")
	return nil
}

// No filter by default; rspamd.enabled runs rspamd and points the MX at
// its Service; inbound.milter.address names another filter, which wins.
func TestMilterWiring(t *testing.T) {
	for _, c := range []struct {
		args   []string
		milter string // "" = no --milter flag
		rspamd bool
	}{
		{nil, "", false},
		{[]string{"--set", "rspamd.enabled=true"}, "--milter=mf-mailfleet-rspamd:11332", true},
		{[]string{"--set", "inbound.milter.address=inet:filter.mail.svc:11332"}, "--milter=inet:filter.mail.svc:11332", false},
		{[]string{"--set", "rspamd.enabled=true,inbound.milter.address=unix:/run/milter.sock"}, "--milter=unix:/run/milter.sock", true},
	} {
		objs := render(t, c.args...)
		args := inboundArgs(t, objs)
		got := ""
		for _, a := range args {
			if s := a.(string); len(s) > 9 && s[:9] == "--milter=" {
				got = s
			}
		}
		if got != c.milter {
			t.Errorf("%v: MX milter flag %q, want %q", c.args, got, c.milter)
		}
		if c.milter != "" && !slices.Contains(args, any("--milter-default-action=tempfail")) {
			t.Errorf("%v: the MX does not fail closed by default: %v", c.args, args)
		}
		var rspamd []string
		for _, o := range objs {
			if get(o, "metadata", "labels", "app.kubernetes.io/component") == "rspamd" || get(o, "metadata", "name") == "mf-mailfleet-rspamd" {
				rspamd = append(rspamd, o["kind"].(string)+"/"+get(o, "metadata", "name").(string))
			}
		}
		if c.rspamd != (len(rspamd) > 0) {
			t.Errorf("%v: rspamd objects %v, want them %v", c.args, rspamd, c.rspamd)
		}
		for _, o := range objs {
			if o["kind"] != "NetworkPolicy" || get(o, "metadata", "name") != "mf-mailfleet-rspamd" {
				continue
			}
			from := get(get(o, "spec", "ingress").([]any)[0], "from").([]any)
			if get(from[0], "podSelector", "matchLabels", "app.kubernetes.io/component") != "inbound" {
				t.Errorf("rspamd's milter port admits %v, want only the MX", from)
			}
		}
	}
}
