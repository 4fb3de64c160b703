//go:build unix

package pgtest

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// servedPattern matches the line Run prints through PgBouncer.
var servedPattern = regexp.MustCompile(`(?m)^pgtest: PgBouncer (\S+) \(transaction pooling\) served (\d+) of (\d+) databases handed out through it$`)

// RerunThroughPgBouncer runs the test binary's tests and examples again, all but the calling test, in a child
// process whose databases are reached through PgBouncer in transaction pooling mode (PgBouncerEnv=1; see
// NewDatabase), so that plain `go test ./...` tests every package that calls it both ways:
//
//	// pgbouncer_test.go
//	func TestThroughPgBouncer(t *testing.T) { pgtest.RerunThroughPgBouncer(t) }
//
// Call it from a top-level test that is not parallel: the child then runs while the parent's parallel tests
// wait, instead of beside them. The child is the same binary (os.Args[0]) with -test.skip naming the calling
// test, -test.count=1 and -test.v, and the parent's -test.short, -test.failfast, -test.parallel and remaining
// time; its own TestMain must call Run. It is killed if the parent dies.
//
// Without pgbouncer, t is skipped, or failed in CI, as RequirePgBouncer says. t fails, quoting the child's
// output, when the child fails or runs no test, or when the child does not report that PgBouncer served every
// database it handed out through it (the line Run prints at exit): a rerun that quietly went straight to
// PostgreSQL would prove nothing. In a process that already runs through PgBouncer it does nothing.
func RerunThroughPgBouncer(t *testing.T) {
	t.Helper()
	if ThroughPgBouncer() {
		t.Logf("this test process already runs through PgBouncer (%s=1): nothing to rerun", PgBouncerEnv)
		return
	}
	RequirePgBouncer(t) // without pgbouncer: skipped, or failed in CI
	args := []string{"-test.skip=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1", "-test.v"}
	for _, name := range []string{"test.short", "test.failfast", "test.parallel"} {
		if f := flag.Lookup(name); f != nil {
			args = append(args, "-"+name+"="+f.Value.String())
		}
	}
	if deadline, ok := t.Deadline(); ok {
		// Leave the parent a moment to report the child's failure before its own timeout.
		args = append(args, "-test.timeout="+max(time.Until(deadline)-10*time.Second, time.Second).String())
	} else {
		args = append(args, "-test.timeout=0")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), PgBouncerEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // the same writer: exec writes to it from one goroutine at a time
	cmd.WaitDelay = 10 * time.Second    // should anything inherit the child's output, do not wait for it forever
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setParentDeathSignal(cmd.SysProcAttr) // with startLocked: the child dies with this process
	wait, err := startLocked(cmd)
	if err != nil {
		t.Fatalf("starting the tests through PgBouncer: %v", err)
	}
	err = <-wait
	output := out.String()
	if err != nil {
		t.Fatalf("the tests through PgBouncer (%s) failed: %v\n%s", strings.Join(cmd.Args, " "), err, failureLines(output))
	}
	passed := strings.Count(output, "--- PASS: ")
	if passed == 0 || strings.Contains(output, "testing: warning: no tests to run") {
		t.Fatalf("the tests through PgBouncer ran no test:\n%s", output)
	}
	m := servedPattern.FindStringSubmatch(output)
	switch {
	case m == nil:
		t.Fatalf("the tests through PgBouncer passed, but the child did not report what PgBouncer served "+
			"(does its TestMain call pgtest.Run, and do its tests call NewDatabase?):\n%s", failureLines(output))
	case m[2] == "0" || m[2] != m[3]:
		t.Fatalf("the tests through PgBouncer passed, but PgBouncer served only %s of the %s databases handed out "+
			"through it: some test did not connect through PgBouncer", m[2], m[3])
	}
	t.Logf("%d tests and subtests passed through PgBouncer %s in transaction pooling mode, which served all %s databases handed out through it",
		passed, m[1], m[3])
}

// failureLines returns a verbose test output without the lines that only say a test started, paused,
// continued or passed.
func failureLines(output string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(output, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if strings.HasPrefix(trimmed, "=== ") || strings.HasPrefix(trimmed, "--- PASS: ") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
