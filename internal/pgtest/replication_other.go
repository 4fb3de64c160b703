//go:build unix && !linux

package pgtest

// stoppedOrGone cannot tell outside Linux whether a signalled process has stopped yet: it says yes.
func stoppedOrGone(int) bool { return true }

// processesIn cannot find a server's processes outside Linux: it finds none.
func processesIn(string) []int { return nil }
