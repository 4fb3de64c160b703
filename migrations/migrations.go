package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed sql/*.sql
var embedded embed.FS

// FS returns the SQL migrations, named as goose expects (00001_create_tables.sql, …), at the
// root of a read-only file system that is safe for concurrent use.
func FS() fs.FS {
	sub, err := fs.Sub(embedded, "sql")
	if err != nil {
		panic(err) // "sql" is a valid path that go:embed has checked
	}
	return sub
}

// NewProvider returns a goose Provider for seqrepo's migrations on db, a PostgreSQL
// database opened with any database/sql driver (pgx's stdlib, say).
//
// The Provider takes a PostgreSQL session-level advisory lock (goose's default lock ID) for
// every Up, Down and their variants, so any number of processes may migrate one database at
// the same moment and each migration still runs once: the others wait for the lock, then find
// nothing left to do. It ignores goose's global registry of Go migrations. opts are passed to
// goose.NewProvider after seqrepo's own; adding another locker is an error.
//
// goose v3.29's Provider.Up, UpTo and UpByOne check for pending migrations before they take
// the lock, and that check creates goose's version table if it is missing: on a new database,
// concurrent callers race to create it, which goose resolves by sleeping a second and trying
// again. Up avoids the race; so does calling GetDBVersion, which locks, first.
//
// All methods on the Provider are safe for concurrent use.
func NewProvider(db *sql.DB, opts ...goose.ProviderOption) (*goose.Provider, error) {
	base := []goose.ProviderOption{
		goose.WithSessionLocker(sessionLocker{id: LockID}),
		goose.WithDisableGlobalRegistry(true),
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS(), append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Up applies every migration not yet applied to db, each in its own transaction, and returns
// once the database is at the latest version. Many application instances may call Up at the
// same moment: they take turns on an advisory lock (see NewProvider), and only the first
// applies anything.
//
// ctx bounds the whole call, including the wait for the lock. When a migration fails, the
// error wraps goose's *goose.PartialError, which lists what was applied before it.
//
// Up is safe for concurrent use.
func Up(ctx context.Context, db *sql.DB) error {
	p, err := NewProvider(db)
	if err != nil {
		return err
	}
	// goose's Provider.Up first asks HasPending, which does not take the lock and creates
	// goose's version table when it is missing: instances starting together on a new
	// database then race to create it, and the losers sleep a second and retry. GetDBVersion
	// takes the lock, so the table is created under it, once, and HasPending finds it.
	if _, err := p.GetDBVersion(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	return nil
}
