//go:build unix

package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// startBouncer starts a PgBouncer in front of the shared server, stopped when t ends. Without pgbouncer it skips
// t, or fails it in CI (RequirePgBouncer).
func startBouncer(t *testing.T, opts PgBouncerOptions) *PgBouncer {
	t.Helper()
	RequirePgBouncer(t)
	admin, _ := Server(t)
	b, err := StartPgBouncer(testContext(t), admin, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

func TestPgBouncerLifecycle(t *testing.T) {
	ctx := testContext(t)
	b := startBouncer(t, PgBouncerOptions{PoolSize: 2})
	if !strings.HasPrefix(b.Version(), "1.") {
		t.Errorf("Version() = %q", b.Version())
	}
	if _, err := os.Stat(filepath.Join(b.SocketDir(), fmt.Sprintf(".s.PGSQL.%d", b.Port()))); err != nil {
		t.Errorf("no socket in SocketDir: %v", err)
	}
	dsn := b.DSN(dbName(t, NewDatabase(t)))
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != b.SocketDir() || cfg.DefaultQueryExecMode != pgx.QueryExecModeCacheDescribe {
		t.Errorf("DSN %q: host %q, exec mode %v", dsn, cfg.Host, cfg.DefaultQueryExecMode)
	}

	// The console shows the configuration: transaction pooling, a Unix socket only.
	console, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=pgbouncer sslmode=disable", b.SocketDir(), b.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = console.Close(context.Background()) })
	results, err := console.Exec(ctx, "SHOW CONFIG").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	config := map[string]string{}
	for _, row := range results[0].Rows {
		config[string(row[0])] = string(row[1])
	}
	for key, want := range map[string]string{"pool_mode": "transaction", "listen_addr": "", "default_pool_size": "2",
		"auth_type": "trust", "unix_socket_dir": b.SocketDir()} {
		if got, ok := config[key]; !ok || got != want {
			t.Errorf("SHOW CONFIG: %s = %q, want %q", key, got, want)
		}
	}

	// Transaction pooling: while one client holds a server connection in a transaction, another client's next
	// statement runs on a different server connection than its previous one.
	c1, c2 := connect(t, ctx, dsn), connect(t, ctx, dsn)
	before := queryString(t, ctx, c1, "SELECT pg_backend_pid()::text")
	tx, err := c2.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var held string
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()::text").Scan(&held); err != nil {
		t.Fatal(err)
	}
	after := queryString(t, ctx, c1, "SELECT pg_backend_pid()::text")
	if held != before || after == before {
		t.Errorf("backend pids: client 1 before %s, client 2 in a transaction %s, client 1 after %s; want the first "+
			"two equal and the third different", before, held, after)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	pid, dir := b.pid(), b.SocketDir()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) || processAlive(pid) {
		t.Errorf("after Stop: directory %v, pgbouncer alive %v", err, processAlive(pid))
	}
	if n := b.Logins(cfg.Database); n != 2 {
		t.Errorf("Logins(%s) = %d, want 2", cfg.Database, n)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := StartPgBouncer(ctx, "host=/nonexistent", PgBouncerOptions{PoolSize: -1}); err == nil {
		t.Error("StartPgBouncer with PoolSize -1 succeeded")
	}
}

// TestPgBouncerExecModes is the evidence behind PgBouncerExecMode, against PgBouncer in transaction pooling
// mode with two server connections: pgx's default exec mode (cache_statement) and database/sql prepared
// statements (GORM's PrepareStmt) break, because they leave named prepared statements on a server connection
// that other clients then get, or that the same client does not get back; cache_describe, exec and
// simple_protocol survive the pooling, with COPY too, and leave no prepared statement behind; of those, only
// cache_describe can send an array given as []any, and all three an array given as its text, as seqrepo's Upsert
// and its unnest INSERTs do.
func TestPgBouncerExecModes(t *testing.T) {
	ctx := testContext(t)
	b := startBouncer(t, PgBouncerOptions{PoolSize: 2})
	const query = "SELECT $1::int + 1"
	// connect opens a fresh database's two clients in mode: a fresh database is a fresh pool, with no server
	// connection yet.
	connect2 := func(t *testing.T, mode string) (dsn string, c1, c2 *pgx.Conn) {
		t.Helper()
		dsn = b.DSN(dbName(t, NewDatabase(t))) + " default_query_exec_mode=" + mode // the later keyword wins
		return dsn, connect(t, ctx, dsn), connect(t, ctx, dsn)
	}
	add1 := func(c *pgx.Conn, n int) error {
		var got int
		if err := c.QueryRow(ctx, query, n).Scan(&got); err != nil {
			return err
		}
		if got != n+1 {
			return fmt.Errorf("%s with %d = %d", query, n, got)
		}
		return nil
	}

	t.Run("cache_statement prepares a statement another client then meets", func(t *testing.T) {
		_, c1, c2 := connect2(t, "cache_statement")
		if err := add1(c1, 1); err != nil { // prepares stmtcache_… on the pool's only server connection
			t.Fatal(err)
		}
		err := add1(c2, 1) // gets that server connection, and prepares the same name there
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42P05" {
			t.Fatalf("second client: %v, want duplicate_prepared_statement (42P05)", err)
		}
	})
	t.Run("cache_statement does not get its statement back", func(t *testing.T) {
		_, c1, c2 := connect2(t, "cache_statement")
		if err := add1(c1, 1); err != nil {
			t.Fatal(err)
		}
		tx, err := c2.Begin(ctx) // holds the server connection that has c1's statement
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		err = add1(c1, 2) // runs on a second server connection, which has never heard of it
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "26000" {
			t.Fatalf("cached statement on another server connection: %v, want invalid_sql_statement_name (26000)", err)
		}
	})
	t.Run("database/sql Prepare", func(t *testing.T) {
		dsn, _, _ := connect2(t, PgBouncerExecMode)
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		// pgx's database/sql driver prepares a named statement whatever the exec mode, as GORM's PrepareStmt does.
		// Two client connections, held at once, prepare the same query; each gets the pool's idle server connection.
		var conns [2]*sql.Conn
		for i := range conns {
			if conns[i], err = db.Conn(ctx); err != nil {
				t.Fatal(err)
			}
			defer conns[i].Close()
		}
		s1, err := conns[0].PrepareContext(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer s1.Close()
		_, err = conns[1].PrepareContext(ctx, query)
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42P05" {
			t.Fatalf("second Prepare: %v, want duplicate_prepared_statement (42P05)", err)
		}
	})

	for _, mode := range []string{PgBouncerExecMode, "exec", "simple_protocol"} {
		t.Run(mode+" works", func(t *testing.T) {
			_, c1, c2 := connect2(t, mode)
			if _, err := c1.Exec(ctx, "CREATE TABLE t (id bigint PRIMARY KEY, note text)"); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := add1(c1, i); err != nil {
					t.Fatal(err)
				}
				if err := add1(c2, i); err != nil {
					t.Fatal(err)
				}
			}
			tx, err := c2.Begin(ctx) // c1 moves to the other server connection
			if err != nil {
				t.Fatal(err)
			}
			if err := add1(c1, 10); err != nil {
				t.Fatal(err)
			}
			// COPY outside a transaction (a describe, then the COPY, each self-contained) and inside one.
			rows := [][]any{{int64(1), "one"}, {int64(2), "two"}}
			if n, err := c1.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "note"}, pgx.CopyFromRows(rows)); err != nil || n != 2 {
				t.Fatalf("CopyFrom outside a transaction: %d, %v", n, err)
			}
			if n, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "note"}, pgx.CopyFromRows([][]any{{int64(3), "three"}})); err != nil || n != 1 {
				t.Fatalf("CopyFrom in a transaction: %d, %v", n, err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := queryString(t, ctx, c2, "SELECT string_agg(note, ',' ORDER BY id) FROM t"); got != "one,two,three" {
				t.Errorf("table holds %q", got)
			}
			// No server connection keeps a prepared statement: hold one in a transaction, ask on the other.
			tx, err = c2.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			var inTx, outside int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&inTx); err != nil {
				t.Fatal(err)
			}
			if err := c1.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&outside); err != nil {
				t.Fatal(err)
			}
			if inTx != 0 || outside != 0 {
				t.Errorf("prepared statements left on the server connections: %d and %d", inTx, outside)
			}
		})
	}

	// An array given as []any: only a mode that knows the parameter's type from the server can encode that. So
	// seqrepo's Upsert sends each column to unnest as the array's text, with a cast, which every mode can.
	for mode, works := range map[string]bool{PgBouncerExecMode: true, "exec": false, "simple_protocol": false} {
		t.Run(mode+" and a []any array", func(t *testing.T) {
			_, c1, _ := connect2(t, mode)
			var n int
			err := c1.QueryRow(ctx, "SELECT count(*) FROM unnest($1::bigint[], $2::text[])", []any{int64(1), int64(2)}, []any{"a", nil}).Scan(&n)
			switch {
			case works && (err != nil || n != 2):
				t.Errorf("count = %d, %v; want 2", n, err)
			case !works && (err == nil || !strings.Contains(err.Error(), "unable to encode")):
				t.Errorf("err = %v, want pgx's \"unable to encode\"", err)
			}
		})
		t.Run(mode+" and an array as its text", func(t *testing.T) {
			_, c1, _ := connect2(t, mode)
			var n int
			var got string
			err := c1.QueryRow(ctx, "SELECT count(*), string_agg(coalesce(s, '<null>'), '|' ORDER BY i) FROM unnest($1::bigint[], $2::text[]) AS u(i, s)",
				"{1,2,3}", `{"a","b\\\"c,{}",NULL}`).Scan(&n, &got)
			if err != nil || n != 3 || got != `a|b\"c,{}|<null>` {
				t.Errorf("count = %d, %q, %v; want 3, %q", n, got, err, `a|b\"c,{}|<null>`)
			}
		})
	}
}

