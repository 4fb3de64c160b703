package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/migrations"
)

// exampleDSN is a fresh database for the Example functions, which get no *testing.T.
var exampleDSN string

func TestMain(m *testing.M) {
	if os.Getenv(helperDSNEnv) != "" {
		// A helper process re-executed by a test: it uses its parent's database.
		os.Exit(m.Run())
	}
	exampleDSN = pgtest.NewDatabase(&mainTB{ctx: context.Background()})
	os.Exit(pgtest.Run(m))
}

// mainTB lets TestMain ask pgtest for a database before any test runs. It implements the
// methods of testing.TB that pgtest.NewDatabase calls; any other call panics on the nil
// embedded interface, loudly. The database needs no Cleanup of its own: pgtest.Run drops
// every database it created (or stops the cluster that holds them).
type mainTB struct {
	testing.TB
	ctx context.Context
}

func (*mainTB) Helper()                      {}
func (tb *mainTB) Context() context.Context  { return tb.ctx }
func (*mainTB) Cleanup(func())               {}
func (*mainTB) Failed() bool                 { return false }
func (*mainTB) Logf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (*mainTB) Errorf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "TestMain: "+format+"\n", a...)
}
func (*mainTB) Fatal(a ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"TestMain:"}, a...)...)
	os.Exit(1)
}
func (tb *mainTB) Fatalf(format string, a ...any) { tb.Fatal(fmt.Sprintf(format, a...)) }

// open returns a connection pool for dsn, closed when the test ends.
func open(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// freshDB returns an empty database.
func freshDB(t testing.TB) *sql.DB {
	t.Helper()
	return open(t, pgtest.NewDatabase(t))
}

// migratedDB returns a database with every migration applied, cloned from a template.
func migratedDB(t testing.TB) *sql.DB {
	t.Helper()
	return open(t, pgtest.NewDatabase(t, pgtest.WithTemplate("migrated", func(ctx context.Context, dsn string) error {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		return migrations.Up(ctx, db)
	})))
}

// exec runs statements one by one, failing the test on the first error.
func exec(t testing.TB, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, statements ...string) {
	t.Helper()
	for _, s := range statements {
		_, err := db.ExecContext(t.Context(), s)
		require.NoError(t, err, s)
	}
}

// queryInt64 returns the single int64 a query returns.
func queryInt64(t testing.TB, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var v int64
	require.NoError(t, db.QueryRowContext(t.Context(), query, args...).Scan(&v), query)
	return v
}
