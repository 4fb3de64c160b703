//go:build unix

package pgtest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// RequirePgBouncerEnv names the environment variable that, set to anything, makes a missing PgBouncer fail
// every test that needs it (see RequirePgBouncer) instead of skipping it. The CI variable does the same;
// .ci/run sets both.
const RequirePgBouncerEnv = "SEQREPO_REQUIRE_PGBOUNCER"

// RequirePgBouncer is the one rule for a test that needs PgBouncer (one that calls StartPgBouncer, runs the
// shared server through it, or reruns its package through it): call it first, and it returns the path of the
// pgbouncer binary.
//
// Go and the PostgreSQL server binaries are all `go test ./...` needs; PgBouncer is an extra. So where
// pgbouncer is not installed, RequirePgBouncer skips tb with a notice that names the package to install
// (Debian/Ubuntu: apt-get install pgbouncer), shown by go test -v and go test -json. Where PgBouncer must be
// tested, when the CI variable or RequirePgBouncerEnv is set to anything, it fails tb instead, so that CI cannot
// pass with those tests quietly skipped.
//
// It is safe for concurrent use.
func RequirePgBouncer(tb testing.TB) string {
	tb.Helper()
	return requirePgBouncer(tb, os.Getenv, pgbouncerBinary)
}

// requirePgBouncer is RequirePgBouncer with the environment and the binary lookup given.
func requirePgBouncer(tb testing.TB, getenv func(string) string, find func() (string, error)) string {
	tb.Helper()
	path, outcome, msg := decidePgBouncer(getenv, find)
	switch outcome {
	case pgbouncerSkip:
		tb.Skip(msg)
	case pgbouncerFail:
		tb.Fatal(msg)
	}
	return path
}

// pgbouncerOutcome is what a test that needs PgBouncer does.
type pgbouncerOutcome int

const (
	pgbouncerRun  pgbouncerOutcome = iota // pgbouncer is installed: run
	pgbouncerSkip                         // it is not, and nothing requires it: skip, saying how to install it
	pgbouncerFail                         // it is not, and CI or RequirePgBouncerEnv requires it: fail
)

// decidePgBouncer decides what a test that needs PgBouncer does, given the environment (getenv) and the binary
// lookup (find): it returns pgbouncer's path to run with, or the outcome and the message to skip or fail with.
func decidePgBouncer(getenv func(string) string, find func() (string, error)) (path string, outcome pgbouncerOutcome, msg string) {
	path, err := find()
	if err == nil {
		return path, pgbouncerRun, ""
	}
	var requiredBy []string
	for _, name := range []string{"CI", RequirePgBouncerEnv} {
		if getenv(name) != "" {
			requiredBy = append(requiredBy, name)
		}
	}
	if len(requiredBy) > 0 {
		return "", pgbouncerFail, fmt.Sprintf("%v. This test needs it, and it is required here: %s set.",
			err, strings.Join(requiredBy, " and "))
	}
	return "", pgbouncerSkip, fmt.Sprintf("%v. This test needs it: skipped (with CI or %s set, it fails).",
		err, RequirePgBouncerEnv)
}
