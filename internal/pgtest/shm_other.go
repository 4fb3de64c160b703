//go:build unix && !(linux && (amd64 || arm64 || riscv64 || loong64))

package pgtest

// shmSupported says whether this platform can inspect and remove System V shared memory segments.
const shmSupported = false

// shmSegmentExists cannot tell on this platform.
func shmSegmentExists(key, id int) bool { return false }

// removeShmSegment does nothing on this platform: a killed server's small System V segment stays until
// removed with ipcrm.
func removeShmSegment(key, id int) {}
