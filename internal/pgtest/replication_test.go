//go:build unix

package pgtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPairLifecycle walks a synchronous Pair through a failover: replication, a frozen WAL sender holding a
// commit back and releasing it, a crash that loses the commit the standby never received, promotion, the
// multi-host DSN finding the new primary, and Stop leaving nothing behind.
func TestPairLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	p, err := StartPair(ctx, PairOptions{Synchronous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	primaryData, standbyData := filepath.Join(p.Primary().SocketDir(), "data"), filepath.Join(p.Standby().SocketDir(), "data")

	primary := connect(t, ctx, p.Primary().DSN("postgres"))
	standby := connect(t, ctx, p.Standby().DSN("postgres"))
	if got := queryString(t, ctx, primary, "SHOW synchronous_standby_names"); got != "*" {
		t.Errorf("primary: synchronous_standby_names = %q, want *", got)
	}
	if got := queryString(t, ctx, primary, "SHOW synchronous_commit"); got != "on" {
		t.Errorf("primary: synchronous_commit = %q, want on", got)
	}
	if got := queryString(t, ctx, standby, "SHOW synchronous_standby_names"); got != "" {
		t.Errorf("standby: synchronous_standby_names = %q, want empty (once promoted it has no standby to wait for)", got)
	}
	if got := queryString(t, ctx, standby, "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("standby: pg_is_in_recovery() = %s", got)
	}
	if got := queryString(t, ctx, primary, "SELECT system_identifier::text FROM pg_control_system()"); got !=
		queryString(t, ctx, standby, "SELECT system_identifier::text FROM pg_control_system()") {
		t.Errorf("the standby's system identifier differs from the primary's %s", got)
	}

	// Replication, and the multi-host DSN reaching the primary.
	execAll(t, ctx, primary, "CREATE TABLE t (x int)", "INSERT INTO t VALUES (1)")
	if err := p.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, ctx, standby, "SELECT count(*)::text FROM t"); got != "1" {
		t.Errorf("standby: %s rows in t after CatchUp, want 1", got)
	}
	if _, err := standby.Exec(ctx, "INSERT INTO t VALUES (2)"); err == nil {
		t.Error("the standby accepted a write before promotion")
	}
	multi := connect(t, ctx, p.DSN("postgres"))
	if got := queryString(t, ctx, multi, "SHOW unix_socket_directories"); got != p.Primary().SocketDir() {
		t.Errorf("the multi-host DSN reached %s, want the primary's %s", got, p.Primary().SocketDir())
	}

	// A frozen WAL sender holds a commit back until it is thawed.
	waiting := func(want int) {
		t.Helper()
		if err := pollUntil(ctx, func() (bool, error) {
			n, err := p.SyncRepWaiters(ctx)
			return n == want, err
		}); err != nil {
			t.Fatalf("waiting for %d backends to wait for the standby: %v", want, err)
		}
	}
	if err := p.FreezeWALSender(ctx); err != nil {
		t.Fatal(err)
	}
	held := execAsync(ctx, p.Primary().DSN("postgres"), "INSERT INTO t VALUES (3)")
	waiting(1)
	select {
	case err := <-held:
		t.Fatalf("a commit returned (%v) while the WAL sender was frozen", err)
	default:
	}
	if err := p.ThawWALSender(); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("the commit held back by the frozen WAL sender failed once thawed: %v", err)
	}
	waiting(0)

	// Freeze again, crash the primary: the commit held back is never acknowledged, and it is lost.
	if err := p.FreezeWALSender(ctx); err != nil {
		t.Fatal(err)
	}
	lost := execAsync(ctx, p.Primary().DSN("postgres"), "INSERT INTO t VALUES (4)")
	waiting(1)
	if err := p.KillPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-lost; err == nil {
		t.Error("a commit the standby never received was acknowledged by the killed primary")
	}
	if left := processesIn(primaryData); len(left) > 0 {
		t.Errorf("processes %v of the killed primary still running", left)
	}
	if _, err := multi.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a connection to the killed primary still works")
	}
	if _, err := pgx.Connect(ctx, p.DSN("postgres")); err == nil {
		t.Error("the multi-host DSN connected while no server accepts writes")
	}

	// Promotion: the standby accepts writes, on its own DSN and through the multi-host one, and has what the
	// primary had confirmed, not the lost commit.
	if err := p.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := connect(t, ctx, p.DSN("postgres"))
	if got := queryString(t, ctx, promoted, "SHOW unix_socket_directories"); got != p.Standby().SocketDir() {
		t.Errorf("after promotion the multi-host DSN reached %s, want the standby's %s", got, p.Standby().SocketDir())
	}
	execAll(t, ctx, promoted, "INSERT INTO t VALUES (5)")
	if got := queryString(t, ctx, promoted, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t"); got != "1,3,5" {
		t.Errorf("rows on the new primary: %s, want 1,3,5 (4 was never sent to it)", got)
	}
	if got := queryString(t, ctx, promoted, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); got != "00000002" {
		t.Errorf("the new primary is on timeline %s, want 00000002", got)
	}

	// Stop removes both servers and their directories; it is idempotent.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, dir := range []string{p.Primary().SocketDir(), p.Standby().SocketDir()} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory %s still there after Stop: %v", dir, err)
		}
	}
	if left := processesIn(standbyData); len(left) > 0 {
		t.Errorf("processes %v of the standby still running after Stop", left)
	}
}

