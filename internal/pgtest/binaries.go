package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// errNoServer is returned by Start, and reported by NewDatabase and Server, when no server binaries are found.
// It names both ways out.
var errNoServer = errors.New("pgtest: no PostgreSQL server binaries (initdb and postgres) found on PATH, " +
	"in `pg_config --bindir` or under /usr/lib/postgresql/*/bin: install the PostgreSQL server package " +
	"(Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to a PostgreSQL server to use instead")

// locator finds the directory holding initdb and postgres. Its fields are injectable for tests.
type locator struct {
	lookPath      func(file string) (string, error) // exec.LookPath
	pgConfigBin   func() (string, error)            // the output of pg_config --bindir
	versionedBins string                            // glob of per-version bin directories
}

var defaultLocator = locator{
	lookPath:      exec.LookPath,
	pgConfigBin:   pgConfigBindir,
	versionedBins: "/usr/lib/postgresql/*/bin",
}

// bindir returns a directory holding both initdb and postgres: initdb's (symlinks resolved) when it is on PATH,
// else pg_config's bindir, else the highest version under versionedBins. Every candidate is checked, since
// Debian's pg_config may come from the client package and name a bindir without the server.
func (l locator) bindir() (string, error) {
	if initdb, err := l.lookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil && hasServer(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	if dir, err := l.pgConfigBin(); err == nil && hasServer(dir) {
		return dir, nil
	}
	candidates, _ := filepath.Glob(l.versionedBins) // the pattern is constant; a bad one only finds nothing
	best, bestVersion := "", []int(nil)
	for _, dir := range candidates {
		v := parseVersion(filepath.Base(filepath.Dir(dir)))
		if hasServer(dir) && (best == "" || compareVersions(v, bestVersion) > 0) {
			best, bestVersion = dir, v
		}
	}
	if best == "" {
		return "", errNoServer
	}
	return best, nil
}

// pgConfigBindir runs pg_config --bindir.
func pgConfigBindir() (string, error) {
	pgConfig, err := exec.LookPath("pg_config")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// hasServer reports whether dir holds executable initdb and postgres files.
func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// parseVersion parses a directory name such as "15" or "9.6"; anything else sorts lowest.
func parseVersion(s string) []int {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

func compareVersions(a, b []int) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return len(a) - len(b)
}
