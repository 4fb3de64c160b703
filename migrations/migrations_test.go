package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm/schema"

	"github.com/seqrepo/seqrepo/internal/pgtest"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
)

// tables are the models' tables, in creation order.
var tables = []string{"repositories", "authors", "commits", "tenants"}

// keyIncrements returns the INCREMENT of each table's key sequence, read from pg_sequences.
func keyIncrements(t *testing.T, db *sql.DB) map[string]int64 {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `
		SELECT t.name, s.increment_by
		FROM unnest($1::text[]) AS t (name)
		JOIN pg_sequences AS s
		  ON format('%I.%I', s.schemaname, s.sequencename)::regclass = pg_get_serial_sequence(t.name, 'id')::regclass`,
		tables)
	require.NoError(t, err)
	defer rows.Close()
	got := map[string]int64{}
	for rows.Next() {
		var name string
		var inc int64
		require.NoError(t, rows.Scan(&name, &inc))
		got[name] = inc
	}
	require.NoError(t, rows.Err())
	return got
}

func allEqual(v int64) map[string]int64 {
	m := map[string]int64{}
	for _, name := range tables {
		m[name] = v
	}
	return m
}

// appliedVersions returns the goose version table's versions, one entry per row.
func appliedVersions(t *testing.T, db *sql.DB) []int64 {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT version_id FROM goose_db_version ORDER BY id`)
	require.NoError(t, err)
	defer rows.Close()
	var got []int64
	for rows.Next() {
		var v int64
		require.NoError(t, rows.Scan(&v))
		got = append(got, v)
	}
	require.NoError(t, rows.Err())
	return got
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := freshDB(t)

	require.NoError(t, migrations.Up(ctx, db))
	assert.Equal(t, allEqual(50), keyIncrements(t, db), "after Up")
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db))

	p, err := migrations.NewProvider(db)
	require.NoError(t, err)
	_, err = p.DownTo(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, allEqual(1), keyIncrements(t, db), "after 00002 Down")

	_, err = p.DownTo(ctx, 0)
	require.NoError(t, err)
	assert.Zero(t, queryInt64(t, db, `SELECT count(*) FROM pg_class WHERE relname LIKE ANY($1)`, []string{"repositories%", "authors%", "commits%", "tenants%"}),
		"after every Down, no table or sequence is left")

	require.NoError(t, migrations.Up(ctx, db))
	assert.Equal(t, allEqual(50), keyIncrements(t, db), "after Up again")
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db))
	require.NoError(t, migrations.Validate(ctx, db, models.All()...))

	// Up on an up-to-date database does nothing.
	require.NoError(t, migrations.Up(ctx, db))
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db))
}

// keyRows returns id → a column's text for every row of table.
func keyRows(t *testing.T, db *sql.DB, query string) map[int64]string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), query)
	require.NoError(t, err)
	defer rows.Close()
	got := map[int64]string{}
	for rows.Next() {
		var id int64
		var s string
		require.NoError(t, rows.Scan(&id, &s))
		got[id] = s
	}
	require.NoError(t, rows.Err())
	return got
}

func TestUpOnPopulatedTables(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := freshDB(t)
	p, err := migrations.NewProvider(db)
	require.NoError(t, err)
	_, err = p.UpTo(ctx, 1)
	require.NoError(t, err)

	// The application before seqrepo: keys from DEFAULT (INCREMENT 1) and some explicit ones.
	exec(t, db,
		// repositories: DEFAULT 1..3, explicit 1000 far above the sequence, DEFAULT 4..5.
		`INSERT INTO repositories (name, url) SELECT 'r' || g, 'u' FROM generate_series(1, 3) g`,
		`INSERT INTO repositories (id, name, url) VALUES (1000, 'explicit', 'u')`,
		`INSERT INTO repositories (name, url) SELECT 'r' || g, 'u' FROM generate_series(4, 5) g`,
		// authors: DEFAULT only; one deleted, so max(id) is below last_value.
		`INSERT INTO authors (email, name) SELECT 'a' || g || '@example.com', 'A' FROM generate_series(1, 3) g`,
		`DELETE FROM authors WHERE id = 3`,
		// tenants: explicit keys only; the sequence was never used.
		`INSERT INTO tenants (id, slug, name) VALUES (7, 'seven', 'Seven'), (3, 'three', 'Three')`,
		// commits stay empty and their sequence unused.
	)
	before := map[string]map[int64]string{
		"repositories": keyRows(t, db, `SELECT id, name FROM repositories`),
		"authors":      keyRows(t, db, `SELECT id, email FROM authors`),
		"tenants":      keyRows(t, db, `SELECT id, slug FROM tenants`),
	}
	require.Len(t, before["repositories"], 6)

	_, err = p.UpTo(ctx, 2)
	require.NoError(t, err)
	assert.Equal(t, allEqual(50), keyIncrements(t, db))
	assert.Equal(t, before["repositories"], keyRows(t, db, `SELECT id, name FROM repositories`), "old rows keep their keys")
	assert.Equal(t, before["authors"], keyRows(t, db, `SELECT id, email FROM authors`))
	assert.Equal(t, before["tenants"], keyRows(t, db, `SELECT id, slug FROM tenants`))

	// New keys, from allocators of both optimizers and from DEFAULT, interleaved, never
	// collide with old rows or each other: the primary key would refuse a duplicate.
	cases := []struct {
		table     string
		optimizer idgen.Optimizer
		oldMax    int64
		insert    string // $1 is the key array
		insertDef string // one row with a DEFAULT key
	}{
		{"repositories", idgen.PooledLo, 1000,
			`INSERT INTO repositories (id, name, url) SELECT k, 'k' || k, 'u' FROM unnest($1::bigint[]) k`,
			`INSERT INTO repositories (name, url) VALUES (gen_random_uuid()::text, 'u')`},
		{"authors", idgen.PooledLo, 3,
			`INSERT INTO authors (id, email, name) SELECT k, k || '@example.com', 'K' FROM unnest($1::bigint[]) k`,
			`INSERT INTO authors (email, name) VALUES (gen_random_uuid() || '@example.com', 'D')`},
		{"tenants", idgen.Pooled, 7,
			`INSERT INTO tenants (id, slug, name) SELECT k, 'k' || k, 'K' FROM unnest($1::bigint[]) k`,
			`INSERT INTO tenants (slug, name) VALUES (gen_random_uuid()::text, 'D')`},
		{"commits", idgen.Pooled, 0, "", ""},
	}
	for _, c := range cases {
		if c.insert == "" {
			continue
		}
		alloc, err := idgen.New(ctx, db, idgen.Config{Sequence: c.table + "_id_seq", AllocationSize: 50, Optimizer: c.optimizer})
		require.NoError(t, err, c.table)
		var keys []int64
		for round := range 3 {
			got, err := alloc.NextN(ctx, 120+round)
			require.NoError(t, err)
			keys = append(keys, got...)
			for range 5 {
				exec(t, db, c.insertDef)
			}
		}
		assert.Greater(t, slices.Min(keys), c.oldMax, "%s: every new key is above the old ones", c.table)
		_, err = db.ExecContext(ctx, c.insert, keys)
		require.NoError(t, err, "%s: allocated keys collide", c.table)
		assert.Equal(t, int64(len(before[c.table])+len(keys)+15), queryInt64(t, db, `SELECT count(*) FROM `+c.table), c.table)
		defaults := queryInt64(t, db, `SELECT count(*) FROM `+c.table+` WHERE id > $1 AND id <> ALL($2)`, c.oldMax, keys)
		assert.Equal(t, int64(15), defaults, "%s: DEFAULT keys are above the old ones", c.table)
	}
}

func TestDownMovesPastReservedBlocks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := migratedDB(t)

	alloc, err := idgen.New(ctx, db, idgen.Config{Sequence: "authors_id_seq", AllocationSize: 50})
	require.NoError(t, err)
	block, err := alloc.NextN(ctx, 50) // one whole block
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO authors (id, email, name) VALUES ($1, 'first@example.com', 'F')`, block[0])
	require.NoError(t, err)

	// Roll back to INCREMENT 1 while a writer still holds the rest of the block.
	p, err := migrations.NewProvider(db)
	require.NoError(t, err)
	_, err = p.DownTo(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, allEqual(1), keyIncrements(t, db))

	exec(t, db, `INSERT INTO authors (email, name) SELECT 'd' || g || '@example.com', 'D' FROM generate_series(1, 60) g`)
	_, err = db.ExecContext(ctx, `INSERT INTO authors (id, email, name) SELECT k, k || '@example.com', 'K' FROM unnest($1::bigint[]) k`, block[1:])
	require.NoError(t, err, "the writer's reserved keys collide with keys from DEFAULT")
	assert.Greater(t, queryInt64(t, db, `SELECT min(id) FROM authors WHERE email LIKE 'd%'`), block[len(block)-1])
}