// TestPgBouncerSessionState is why Direct exists, and why migrations run against PostgreSQL directly: in
// transaction pooling mode, session state stays with the server connection, not the client. A session advisory
// lock (migrations.Up holds one) stays held after its client has moved on, where that client cannot release
// it, and a SET reaches other clients. (PgBouncer reuses server connections last in, first out, which makes
// this deterministic.)
func TestPgBouncerSessionState(t *testing.T) {
	ctx := testContext(t)
	b := startBouncer(t, PgBouncerOptions{PoolSize: 2})
	dsn := b.DSN(dbName(t, NewDatabase(t)))
	c1, c2 := connect(t, ctx, dsn), connect(t, ctx, dsn)

	if _, err := c1.Exec(ctx, "SELECT pg_advisory_lock(42)"); err != nil { // on server connection A
		t.Fatal(err)
	}
	tx, err := c2.Begin(ctx) // takes A, the idle one
	if err != nil {
		t.Fatal(err)
	}
	var released bool
	if err := c1.QueryRow(ctx, "SELECT pg_advisory_unlock(42)").Scan(&released); err != nil { // on B
		t.Fatal(err)
	}
	var held int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted").Scan(&held); err != nil {
		t.Fatal(err)
	}
	if released || held != 1 {
		t.Errorf("unlock through PgBouncer: released %v, locks still held %d; want false and 1", released, held)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil { // A's session is the tx's now
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := c1.Exec(ctx, "SET seqrepo.marker = 'set by client 1'"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, ctx, c2, "SELECT current_setting('seqrepo.marker', true)"); got != "set by client 1" {
		t.Errorf("client 2 sees seqrepo.marker %q; want client 1's SET, which stayed on the server connection", got)
	}
}

func TestSharedThroughPgBouncer(t *testing.T) {
	RequirePgBouncer(t)
	ctx := testContext(t)
	admin, _ := Server(t)
	newShared := func(report *bytes.Buffer) *sharedServer {
		return &sharedServer{databaseURL: func() string { return admin }, throughPgBouncer: func() bool { return true },
			locate: defaultLocator, report: report}
	}
	var report bytes.Buffer
	s := newShared(&report)
	var setupHost string
	var bounced, direct, created string
	ft := runFake(t, func(tb testing.TB) {
		bounced = s.newDatabase(tb, WithTemplate("t", func(ctx context.Context, dsn string) error {
			cfg, err := pgconn.ParseConfig(dsn)
			if err == nil {
				setupHost = cfg.Host
				err = adminExec(ctx, dsn, "CREATE TABLE from_template (x int)")
			}
			return err
		}))
		direct = s.newDatabase(tb, Direct())
		var err error
		if _, created, err = s.create(ctx, nil); err != nil {
			tb.Fatal(err)
		}
		for _, dsn := range []string{bounced, direct, created} {
			connect(t, ctx, dsn)
		}
		conn := connect(t, ctx, bounced)
		if got := queryString(t, ctx, conn, "SELECT coalesce(to_regclass('from_template')::text, 'none')"); got != "from_template" {
			tb.Errorf("the clone lacks the template's table: %s", got)
		}
	})
	if ft.failed {
		t.Fatal(ft.output())
	}
	if s.bouncer == nil {
		t.Fatal("no PgBouncer started")
	}
	bouncerDir, pid := s.bouncer.SocketDir(), s.bouncer.pid()
	for what, c := range map[string]struct {
		dsn, host string
	}{"NewDatabase": {bounced, bouncerDir}, "CreateDatabase": {created, bouncerDir},
		"Direct": {direct, hostOf(t, admin)}} {
		if got := hostOf(t, c.dsn); got != c.host {
			t.Errorf("%s: host %q, want %q", what, got, c.host)
		}
	}
	if setupHost != hostOf(t, admin) {
		t.Errorf("template setup: host %q, want the server's %q", setupHost, hostOf(t, admin))
	}
	createdName := dbName(t, created)
	if !databaseExists(t, ctx, admin, createdName) {
		t.Fatalf("CreateDatabase's %s is gone before close", createdName)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if want := " (transaction pooling) served 2 of 2 databases handed out through it"; !strings.Contains(report.String(), want) {
		t.Errorf("close reported %q, want it to contain %q", report.String(), want)
	}
	if databaseExists(t, ctx, admin, createdName) {
		t.Errorf("close left CreateDatabase's %s behind", createdName)
	}
	if _, err := os.Stat(bouncerDir); !errors.Is(err, os.ErrNotExist) || processAlive(pid) {
		t.Errorf("after close: PgBouncer directory %v, pgbouncer alive %v", err, processAlive(pid))
	}

	// A database handed out through PgBouncer that nobody connected to through it: close says so.
	report.Reset()
	s = newShared(&report)
	if _, _, err := s.create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err == nil || !strings.Contains(err.Error(), "served none of the 1 databases") {
		t.Errorf("close after no connection through PgBouncer: %v", err)
	}
}

// TestCrashedPgBouncerIsCleanedUp: a PgBouncer whose owner dies goes with it, and the next start sweeps its
// directory.
func TestCrashedPgBouncerIsCleanedUp(t *testing.T) {
	RequirePgBouncer(t)
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashModeEnv+"=pgbouncer")
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
		t.Fatalf("child exited with %v, want exit status 2\nstdout:\n%s\nstderr:\n%s", err, out, stderr.Bytes())
	}
	var pid int
	var dir string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "PGTEST_CRASH_PGBOUNCER pid=%d dir=%s", &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("child printed no pgbouncer pid:\n%s", out)
	}
	if err := waitGone(ctx, pid); err != nil {
		t.Fatalf("pgbouncer of the dead child: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pgbouncer.ini")); err != nil {
		t.Fatalf("the dead child's PgBouncer directory: %v", err)
	}
	b := startBouncer(t, PgBouncerOptions{})
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("StartPgBouncer did not sweep %s: %v", dir, err)
	}
}

