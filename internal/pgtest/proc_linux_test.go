package pgtest

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestProcessAliveLinux(t *testing.T) {
	if processStartTime(os.Getpid()) == 0 {
		t.Error("no start time for this process")
	}
	cmd := exec.Command("sleep", "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	// Exited but not reaped: a zombie, which holds nothing but its pid.
	ctx := testContext(t)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for state, _, _ := procStat(pid); state != 'Z'; state, _, _ = procStat(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("child %d never became a zombie (state %q)", pid, state)
		case <-tick.C:
		}
	}
	if processAlive(pid) {
		t.Errorf("zombie %d counts as alive", pid)
	}
}