// helperDSNEnv, when set, makes this test binary a helper process that runs Up on the
// database it names (TestUpHelperProcess) and nothing else.
const helperDSNEnv = "SEQREPO_MIGRATIONS_TEST_UP_DSN"

// TestUpHelperProcess is not a test of its own: TestUpConcurrentProcesses runs this binary
// again with helperDSNEnv set, and then it calls Up.
func TestUpHelperProcess(t *testing.T) {
	dsn := os.Getenv(helperDSNEnv)
	if dsn == "" {
		return
	}
	db := open(t, dsn)
	require.NoError(t, migrations.Up(t.Context(), db))
}

// lockWaiters returns how many sessions of db's database wait for the migration lock.
func lockWaiters(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	return queryInt64(t, db, `
		SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND NOT granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND ((classid::bigint << 32) | objid::bigint) = $1`, migrations.LockID)
}

// holdLock takes the migration lock on a connection of its own and returns the function
// that releases it (also called when the test ends).
func holdLock(t *testing.T, db *sql.DB) (release func()) {
	t.Helper()
	conn, err := db.Conn(t.Context())
	require.NoError(t, err)
	_, err = conn.ExecContext(t.Context(), `SELECT pg_advisory_lock($1)`, migrations.LockID)
	require.NoError(t, err)
	var once sync.Once
	release = func() {
		once.Do(func() {
			var released bool
			err := conn.QueryRowContext(context.WithoutCancel(t.Context()), `SELECT pg_advisory_unlock($1)`, migrations.LockID).Scan(&released)
			assert.NoError(t, err)
			assert.True(t, released)
			assert.NoError(t, conn.Close())
		})
	}
	t.Cleanup(release)
	return release
}

