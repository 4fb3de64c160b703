//go:build unix

package pgtest

import (
	"strings"
	"testing"
)

// TestDecidePgBouncer: the one rule for tests that need PgBouncer. Installed, they run
// with its path; missing, they skip with a notice naming the package to install, unless
// CI or SEQREPO_REQUIRE_PGBOUNCER is set, which makes them fail.
func TestDecidePgBouncer(t *testing.T) {
	found := func() (string, error) { return "/usr/sbin/pgbouncer", nil }
	missing := func() (string, error) { return "", errNoPgBouncer }
	for _, c := range []struct {
		name    string
		env     map[string]string
		find    func() (string, error)
		want    pgbouncerOutcome
		mention []string // what the message must say
	}{
		{"installed", nil, found, pgbouncerRun, nil},
		{"installed, in CI", map[string]string{"CI": "true"}, found, pgbouncerRun, nil},
		{"missing", nil, missing, pgbouncerSkip,
			[]string{"apt-get install pgbouncer", "skipped", "CI", RequirePgBouncerEnv}},
		{"missing, CI empty", map[string]string{"CI": ""}, missing, pgbouncerSkip, []string{"apt-get install pgbouncer"}},
		{"missing, in CI", map[string]string{"CI": "true"}, missing, pgbouncerFail,
			[]string{"apt-get install pgbouncer", "required", "CI set"}},
		{"missing, required", map[string]string{RequirePgBouncerEnv: "1"}, missing, pgbouncerFail,
			[]string{"apt-get install pgbouncer", RequirePgBouncerEnv + " set"}},
		{"missing, both", map[string]string{"CI": "1", RequirePgBouncerEnv: "1"}, missing, pgbouncerFail,
			[]string{"CI and " + RequirePgBouncerEnv + " set"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, outcome, msg := decidePgBouncer(func(name string) string { return c.env[name] }, c.find)
			if outcome != c.want {
				t.Fatalf("outcome %d, want %d (message %q)", outcome, c.want, msg)
			}
			if wantPath := map[bool]string{true: "/usr/sbin/pgbouncer"}[c.want == pgbouncerRun]; path != wantPath {
				t.Errorf("path %q, want %q", path, wantPath)
			}
			for _, s := range c.mention {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not say %q", msg, s)
				}
			}
		})
	}
}

// TestRequirePgBouncer: the helper skips or fails the test as decidePgBouncer says, and
// returns the path when pgbouncer is there.
func TestRequirePgBouncer(t *testing.T) {
	missing := func() (string, error) { return "", errNoPgBouncer }
	env := func(vars map[string]string) func(string) string {
		return func(name string) string { return vars[name] }
	}

	var got string
	ft := runFake(t, func(tb testing.TB) {
		got = requirePgBouncer(tb, env(nil), func() (string, error) { return "/opt/pgbouncer", nil })
	})
	if ft.skipped || ft.Failed() || got != "/opt/pgbouncer" {
		t.Errorf("installed: skipped %v, failed %v, path %q:\n%s", ft.skipped, ft.Failed(), got, ft.output())
	}

	ran := false
	ft = runFake(t, func(tb testing.TB) {
		requirePgBouncer(tb, env(nil), missing)
		ran = true
	})
	if !ft.skipped || ft.Failed() || ran || !strings.Contains(ft.output(), "apt-get install pgbouncer") {
		t.Errorf("missing outside CI: skipped %v, failed %v, went on %v; want a skip naming the package:\n%s",
			ft.skipped, ft.Failed(), ran, ft.output())
	}

	ft = runFake(t, func(tb testing.TB) {
		requirePgBouncer(tb, env(map[string]string{"CI": "true"}), missing)
		ran = true
	})
	if ft.skipped || !ft.fatal || ran || !strings.Contains(ft.output(), "apt-get install pgbouncer") {
		t.Errorf("missing in CI: skipped %v, fatal %v, went on %v; want a failure naming the package:\n%s",
			ft.skipped, ft.fatal, ran, ft.output())
	}

}
