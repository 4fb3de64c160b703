package migrations_test

import (
	"context"
	"database/sql"
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
	os.Exit(pgtest.Run(m, pgtest.Setup(func(ctx context.Context) (err error) {
		exampleDSN, err = pgtest.CreateDatabase(ctx)
		return err
	})))
}

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
