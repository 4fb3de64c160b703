//go:build linux && (amd64 || arm64 || riscv64 || loong64)

package pgtest

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// shmSupported says whether this platform can inspect and remove System V shared memory segments.
const shmSupported = true

const (
	ipcRmid = 0 // IPC_RMID
	ipcStat = 2 // IPC_STAT
)

// shmSegmentExists reports whether System V shared memory segment id exists with key key. (A segment already
// marked for removal has key IPC_PRIVATE and so does not count.)
func shmSegmentExists(key, id int) bool {
	var ds [256]byte // struct shmid_ds is 112 bytes here; its first field, ipc_perm.__key, is an int
	if _, _, errno := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcStat, uintptr(unsafe.Pointer(&ds[0]))); errno != 0 {
		return false
	}
	return int32(binary.NativeEndian.Uint32(ds[:4])) == int32(key)
}

// removeShmSegment removes the System V shared memory segment a killed postmaster left behind (PostgreSQL
// keeps a small one even with shared_memory_type=mmap, and only its postmaster removes it). The key is checked
// first so that a segment that has since been reused is left alone. When processes are still attached, the
// kernel removes it after the last one detaches.
func removeShmSegment(key, id int) {
	if shmSegmentExists(key, id) {
		_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRmid, 0)
	}
}
