package idgen_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// TestMain stops the test server after the tests. The helper processes that
// TestProcesses starts run through here too; they never ask pgtest for a server, so
// none is started for them.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// newDatabase returns the DSN of a fresh, empty database for t, dropped after it.
func newDatabase(t testing.TB) string { return pgtest.NewDatabase(t) }

// Examples have no *testing.T: exampleDB gives them a database of their own on the
// shared test server. It creates the database itself, as pgtest does, and returns a
// function that drops it.
func exampleDB(setup ...string) (*sql.DB, func()) {
	admin, _ := pgtest.Server(exampleTB{})
	name := fmt.Sprintf("seqrepo_idgen_example_%d_%s_%d", os.Getpid(), exampleToken, exampleN.Add(1))
	adminExec := func(stmt string) {
		conn, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			panic(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			panic(err)
		}
	}
	adminExec("CREATE DATABASE " + pgx.Identifier{name}.Sanitize())
	db, err := sql.Open("pgx", withDatabase(admin, name))
	if err != nil {
		panic(err)
	}
	for _, stmt := range setup {
		if _, err := db.Exec(stmt); err != nil {
			panic(err)
		}
	}
	return db, func() {
		_ = db.Close()
		adminExec("DROP DATABASE " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)")
	}
}

var (
	exampleToken = func() string {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	exampleN atomic.Int64
)

// withDatabase returns dsn, a URL or a keyword/value string, naming database dbname.
func withDatabase(dsn, dbname string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			panic(err)
		}
		q := u.Query()
		q.Del("dbname")
		u.RawQuery, u.Path, u.RawPath = q.Encode(), "/"+dbname, ""
		return u.String()
	}
	return dsn + " dbname=" + dbname // a later keyword overrides an earlier one
}

// exampleTB is the testing.TB that pgtest.Server needs, for code that has no test:
// it implements what Server calls, and a failure panics, which fails the example.
// Any other method would panic on the nil embedded TB.
type exampleTB struct{ testing.TB }

func (exampleTB) Helper()                   {}
func (exampleTB) Context() context.Context  { return context.Background() }
func (exampleTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
