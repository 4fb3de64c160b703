// Package pgtest runs a real, ephemeral PostgreSQL for tests and for seqbench: seqrepo is tested against
// PostgreSQL itself, never a mock, and `go test ./...` needs nothing but the PostgreSQL server binaries.
//
// A test package hands its TestMain to Run, which cleans up after all its tests:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
// Each test then asks for a database of its own, empty or cloned from a template built once per process:
//
//	func TestIngest(t *testing.T) {
//		t.Parallel()
//		dsn := pgtest.NewDatabase(t, pgtest.WithTemplate("migrated", func(ctx context.Context, dsn string) error {
//			return migrate(ctx, dsn) // runs once per test process, however many tests ask
//		}))
//		db, err := gorm.Open(postgres.Open(dsn)) // dropped when the test ends
//		...
//	}
//
// Code without a test, such as Example functions, gets a database from CreateDatabase, typically in a Setup
// that Run calls before the tests; Run drops it afterwards:
//
//	var exampleDSN string
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Run(m, pgtest.Setup(func(ctx context.Context) (err error) {
//			exampleDSN, err = pgtest.CreateDatabase(ctx, migrated)
//			return err
//		})))
//	}
//
// The databases live on one shared server. When DATABASE_URL is set, that is the server: the tests create and
// drop their own databases there and touch nothing else, and a failed test's database is kept and its name
// logged so it can be inspected. Otherwise the first NewDatabase starts an ephemeral cluster, which Run stops.
// Server returns the shared server's admin DSN, for tests that need to look at it from outside.
//
// # PgBouncer
//
// With SEQREPO_TEST_PGBOUNCER=1 (PgBouncerEnv) in its environment, a test process reaches its databases
// through PgBouncer: pgtest starts a PgBouncer in transaction pooling mode in front of the shared server, and
// NewDatabase and CreateDatabase, which still create the databases on the server, return DSNs through it, in
// the pgx exec mode that transaction pooling needs (PgBouncerExecMode). A test that needs a session of its
// own (session advisory locks, SET, LISTEN, pg_backend_pid) asks for a Direct DSN; template setups, which run
// migrations, always get one. RerunThroughPgBouncer, called from a test, runs a package's tests a second time
// that way, as part of a plain go test, and fails unless PgBouncer served every database handed out through
// it. StartPgBouncer starts one directly, in front of any server.
//
// A test that must break the server, for instance restart it in the middle of an ingest, starts one of its own,
// and so does seqbench when it is given no DSN:
//
//	c, err := pgtest.Start(ctx, pgtest.Options{Durable: true})
//	if err != nil { ... }
//	defer c.Stop()
//	dsn := c.DSN("postgres")
//	...
//	err = c.Restart(ctx) // open connections break; new ones work
//
// A Cluster is a postgres process (initdb'd with trust authentication, superuser "postgres") in a private
// directory named seqrepo-pgtest-* under the temporary directory, listening only on a Unix socket in that
// directory. When running as root it runs as the "postgres" OS user, since initdb refuses to run as root.
// Without Options.Durable it runs with fsync, synchronous_commit and full_page_writes off: fast, and fine for
// data that is thrown away.
//
// Nothing is left behind. Stop and Run remove the server and its directory, and PgBouncer and its. If the
// process dies without them (a panic, a kill, go test -timeout), the kernel kills the server and PgBouncer
// with it (a parent-death signal, on Linux), and the next Start or StartPgBouncer, in any process, removes
// directories whose owner process is gone, killing a server or PgBouncer still running in one.
//
// The server binaries are found on PATH, else in `pg_config --bindir`, else in the highest version under
// /usr/lib/postgresql/*/bin. Without them and without DATABASE_URL, tests fail, never skip, with a message
// that says to install the PostgreSQL server package (Debian: apt-get install postgresql) or set DATABASE_URL.
// pgbouncer is found on PATH, else in /usr/sbin or /usr/local/sbin. It is an extra: a test that needs it calls
// RequirePgBouncer, which without it skips the test, saying to install the pgbouncer package, or fails it when
// CI or SEQREPO_REQUIRE_PGBOUNCER (RequirePgBouncerEnv) is set.
//
// Tests that break a statement on purpose share four helpers: Context bounds their waits by the test's deadline,
// HoldLock parks statements behind a lock held in an open transaction, LockWaiter finds the backend that waits,
// and TerminateBackend ends it. None of them sleeps.
//
// NewDatabase, CreateDatabase, Server, Start and StartPgBouncer are safe for concurrent use, and so are
// Cluster's and PgBouncer's methods.
package pgtest