func TestBouncerConfig(t *testing.T) {
	server, err := pgconn.ParseConfig("postgres://app:p%22w'd@db.example:6543/app")
	if err != nil {
		t.Fatal(err)
	}
	old := bouncerConfig("/tmp/b", server, PgBouncerOptions{PoolSize: 7}, "1.18.0")
	for _, want := range []string{"* = host=db.example port=6543\n", "pool_mode = transaction\n", "listen_addr =\n",
		"unix_socket_dir = /tmp/b\n", "default_pool_size = 7\n", "admin_users = app\n", "server_tls_sslmode = prefer\n"} {
		if !strings.Contains(old, want) {
			t.Errorf("config lacks %q:\n%s", want, old)
		}
	}
	if strings.Contains(old, "max_prepared_statements") {
		t.Errorf("config for 1.18 sets max_prepared_statements, which 1.18 rejects:\n%s", old)
	}
	if newer := bouncerConfig("/tmp/b", server, PgBouncerOptions{PoolSize: 7}, "1.22.1"); !strings.Contains(newer, "max_prepared_statements = 0\n") {
		t.Errorf("config for 1.22 does not turn prepared statement support off:\n%s", newer)
	}
	if got := quoteAuthFileValue(server.Password); got != `"p""w'd"` {
		t.Errorf("auth file password %s", got)
	}
	if got := quoteBouncerValue("/tmp/with space/o'k"); got != `'/tmp/with space/o''k'` {
		t.Errorf("quoted host %s", got)
	}
}

func hostOf(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Host
}
