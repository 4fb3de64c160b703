package idgen_test

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// TestMain stops the test server after the tests. The helper processes that
// TestProcesses starts run through here too; they never ask pgtest for a server, so
// none is started for them.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// newDatabase returns the DSN of a fresh, empty database for t, dropped after it. In
// the rerun through PgBouncer (TestThroughPgBouncer) the DSN goes through PgBouncer,
// except for the tests in sessionTests.
func newDatabase(t testing.TB) string {
	top, _, _ := strings.Cut(t.Name(), "/")
	if _, ok := sessionTests[top]; ok {
		return pgtest.NewDatabase(t, pgtest.Direct())
	}
	return pgtest.NewDatabase(t)
}

// sessionTests are the tests that need a session of their own, which PgBouncer in
// transaction pooling mode does not give, with the reason: they get a direct
// connection even in the rerun through PgBouncer. (Through PgBouncer they would pass
// only while PgBouncer happens to hand their one client the same server connection.)
var sessionTests = map[string]string{
	"TestUsagePrivilegeSuffices": "SET ROLE on a *sql.Conn is session state",
}

// exampleDB gives an Example function, which has no *testing.T, a database of its own
// on the shared test server, with setup run in it. The function it returns closes the
// handle; pgtest.Run drops the database after all the tests.
func exampleDB(setup ...string) (*sql.DB, func()) {
	dsn, err := pgtest.CreateDatabase(context.Background())
	if err != nil {
		panic(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		panic(err)
	}
	for _, stmt := range setup {
		if _, err := db.Exec(stmt); err != nil {
			panic(err)
		}
	}
	return db, func() { _ = db.Close() }
}