// waitForWaiters returns once n sessions wait for the migration lock. The callers being
// waited for report on done; if one returns first, it never waited, and the test fails.
func waitForWaiters(t *testing.T, db *sql.DB, n int64, done <-chan error) {
	t.Helper()
	for lockWaiters(t, db) < n {
		select {
		case err := <-done:
			t.Fatalf("a caller returned before it waited for the lock: %v", err)
		default:
		}
	}
}

func TestUpConcurrentGoroutines(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	// Hold the lock until all four wait for it, so they really contend.
	release := holdLock(t, db)
	done := make(chan error, 4)
	for range 4 {
		go func() { done <- migrations.Up(t.Context(), db) }()
	}
	waitForWaiters(t, db, 4, done)
	assert.Zero(t, queryInt64(t, db, `SELECT count(*) FROM pg_tables WHERE tablename = 'goose_db_version'`),
		"nothing runs before the lock is taken")
	release()
	for range 4 {
		require.NoError(t, <-done)
	}
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db), "each migration applied once")
	assert.Equal(t, allEqual(50), keyIncrements(t, db))
}

func TestUpConcurrentProcesses(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn)
	release := holdLock(t, db)
	done := make(chan error, 2)
	for range 2 {
		cmd := osexec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestUpHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDSNEnv+"="+dsn)
		go func() {
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("helper process: %w\n%s", err, out)
			}
			done <- err
		}()
	}
	waitForWaiters(t, db, 2, done)
	release()
	for range 2 {
		require.NoError(t, <-done)
	}
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db), "each migration applied once")
	assert.Equal(t, allEqual(50), keyIncrements(t, db))
}

func TestUpWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	release := holdLock(t, db)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- migrations.Up(ctx, db) }()
	waitForWaiters(t, db, 1, done)
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	release()
	require.NoError(t, migrations.Up(t.Context(), db), "the abandoned wait leaves no lock behind")
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db))
}

func TestUpPartialError(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	// A table in the way makes 00001 fail; nothing is recorded as applied.
	exec(t, db, `CREATE TABLE authors (x int)`)
	err := migrations.Up(t.Context(), db)
	var partial *goose.PartialError
	require.ErrorAs(t, err, &partial)
	assert.Empty(t, partial.Applied)
	assert.Equal(t, int64(1), partial.Failed.Source.Version)
	assert.Equal(t, []int64{0}, appliedVersions(t, db))
	assert.True(t, errors.Is(err, partial.Err))
}

// TestModelsMatchSchema checks that the structs of package models and the tables of the
// migrations agree, column for column, and that each key's idgen tag names the sequence
// of that key's identity column.
func TestModelsMatchSchema(t *testing.T) {
	t.Parallel()
	db := migratedDB(t)
	for _, m := range models.All() {
		s, err := schema.Parse(m, &sync.Map{}, schema.NamingStrategy{})
		require.NoError(t, err)
		var fieldCols []string
		for _, f := range s.Fields {
			if f.DBName != "" {
				fieldCols = append(fieldCols, f.DBName)
			}
		}
		rows, err := db.QueryContext(t.Context(), `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1`, s.Table)
		require.NoError(t, err)
		var tableCols []string
		for rows.Next() {
			var c string
			require.NoError(t, rows.Scan(&c))
			tableCols = append(tableCols, c)
		}
		require.NoError(t, rows.Err())
		assert.ElementsMatch(t, tableCols, fieldCols, "%s: columns of table %s", s.Name, s.Table)

		pk := s.PrioritizedPrimaryField
		require.NotNil(t, pk, s.Name)
		cfg, err := idgen.ParseTag(pk.Tag.Get(idgen.TagKey))
		require.NoError(t, err, s.Name)
		var same bool
		require.NoError(t, db.QueryRowContext(t.Context(),
			`SELECT pg_get_serial_sequence($1, $2)::regclass = $3::regclass`, s.Table, pk.DBName, cfg.Sequence).Scan(&same))
		assert.True(t, same, "%s: tag sequence %s is the key's identity sequence", s.Name, cfg.Sequence)
	}
}

// TestUpOneConnection checks that Up needs no second connection while it holds the lock
// (the SQL migrations run on the locked one).
func TestUpOneConnection(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	db.SetMaxOpenConns(1)
	require.NoError(t, migrations.Up(t.Context(), db))
	assert.Equal(t, []int64{0, 1, 2, 3}, appliedVersions(t, db))
}

// TestCommitSHAFormats: commits.sha takes SHA-1 (40 hex digits) and SHA-256 (64)
// object names, so --git works on repositories of either format, and nothing else.
func TestCommitSHAFormats(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := migratedDB(t)
	_, err := db.ExecContext(ctx, `INSERT INTO repositories (name, url) VALUES ('r', 'u');
		INSERT INTO authors (email, name) VALUES ('a@example.com', 'a')`)
	require.NoError(t, err)
	insert := func(sha string) error {
		_, err := db.ExecContext(ctx, `INSERT INTO commits (repository_id, author_id, sha, message, authored_at, committed_at)
			SELECT r.id, a.id, $1, 'm', now(), now() FROM repositories r, authors a`, sha)
		return err
	}
	require.NoError(t, insert(strings.Repeat("a", 40)), "SHA-1")
	require.NoError(t, insert(strings.Repeat("b", 64)), "SHA-256")
	for _, bad := range []string{"", strings.Repeat("c", 39), strings.Repeat("d", 41), strings.Repeat("e", 65)} {
		assert.Error(t, insert(bad), "sha of length %d", len(bad))
	}
}
