//go:build unix

package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) {
	if msg := os.Getenv(setupFailEnv); msg != "" {
		// TestSetupFailure's child: a Setup that fails.
		os.Exit(Run(m, Setup(func(context.Context) error { return errors.New(msg) })))
	}
	os.Exit(Run(m))
}

// setupFailEnv tells a re-executed test binary to give Run a Setup that fails with the variable's value.
const setupFailEnv = "PGTEST_SETUP_FAIL"

// crashModeEnv tells a re-executed test binary to run TestCrashChild: start a cluster and die without Stop.
const crashModeEnv = "PGTEST_CRASH_MODE"

// The tests that look at cluster directories or processes of this process are not parallel: they run before
// the parallel ones, so no other Start races them.

func TestClusterLifecycle(t *testing.T) {
	ctx := testContext(t)
	c, err := Start(ctx, Options{Settings: map[string]string{"max_connections": "250"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	dsn := c.DSN("postgres")
	if want := "host=" + c.SocketDir() + " port=" + strconv.Itoa(c.Port()); !strings.Contains(dsn, want) {
		t.Errorf("DSN %q does not contain %q", dsn, want)
	}
	if _, err := os.Stat(filepath.Join(c.SocketDir(), fmt.Sprintf(".s.PGSQL.%d", c.Port()))); err != nil {
		t.Errorf("no socket in SocketDir: %v", err)
	}
	conn := connect(t, ctx, dsn)
	for setting, want := range map[string]string{"fsync": "off", "synchronous_commit": "off",
		"full_page_writes": "off", "max_connections": "250", "listen_addresses": ""} {
		if got := queryString(t, ctx, conn, "SHOW "+setting); got != want {
			t.Errorf("SHOW %s = %q, want %q", setting, got, want)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE survives_restart (x int); INSERT INTO survives_restart VALUES (42)"); err != nil {
		t.Fatal(err)
	}

	oldPid := c.pid()
	if !processAlive(oldPid) {
		t.Fatalf("postmaster %d is not running", oldPid)
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a connection opened before Restart still works")
	}
	newPid := c.pid()
	if newPid == oldPid || processAlive(oldPid) {
		t.Errorf("Restart: postmaster pid %d -> %d, old one alive: %v", oldPid, newPid, processAlive(oldPid))
	}
	conn = connect(t, ctx, c.DSN("postgres"))
	if got := queryString(t, ctx, conn, "SELECT x::text FROM survives_restart"); got != "42" {
		t.Errorf("after Restart the table holds %q, want 42", got)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.SocketDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory still there after Stop: %v", err)
	}
	if processAlive(newPid) {
		t.Errorf("postmaster %d still running after Stop", newPid)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := c.Restart(ctx); !errors.Is(err, errStopped) {
		t.Errorf("Restart after Stop = %v, want errStopped", err)
	}
}

func TestStartFailureQuotesLogAndCleansUp(t *testing.T) {
	ctx := testContext(t)
	before := ownClusterDirs(t)
	c, err := Start(ctx, Options{Settings: map[string]string{"shared_buffers": "plenty"}})
	if err == nil {
		_ = c.Stop()
		t.Fatal("Start with an invalid setting succeeded")
	}
	for _, want := range []string{"exited before it was ready", `invalid value for parameter "shared_buffers"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	for dir := range ownClusterDirs(t) {
		if !before[dir] {
			t.Errorf("failed Start left %s behind", dir)
		}
	}
}

func TestSettingsValidation(t *testing.T) {
	fast, err := Options{}.serverSettings()
	if err != nil {
		t.Fatal(err)
	}
	durable, err := Options{Durable: true, Settings: map[string]string{"Max_Connections": "500", "work_mem": "8MB"}}.serverSettings()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if fast[name] != "off" {
			t.Errorf("not durable: %s = %q, want off", name, fast[name])
		}
		if v, ok := durable[name]; ok {
			t.Errorf("durable: %s = %q, want PostgreSQL's default", name, v)
		}
	}
	if n, _ := strconv.Atoi(fast["max_connections"]); n < 200 {
		t.Errorf("default max_connections = %q, want at least 200", fast["max_connections"])
	}
	if durable["max_connections"] != "500" || durable["work_mem"] != "8MB" {
		t.Errorf("Settings not applied: %v", durable)
	}
	for _, name := range []string{"port", "LISTEN_ADDRESSES", "unix_socket_directories", "logging_collector"} {
		if _, err := (Options{Settings: map[string]string{name: "x"}}).serverSettings(); err == nil {
			t.Errorf("Settings may set %s", name)
		}
	}
	args := strings.Join(postmasterArgs("/d", "/s", fast), " ")
	for _, want := range []string{"-D /d -k /s -c port=5432", "-c listen_addresses= ", "-c lc_messages=C"} {
		if !strings.Contains(args, want) {
			t.Errorf("postmaster args %q lack %q", args, want)
		}
	}
}

// TestCrashChild is the child half of TestCrashedOwnerIsCleanedUp; run normally, it does nothing.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashModeEnv)
	if mode == "" {
		return
	}
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Printf("PGTEST_CRASH error=%v\n", err)
		os.Exit(3)
	}
	fmt.Printf("PGTEST_CRASH pid=%d dir=%s\n", c.pid(), c.SocketDir())
	if mode == "pgbouncer" {
		b, err := StartPgBouncer(context.Background(), c.DSN("postgres"), PgBouncerOptions{})
		if err != nil {
			fmt.Printf("PGTEST_CRASH error=%v\n", err)
			os.Exit(3)
		}
		fmt.Printf("PGTEST_CRASH_PGBOUNCER pid=%d dir=%s\n", b.pid(), b.SocketDir())
	}
	if mode == "panic" {
		panic("pgtest: crashing on purpose, without Stop")
	}
	os.Exit(2)
}

func TestCrashedOwnerIsCleanedUp(t *testing.T) {
	ctx := testContext(t)
	type leftover struct {
		pid int
		dir string
	}
	var leftovers []leftover
	for _, mode := range []string{"exit", "panic"} {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashModeEnv+"="+mode)
		cmd.WaitDelay = 10 * time.Second // should anything inherit the child's output, do not wait for it forever
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
			t.Fatalf("%s: child exited with %v, want exit status 2\nstdout:\n%s\nstderr:\n%s", mode, err, out, stderr.Bytes())
		}
		var l leftover
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "PGTEST_CRASH pid=%d dir=%s", &l.pid, &l.dir); err == nil {
				break
			}
		}
		if l.pid == 0 {
			t.Fatalf("%s: child printed no postmaster pid:\n%s", mode, out)
		}

		// The postmaster dies with the thread that started it, and with it the child.
		if err := waitGone(ctx, l.pid); err != nil {
			t.Fatalf("%s: postmaster of the dead child: %v", mode, err)
		}
		// Its directory is left for the next Start to sweep.
		if _, err := os.Stat(filepath.Join(l.dir, "data", "postmaster.pid")); err != nil {
			t.Fatalf("%s: the dead child's cluster directory: %v", mode, err)
		}
		leftovers = append(leftovers, l)
	}

	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, l := range leftovers {
		if _, err := os.Stat(l.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Start did not sweep %s: %v", l.dir, err)
		}
		// The postmaster's children saw it die and exited too.
		if err := waitNoProcessIn(ctx, filepath.Join(l.dir, "data")); err != nil {
			t.Error(err)
		}
	}
}

// TestStopAfterServerKilled checks the cleanup the sweep also relies on: after a postmaster is killed, removing
// its directory also removes the System V shared memory segment only a clean shutdown would have removed.
// (Checked here rather than after a sweep by Start, because a new postmaster may reclaim the segment itself
// when its data directory happens to reuse the dead one's inode, which is where PostgreSQL starts its keys.)
func TestStopAfterServerKilled(t *testing.T) {
	ctx := testContext(t)
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	dataDir := filepath.Join(c.SocketDir(), "data")
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var key, id int
	if lines := strings.Split(string(pidFile), "\n"); len(lines) < 7 {
		t.Fatalf("short postmaster.pid:\n%s", pidFile)
	} else if _, err := fmt.Sscan(lines[6], &key, &id); err != nil {
		t.Fatalf("postmaster.pid shared memory line %q: %v", lines[6], err)
	}
	if shmSupported && !shmSegmentExists(key, id) {
		t.Fatalf("shared memory segment %d (key %d) of a running server not found", id, key)
	}
	pid := c.pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(ctx, pid); err != nil {
		t.Fatal(err)
	}
	if err := waitNoProcessIn(ctx, dataDir); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.SocketDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory still there after Stop: %v", err)
	}
	if shmSegmentExists(key, id) {
		t.Errorf("shared memory segment %d (key %d) left behind", id, key)
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	cmd := exec.Command("sleep", "0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if pid := cmd.Process.Pid; processAlive(pid) {
		t.Errorf("reaped child %d counts as alive", pid)
	}
}

func TestMissingBinaries(t *testing.T) {
	none := locator{
		lookPath:      func(string) (string, error) { return "", exec.ErrNotFound },
		pgConfigBin:   func() (string, error) { return "", exec.ErrNotFound },
		versionedBins: filepath.Join(t.TempDir(), "*", "bin"),
	}
	remedies := []string{"apt-get install postgresql", "DATABASE_URL"}

	_, err := start(testContext(t), Options{}, none)
	if err == nil {
		t.Fatal("Start without binaries succeeded")
	}
	for _, want := range remedies {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error does not name %q: %v", want, err)
		}
	}

	s := &sharedServer{databaseURL: func() string { return "" }, locate: none}
	ft := runFake(t, func(tb testing.TB) { s.newDatabase(tb) })
	if !ft.fatal || ft.skipped {
		t.Fatalf("NewDatabase without a server: fatal=%v skipped=%v, want a fatal failure", ft.fatal, ft.skipped)
	}
	for _, want := range remedies {
		if !strings.Contains(ft.output(), want) {
			t.Errorf("NewDatabase failure does not name %q: %s", want, ft.output())
		}
	}
}

func TestLocator(t *testing.T) {
	root := t.TempDir()
	server := func(dir string, names ...string) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	versioned := filepath.Join(root, "lib", "*", "bin")
	// Lexically 10 < 12 < 14 < 16 < 9.6 < devel; the highest complete version is 12 (14 cannot run).
	v96 := server(filepath.Join(root, "lib", "9.6", "bin"), "initdb", "postgres")
	v10 := server(filepath.Join(root, "lib", "10", "bin"), "initdb", "postgres")
	v12 := server(filepath.Join(root, "lib", "12", "bin"), "initdb", "postgres")
	server(filepath.Join(root, "lib", "14", "bin"), "initdb", "postgres")
	if err := os.Chmod(filepath.Join(root, "lib", "14", "bin", "postgres"), 0o644); err != nil { // not executable
		t.Fatal(err)
	}
	server(filepath.Join(root, "lib", "16", "bin"), "initdb") // client-only leftovers: no postgres
	server(filepath.Join(root, "lib", "devel", "bin"), "initdb", "postgres")
	clientOnly := server(filepath.Join(root, "client"), "pg_dump")
	linked := server(filepath.Join(root, "linked"))
	if err := os.Symlink(filepath.Join(v96, "initdb"), filepath.Join(linked, "initdb")); err != nil {
		t.Fatal(err)
	}
	notFound := func(string) (string, error) { return "", exec.ErrNotFound }

	for _, tc := range []struct {
		name string
		loc  locator
		want string
	}{
		{"symlink on PATH", locator{
			lookPath:      func(string) (string, error) { return filepath.Join(linked, "initdb"), nil },
			pgConfigBin:   func() (string, error) { return v10, nil },
			versionedBins: versioned,
		}, v96},
		{"pg_config", locator{
			lookPath:      notFound,
			pgConfigBin:   func() (string, error) { return v96, nil },
			versionedBins: versioned,
		}, v96},
		{"client pg_config, highest complete version", locator{
			lookPath:      notFound,
			pgConfigBin:   func() (string, error) { return clientOnly, nil },
			versionedBins: versioned,
		}, v12},
	} {
		got, err := tc.loc.bindir()
		if err != nil || got != tc.want {
			t.Errorf("%s: bindir() = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestDSNs(t *testing.T) {
	c := &Cluster{dir: `/tmp/with space/and'quote`}
	cfg, err := pgconn.ParseConfig(c.DSN("my db"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != c.dir || cfg.Port != 5432 || cfg.User != "postgres" || cfg.Database != "my db" {
		t.Errorf("DSN parsed to host=%q port=%d user=%q dbname=%q", cfg.Host, cfg.Port, cfg.User, cfg.Database)
	}
	for _, dsn := range []string{
		"host=/run/postgresql user=app dbname=app sslmode=disable",
		"postgres://app:secret@db.example:6543/app?sslmode=disable&dbname=other",
		"postgresql:///app?host=/run/postgresql",
	} {
		got, err := withDatabase(dsn, "seqrepo_test_1")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := pgconn.ParseConfig(dsn)
		cfg, err := pgconn.ParseConfig(got)
		if err != nil {
			t.Fatalf("withDatabase(%q) = %q: %v", dsn, got, err)
		}
		if cfg.Database != "seqrepo_test_1" || cfg.Host != want.Host || cfg.Port != want.Port || cfg.User != want.User || cfg.Password != want.Password {
			t.Errorf("withDatabase(%q) = %q: database %q host %q port %d user %q", dsn, got, cfg.Database, cfg.Host, cfg.Port, cfg.User)
		}
	}
	if name := newDatabaseName("tpl", strings.Repeat("Long-Label ", 10)); len(name) > 63 || strings.ContainsAny(name, " -L") {
		t.Errorf("newDatabaseName = %q", name)
	}
}

func TestSharedEphemeralStoppedByClose(t *testing.T) {
	ctx := testContext(t)
	s := &sharedServer{databaseURL: func() string { return "" }, locate: defaultLocator}
	var dsn string
	ft := runFake(t, func(tb testing.TB) {
		dsn = s.newDatabase(tb)
		tb.Errorf("failing on purpose")
	})
	if ft.fatal || dsn == "" {
		t.Fatalf("NewDatabase: %s", ft.output())
	}
	if s.cluster == nil {
		t.Fatal("no ephemeral cluster")
	}
	pid, dir := s.cluster.pid(), s.cluster.SocketDir()
	// On an ephemeral server a failed test's database goes too: nobody could look at it afterwards.
	if databaseExists(t, ctx, s.adminDSN, dbName(t, dsn)) {
		t.Error("a failed test's database survived on the ephemeral cluster")
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) || processAlive(pid) {
		t.Errorf("after close: directory %v, postmaster alive %v", err, processAlive(pid))
	}
	ft = runFake(t, func(tb testing.TB) { s.newDatabase(tb) })
	if !ft.fatal {
		t.Error("NewDatabase after close did not fail")
	}
}

func TestNewDatabase(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn1, dsn2 := NewDatabase(t), NewDatabase(t)
	name1, name2 := dbName(t, dsn1), dbName(t, dsn2)
	if name1 == name2 || !strings.HasPrefix(name1, fmt.Sprintf("seqrepo_test_%d_", os.Getpid())) {
		t.Fatalf("database names %q and %q", name1, name2)
	}
	conn1, conn2 := connect(t, ctx, dsn1), connect(t, ctx, dsn2)
	if got := queryString(t, ctx, conn1, "SELECT current_database()"); got != name1 {
		t.Errorf("connected to %q, want %q", got, name1)
	}
	if _, err := conn1.Exec(ctx, "CREATE TABLE only_in_one (x int)"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, ctx, conn2, "SELECT coalesce(to_regclass('only_in_one')::text, 'none')"); got != "none" {
		t.Errorf("the second database sees the first one's table: %q", got)
	}
	if got := queryString(t, ctx, conn1, "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'"); got != "1" {
		t.Errorf("a new database is not empty: %s tables", got)
	}
}

func TestNewDatabaseDroppedAfterTest(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin, _ := Server(t)
	var name string
	existedInTest, existedAfterDrop := false, true
	t.Run("test", func(t *testing.T) {
		// Registered before NewDatabase, so it runs after NewDatabase's cleanup (last in, first out).
		t.Cleanup(func() { existedAfterDrop = databaseExists(t, ctx, admin, name) })
		name = dbName(t, NewDatabase(t))
		existedInTest = databaseExists(t, ctx, admin, name)
		connect(t, ctx, withDB(t, admin, name)) // left open: the drop forces it closed
	})
	if !existedInTest || existedAfterDrop {
		t.Errorf("database %s: existed during the test %v, after its cleanup %v", name, existedInTest, existedAfterDrop)
	}
	if databaseExists(t, ctx, admin, name) {
		t.Errorf("database %s still exists after the test", name)
	}
	shared.mu.Lock()
	_, tracked := shared.databases[name]
	shared.mu.Unlock()
	if tracked {
		t.Errorf("dropped database %s still tracked for Run", name)
	}
}

var templateRuns atomic.Int32

func TestWithTemplate(t *testing.T) {
	t.Parallel()
	var setups atomic.Int32
	var leftOpen *pgx.Conn
	setup := func(ctx context.Context, dsn string) error {
		setups.Add(1)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		leftOpen = conn // deliberately not closed: cloning must not depend on setup's manners
		_, err = conn.Exec(ctx, "CREATE TABLE widgets (id int PRIMARY KEY, name text); INSERT INTO widgets VALUES (1, 'from setup')")
		return err
	}
	// A name of its own per run: templates live as long as the test process (go test -count=2 reruns in it).
	template := fmt.Sprintf("widgets_%d", templateRuns.Add(1))
	names := make(chan string, 6)
	t.Run("clones", func(t *testing.T) {
		for i := range 6 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				dsn := NewDatabase(t, WithTemplate(template, setup))
				names <- dbName(t, dsn)
				conn := connect(t, ctx, dsn)
				if got := queryString(t, ctx, conn, "SELECT name FROM widgets WHERE id = 1"); got != "from setup" {
					t.Errorf("clone holds %q", got)
				}
				// Every clone is its own: the same key is free in each.
				if _, err := conn.Exec(ctx, "INSERT INTO widgets VALUES (2, 'from a test')"); err != nil {
					t.Error(err)
				}
			})
		}
	})
	close(names)
	if n := setups.Load(); n != 1 {
		t.Errorf("setup ran %d times, want once", n)
	}
	seen := map[string]bool{}
	for name := range names {
		if seen[name] {
			t.Errorf("database %s handed out twice", name)
		}
		seen[name] = true
	}
	if leftOpen != nil {
		_ = leftOpen.Close(context.Background())
	}
}

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// The shared server stands in for DATABASE_URL, given in URL form.
	admin, c := Server(t)
	databaseURL := admin
	if c != nil {
		databaseURL = "postgres://postgres@/postgres?" + url.Values{
			"host": {c.SocketDir()}, "port": {strconv.Itoa(c.Port())}, "sslmode": {"disable"}}.Encode()
	}
	s := &sharedServer{databaseURL: func() string { return databaseURL }, locate: defaultLocator}

	// Someone else's database on that server: never touched.
	other := newDatabaseName("other", "")
	if err := createDatabase(ctx, admin, other, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dropDatabase(context.Background(), admin, other) })

	var passedDSN, failedDSN string
	if ft := runFake(t, func(tb testing.TB) { passedDSN = s.newDatabase(tb) }); ft.failed {
		t.Fatalf("passing test: %s", ft.output())
	}
	ft := runFake(t, func(tb testing.TB) {
		failedDSN = s.newDatabase(tb, WithTemplate("kept", func(ctx context.Context, dsn string) error {
			return adminExec(ctx, dsn, "CREATE TABLE evidence (x int)")
		}))
		tb.Errorf("failing on purpose")
	})
	failed := dbName(t, failedDSN)
	t.Cleanup(func() { _ = dropDatabase(context.Background(), admin, failed) })
	if !strings.Contains(ft.output(), failed) {
		t.Errorf("the failed test's log does not name its database %s: %s", failed, ft.output())
	}
	broken := errors.New("migration 7 is broken")
	ft = runFake(t, func(tb testing.TB) {
		s.newDatabase(tb, WithTemplate("broken", func(context.Context, string) error { return broken }))
	})
	if !ft.fatal || !strings.Contains(ft.output(), broken.Error()) {
		t.Errorf("a failing template setup: fatal=%v, output %s", ft.fatal, ft.output())
	}

	templates := []string{s.template("kept").dbname, s.template("broken").dbname}
	if !databaseExists(t, ctx, admin, templates[0]) || !databaseExists(t, ctx, admin, templates[1]) {
		t.Errorf("templates %v not on the server", templates)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		dbName(t, passedDSN): false, failed: true, templates[0]: false, templates[1]: false, other: true,
	} {
		if got := databaseExists(t, ctx, admin, name); got != want {
			t.Errorf("after close: database %s exists = %v, want %v", name, got, want)
		}
	}
	conn := connect(t, ctx, withDB(t, admin, failed))
	if got := queryString(t, ctx, conn, "SELECT coalesce(to_regclass('evidence')::text, 'none')"); got != "evidence" {
		t.Errorf("kept database lacks the template's table: %s", got)
	}
}

// fakeTB is a test that runFake runs inside a real one, to watch how the helpers treat a test: whether they
// fail it, what they log, what they do in its cleanups. Everything it does not override goes to the real test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex // protects the following
	failed   bool
	fatal    bool
	skipped  bool
	logs     []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeTB) log(failed, fatal, skipped bool, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed, f.fatal, f.skipped = f.failed || failed, f.fatal || fatal, f.skipped || skipped
	f.logs = append(f.logs, msg)
}

func (f *fakeTB) output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.logs, "\n")
}

