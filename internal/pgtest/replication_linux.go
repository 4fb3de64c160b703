package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
)

// stoppedOrGone reports whether process pid is stopped by a signal (state T) or has exited.
func stoppedOrGone(pid int) bool {
	state, _, err := procStat(pid)
	return errors.Is(err, os.ErrNotExist) || (err == nil && (state == 'T' || state == 'Z'))
}

// processesIn returns the processes whose working directory is dir: for a data directory, the postmaster and
// every process it started.
func processesIn(dir string) []int {
	var pids []int
	entries, _ := filepath.Glob("/proc/[0-9]*")
	for _, e := range entries {
		pid, err := strconv.Atoi(filepath.Base(e))
		if err == nil && runsIn(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}