// TestPairAsynchronous checks the asynchronous Pair: a commit returns although the WAL sender is frozen, and a
// crash then loses it; what CatchUp waited for survives.
func TestPairAsynchronous(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	p, err := StartPair(ctx, PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	primary := connect(t, ctx, p.Primary().DSN("postgres"))
	if got := queryString(t, ctx, primary, "SHOW synchronous_standby_names"); got != "" {
		t.Errorf("synchronous_standby_names = %q, want empty", got)
	}
	execAll(t, ctx, primary, "CREATE TABLE t (x int)", "INSERT INTO t VALUES (1)")
	if err := p.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.FreezeWALSender(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, ctx, primary, "INSERT INTO t VALUES (2)") // returns: nothing waits for the standby
	if err := p.KillPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := connect(t, ctx, p.DSN("postgres"))
	if got := queryString(t, ctx, promoted, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t"); got != "1" {
		t.Errorf("rows on the new primary: %s, want 1 (2 was acknowledged but never sent)", got)
	}
}

// TestNewPairStopsOnFailure checks that NewPair's cleanup stops both servers of a test that fails.
func TestNewPairStopsOnFailure(t *testing.T) {
	t.Parallel()
	var dirs []string
	ft := runFake(t, func(tb testing.TB) {
		p := NewPair(tb, PairOptions{Synchronous: true})
		dirs = []string{p.Primary().SocketDir(), p.Standby().SocketDir()}
		if err := p.FreezeWALSender(testContext(t)); err != nil {
			tb.Error(err)
		}
		tb.Fatal("the test fails with its WAL sender frozen")
	})
	if !ft.fatal || len(dirs) != 2 {
		t.Fatalf("the fake test did not get to fail: %s", ft.output())
	}
	if strings.Contains(ft.output(), "pgtest:") {
		t.Errorf("NewPair or its cleanup reported an error: %s", ft.output())
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory %s still there after the failed test: %v", dir, err)
		}
		if left := processesIn(filepath.Join(dir, "data")); len(left) > 0 {
			t.Errorf("processes %v still running in %s after the failed test", left, dir)
		}
	}
}

func TestPairOptionsValidation(t *testing.T) {
	_, err := StartPair(context.Background(), PairOptions{Options: Options{Settings: map[string]string{" Synchronous_Standby_Names": "x"}}})
	if err == nil || !strings.Contains(err.Error(), "PairOptions.Synchronous") {
		t.Errorf("StartPair with synchronous_standby_names in Settings: %v, want an error naming PairOptions.Synchronous", err)
	}
	o := withDefaults(Options{Settings: map[string]string{"Synchronous_Commit": "local"}}, map[string]string{"synchronous_commit": "on"})
	if len(o.Settings) != 1 || o.Settings["Synchronous_Commit"] != "local" {
		t.Errorf("withDefaults overrode the caller's setting: %v", o.Settings)
	}
}

// execAll runs statements on conn that must succeed.
func execAll(t *testing.T, ctx context.Context, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// execAsync runs sql on a new connection to dsn in the background and sends its result on the returned channel.
func execAsync(ctx context.Context, dsn, sql string) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- withConn(ctx, dsn, func(conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, sql)
			return err
		})
	}()
	return done
}
