//go:build unix && !linux

package pgtest

import (
	"errors"
	"syscall"
)

// setParentDeathSignal does nothing: only Linux has a parent-death signal. A server whose test process dies
// without Stop keeps running until the next Start's sweep finds its directory.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// processAlive reports whether process pid exists.
func processAlive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// processStartTime is unknown outside Linux.
func processStartTime(int) uint64 { return 0 }

// runsIn cannot tell outside Linux, so the sweep never kills a process it cannot identify.
func runsIn(int, string) bool { return false }
