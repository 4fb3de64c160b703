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
// The databases live on one shared server. When DATABASE_URL is set, that is the server: the tests create and
// drop their own databases there and touch nothing else, and a failed test's database is kept and its name
// logged so it can be inspected. Otherwise the first NewDatabase starts an ephemeral cluster, which Run stops.
// Server returns the shared server's admin DSN, for tests that need to look at it from outside.
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
// Nothing is left behind. Stop and Run remove the server and its directory. If the process dies without them
// (a panic, a kill, go test -timeout), the kernel kills the server with it (a parent-death signal, on Linux),
// and the next Start, in any process, removes directories whose owner process is gone, killing a server still
// running in one.
//
// The server binaries are found on PATH, else in `pg_config --bindir`, else in the highest version under
// /usr/lib/postgresql/*/bin. Without them and without DATABASE_URL, tests fail, never skip, with a message
// that says to install the PostgreSQL server package (Debian: apt-get install postgresql) or set DATABASE_URL.
package pgtest
