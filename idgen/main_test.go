package idgen_test

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// TestMain stops the test server after the tests. The helper processes that
// TestProcesses starts run through here too; they never ask pgtest for a server, so
// none is started for them.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// newDatabase returns the DSN of a fresh, empty database for t, dropped after it.
func newDatabase(t testing.TB) string { return pgtest.NewDatabase(t) }

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