func (f *fakeTB) Log(args ...any) { f.log(false, false, false, fmt.Sprintln(args...)) }
func (f *fakeTB) Logf(format string, args ...any) {
	f.log(false, false, false, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Error(args ...any) { f.log(true, false, false, fmt.Sprintln(args...)) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.log(true, false, false, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fail() { f.log(true, false, false, "Fail") }
func (f *fakeTB) FailNow() {
	f.log(true, true, false, "FailNow")
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.log(true, true, false, fmt.Sprintln(args...))
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.log(true, true, false, fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeTB) Skip(args ...any) {
	f.log(false, false, true, fmt.Sprintln(args...))
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.log(false, false, true, fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeTB) SkipNow() {
	f.log(false, false, true, "SkipNow")
	runtime.Goexit()
}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// runFake runs body as a fake test, then its cleanups, last in first out, and returns it.
func runFake(t *testing.T, body func(tb testing.TB)) *fakeTB {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f
}

// testContext returns the test's context, bounded by its deadline (less a margin for the report) or three
// minutes, whichever comes first.
func testContext(t *testing.T) context.Context {
	deadline := time.Now().Add(3 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
		deadline = d.Add(-5 * time.Second)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func databaseExists(t *testing.T, ctx context.Context, admin, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

func withDB(t *testing.T, dsn, name string) string {
	t.Helper()
	dsn, err := withDatabase(dsn, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// ownClusterDirs returns the cluster directories this process owns.
func ownClusterDirs(t *testing.T) map[string]bool {
	t.Helper()
	dirs := map[string]bool{}
	for _, base := range []string{os.TempDir(), "/tmp"} {
		matches, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
		for _, dir := range matches {
			b, err := os.ReadFile(filepath.Join(dir, ownerFile))
			var pid int
			if err == nil {
				_, err = fmt.Sscan(string(b), &pid)
			}
			if err == nil && pid == os.Getpid() {
				dirs[dir] = true
			}
		}
	}
	return dirs
}

// waitNoProcessIn waits, bounded by ctx, until no process has dir as its working directory.
func waitNoProcessIn(ctx context.Context, dir string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
		for _, p := range procs {
			if cwd, err := os.Readlink(p); err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+" ")) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes still running in %s: %v", dir, left)
		case <-tick.C:
		}
	}
}

func TestSetupFailure(t *testing.T) {
	cmd := exec.CommandContext(testContext(t), os.Args[0], "-test.run=^TestNewDatabase$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), setupFailEnv+"=migration 3 is broken")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("child exited with %v, want exit status 1:\n%s", err, out)
	}
	if !strings.Contains(string(out), "pgtest: setup before the tests: migration 3 is broken") {
		t.Errorf("child output does not quote the setup error:\n%s", out)
	}
	if strings.Contains(string(out), "=== RUN") {
		t.Errorf("tests ran after a failed setup:\n%s", out)
	}
}

func TestCreateDatabase(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn, err := CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := dbName(t, dsn)
	if got := queryString(t, ctx, connect(t, ctx, dsn), "SELECT current_database()"); got != name {
		t.Errorf("connected to %q, want %q", got, name)
	}
	// Nothing drops it before Run does.
	shared.mu.Lock()
	_, tracked := shared.databases[name]
	shared.mu.Unlock()
	if !tracked {
		t.Errorf("database %s is not tracked for Run to drop", name)
	}
	if _, err := CreateDatabase(ctx, WithTemplate("broken-create", func(context.Context, string) error {
		return errors.New("no such migration")
	})); err == nil || !strings.Contains(err.Error(), "no such migration") {
		t.Errorf("CreateDatabase with a failing template: %v", err)
	}
}
