//go:build unix

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// dirPrefix names cluster and PgBouncer directories, so the sweep can find them.
	dirPrefix = "seqrepo-pgtest-"
	// ownerFile, in a cluster directory, holds "<pid> <start time>" of the process that owns it.
	ownerFile = "owner"
	// maxSocketPath is the longest socket path we accept: sun_path holds 108 bytes with the terminating NUL,
	// and we stay one byte under PostgreSQL's limit.
	maxSocketPath = 106
	// ownerlessGrace is how long a cluster directory without an owner file is presumed to be in creation.
	ownerlessGrace = time.Minute
	// killTimeout bounds the wait for a killed stale postmaster or pgbouncer to go away.
	killTimeout = 10 * time.Second
)

// serverCredential returns the OS user to run initdb and postgres as: nil (ourselves) unless we are root,
// which initdb refuses to run as; then the "postgres" user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(superuser)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, which initdb refuses, and there is no %q OS user to run "+
			"the server as (%v): create it (the PostgreSQL server package does), run the tests as an ordinary user, "+
			"or set DATABASE_URL to a PostgreSQL server to use instead", superuser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user %s: uid %q: %w", superuser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user %s: gid %q: %w", superuser, u.Gid, err)
	}
	// Groups is empty on purpose: the server gets no supplementary groups, root's least of all.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// baseDir picks where cluster directories go: os.TempDir() when the socket path fits and the server's user can
// reach it, else /tmp.
func baseDir(cred *syscall.Credential) (string, error) {
	for _, dir := range []string{os.TempDir(), "/tmp"} {
		// <dir>/seqrepo-pgtest-<up to 20 digits>/.s.PGSQL.<port>
		longest := len(dir) + len("/"+dirPrefix) + 20 + len("/.s.PGSQL.") + len(strconv.Itoa(port))
		if filepath.IsAbs(dir) && longest <= maxSocketPath && reachable(dir, cred) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("pgtest: neither %s nor /tmp can hold the server's socket (path too long, or not "+
		"reachable by the server's OS user)", os.TempDir())
}

// reachable reports whether dir is a directory that the user in cred (nil: ourselves) can search, along with
// every directory above it.
func reachable(dir string, cred *syscall.Credential) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	if cred == nil {
		return true
	}
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Stat_t
		if err := syscall.Stat(d, &st); err != nil {
			return false
		}
		var bit uint32 = 0o001
		switch {
		case st.Uid == cred.Uid:
			bit = 0o100
		case st.Gid == cred.Gid:
			bit = 0o010
		}
		if uint32(st.Mode)&bit == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// newClusterDir creates a private cluster directory under base, records this process as its owner, and gives
// it to the server's user.
func newClusterDir(base string, cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	owner := fmt.Sprintf("%d %d\n", os.Getpid(), processStartTime(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if err := chown(dir, cred); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return dir, nil
}

func chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

// privateDir makes a new seqrepo-pgtest-* directory for a server process (a cluster or
// a PgBouncer), owned by the OS user it runs as (cred, nil to run as ourselves), after
// sweeping the directories of dead owners.
func privateDir() (dir string, cred *syscall.Credential, err error) {
	cred, err = serverCredential()
	if err != nil {
		return "", nil, err
	}
	base, err := baseDir(cred)
	if err != nil {
		return "", nil, err
	}
	sweepStale(base)
	dir, err = newClusterDir(base, cred)
	if err != nil {
		return "", nil, err
	}
	return dir, cred, nil
}

// sweepStale removes cluster directories, under base and /tmp, whose owner process is gone, killing any server
// still running in one. It is best effort: what it cannot remove (another user's, say) it leaves alone.
func sweepStale(base string) {
	bases := []string{base}
	if base != "/tmp" {
		bases = append(bases, "/tmp")
	}
	for _, b := range bases {
		dirs, _ := filepath.Glob(filepath.Join(b, dirPrefix+"*"))
		for _, dir := range dirs {
			if !ownerAlive(dir) {
				_ = removeClusterDir(dir)
			}
		}
	}
}

// ownerAlive reports whether the process that created cluster directory dir is still running. When in doubt
// (the directory is not one of ours, or is still being created) it says yes, so the directory is kept.
func ownerAlive(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return true
	}
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if errors.Is(err, os.ErrNotExist) {
		return time.Since(fi.ModTime()) < ownerlessGrace
	}
	if err != nil {
		return true
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return true
	}
	if !processAlive(pid) {
		return false
	}
	// The pid is in use: by the owner, unless it was reused by a process that started at another time.
	now := processStartTime(pid)
	return start == 0 || now == 0 || now == start
}

// removeClusterDir kills the server still running in directory dir, if any, and removes dir. dir is a cluster's
// (the postmaster's pid file is dir/data/postmaster.pid; a killed postmaster also leaves a System V shared
// memory segment, which is removed too) or a PgBouncer's (pid file dir/pgbouncer.pid).
func removeClusterDir(dir string) error {
	dataDir := filepath.Join(dir, "data")
	if b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid")); err == nil {
		lines := strings.Split(string(b), "\n")
		pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
		killIn(pid, dataDir)
		// Line 7 is "<shared memory key> <shared memory id>".
		if !processAlive(pid) && len(lines) > 6 {
			var key, id int
			if _, err := fmt.Sscan(lines[6], &key, &id); err == nil {
				removeShmSegment(key, id)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, bouncerPidFile)); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		killIn(pid, dir)
	}
	return os.RemoveAll(dir)
}

// killIn kills process pid, and waits a while for it to go, if it is alive and runs in directory dir (its
// working directory: a postmaster's is its data directory, and pgtest starts pgbouncer in its own directory).
// Checking the directory guards against killing an unrelated process that reused the pid.
func killIn(pid int, dir string) {
	if processAlive(pid) && runsIn(pid, dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		_ = waitGone(ctx, pid)
		cancel()
	}
}

// waitGone waits until process pid has exited, or ctx ends.
func waitGone(ctx context.Context, pid int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: process %d still running: %w", pid, context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}
