package helm

import (
	"slices"
	"testing"
)

// tierArgs returns the container arguments of a tier's Deployment.
func tierArgs(t *testing.T, objs []map[string]any, tier string) []any {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == "Deployment" && get(o, "metadata", "name") == "mf-mailfleet-"+tier {
			return get(get(o, "spec", "template", "spec", "containers").([]any)[0], "args").([]any)
		}
	}
	t.Fatalf("no %s Deployment", tier)
	return nil
}

// milterFlag returns the --milter=... argument, "" if none.
func milterFlag(args []any) string {
	for _, a := range args {
		if s := a.(string); len(s) > 9 && s[:9] == "--milter=" {
			return s
		}
	}
	return ""
}

// No filter by default; rspamd.enabled runs rspamd and points the MX at
// its Service; inbound.milter.address names another filter, which wins.
// submission.milter.enabled points submission at the same filter, and
// rspamd's network policy then admits it too.
func TestMilterWiring(t *testing.T) {
	for _, c := range []struct {
		args       []string
		milter     string // "" = no --milter flag
		submission string // submission's --milter flag
		rspamd     bool
	}{
		{nil, "", "", false},
		{[]string{"--set", "rspamd.enabled=true"}, "--milter=mf-mailfleet-rspamd:11332", "", true},
		{[]string{"--set", "inbound.milter.address=inet:filter.mail.svc:11332"}, "--milter=inet:filter.mail.svc:11332", "", false},
		{[]string{"--set", "rspamd.enabled=true,inbound.milter.address=unix:/run/milter.sock"}, "--milter=unix:/run/milter.sock", "", true},
		{[]string{"--set", "rspamd.enabled=true,submission.milter.enabled=true"}, "--milter=mf-mailfleet-rspamd:11332", "--milter=mf-mailfleet-rspamd:11332", true},
		{[]string{"--set", "submission.milter.enabled=true"}, "", "", false}, // no filter to use
	} {
		objs := render(t, c.args...)
		args := tierArgs(t, objs, "inbound")
		if got := milterFlag(args); got != c.milter {
			t.Errorf("%v: MX milter flag %q, want %q", c.args, got, c.milter)
		}
		if c.milter != "" && !slices.Contains(args, any("--milter-default-action=tempfail")) {
			t.Errorf("%v: the MX does not fail closed by default: %v", c.args, args)
		}
		if got := milterFlag(tierArgs(t, objs, "submission")); got != c.submission {
			t.Errorf("%v: submission milter flag %q, want %q", c.args, got, c.submission)
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
			var admitted []any
			for _, f := range get(get(o, "spec", "ingress").([]any)[0], "from").([]any) {
				admitted = append(admitted, get(f, "podSelector", "matchLabels", "app.kubernetes.io/component"))
			}
			want := []any{"inbound"}
			if c.submission != "" {
				want = append(want, "submission")
			}
			if !slices.Equal(admitted, want) {
				t.Errorf("%v: rspamd's milter port admits %v, want %v", c.args, admitted, want)
			}
		}
	}
}
