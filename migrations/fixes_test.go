package migrations_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/migrations"
)

// The tests in this file move a key sequence the way applications and operators do (RESTART
// WITH, setval(…, false), MAXVALUE) and check that both ways of changing its INCREMENT, an
// Adoption and migration 00002, read the sequence's real state and never move it backwards.

// nextValue returns what the sequence's next nextval would return, read from the sequence
// relation itself (pg_sequence_last_value is NULL after RESTART or setval(…, false)), or
// MAXVALUE+1 when that nextval would fail.
func nextValue(t *testing.T, db *sql.DB, seq string) int64 {
	t.Helper()
	var next int64
	require.NoError(t, db.QueryRowContext(t.Context(), fmt.Sprintf(`
		SELECT least(CASE WHEN s.is_called THEN s.last_value::numeric + p.seqincrement ELSE s.last_value END,
		             p.seqmax::numeric + 1)::bigint
		FROM %s AS s, pg_sequence AS p WHERE p.seqrelid = $1::regclass`, seq), seq).Scan(&next))
	return next
}

// seqPath is one way of giving a table's key sequence INCREMENT 50 and taking it back.
type seqPath struct {
	name string
	// open returns a database holding the table, empty, its sequence at INCREMENT 1, and a
	// table archive (id bigint PRIMARY KEY): keys the sequence handed out that are no longer
	// (or never were) in the table, such as rows archived or a second table sharing the
	// sequence.
	open          func(t *testing.T) *sql.DB
	table, seq    string
	insertDefault string // inserts $1 rows keyed by DEFAULT
	insertKeys    string // inserts a row for each key in $1, a bigint[]
	up, down      func(t *testing.T, db *sql.DB) error
}

func seqPaths() []seqPath {
	archive := `CREATE TABLE archive (id bigint PRIMARY KEY)`
	adoption, err := migrations.NewAdoption(migrations.AdoptConfig{Table: "orders", Column: "id", AllocationSize: 50})
	if err != nil {
		panic(err)
	}
	migrateTo := func(t *testing.T, db *sql.DB, down bool, version int64) error {
		p, err := migrations.NewProvider(db)
		require.NoError(t, err)
		if down {
			_, err = p.DownTo(t.Context(), version)
		} else {
			_, err = p.UpTo(t.Context(), version)
		}
		return err
	}
	return []seqPath{{
		name: "Adoption",
		open: func(t *testing.T) *sql.DB {
			db := freshDB(t)
			exec(t, db, `CREATE TABLE orders (id bigserial PRIMARY KEY, note text)`, archive)
			return db
		},
		table: "orders", seq: "orders_id_seq",
		insertDefault: `INSERT INTO orders (note) SELECT 'default' FROM generate_series(1, $1)`,
		insertKeys:    `INSERT INTO orders (id, note) SELECT k, 'explicit' FROM unnest($1::bigint[]) k`,
		up: func(t *testing.T, db *sql.DB) error {
			return inTx(t, db, func(tx *sql.Tx) error { return adoption.Up(t.Context(), tx) })
		},
		down: func(t *testing.T, db *sql.DB) error {
			return inTx(t, db, func(tx *sql.Tx) error { return adoption.Down(t.Context(), tx) })
		},
	}, {
		name: "00002",
		open: func(t *testing.T) *sql.DB {
			db := freshDB(t)
			require.NoError(t, migrateTo(t, db, false, 1))
			exec(t, db, archive)
			return db
		},
		table: "authors", seq: "authors_id_seq",
		insertDefault: `INSERT INTO authors (email, name) SELECT gen_random_uuid() || '@example.com', 'default' FROM generate_series(1, $1)`,
		insertKeys:    `INSERT INTO authors (id, email, name) SELECT k, k || '@example.com', 'explicit' FROM unnest($1::bigint[]) k`,
		up:            func(t *testing.T, db *sql.DB) error { return migrateTo(t, db, false, 2) },
		down:          func(t *testing.T, db *sql.DB) error { return migrateTo(t, db, true, 1) },
	}}
}

// seqEnv runs a scenario's steps on one path's database.
type seqEnv struct {
	t    *testing.T
	db   *sql.DB
	p    seqPath
	held *[]int64 // keys an allocator reserved and a writer has yet to insert
}

func (e seqEnv) defaults(n int) {
	e.t.Helper()
	_, err := e.db.ExecContext(e.t.Context(), e.p.insertDefault, n)
	require.NoError(e.t, err)
}

func (e seqEnv) keys(keys ...int64) {
	e.t.Helper()
	_, err := e.db.ExecContext(e.t.Context(), e.p.insertKeys, keys)
	require.NoError(e.t, err)
}

// archive records lo..hi as handed out elsewhere, except keys in the table and keys held.
func (e seqEnv) archive(lo, hi int64) {
	e.t.Helper()
	res, err := e.db.ExecContext(e.t.Context(), `INSERT INTO archive SELECT g FROM generate_series($1::bigint, $2::bigint) AS g
		WHERE NOT EXISTS (SELECT FROM `+e.p.table+` AS t WHERE t.id = g)
		  AND g <> ALL(coalesce($3::bigint[], '{}'))`, lo, hi, *e.held)
	require.NoError(e.t, err)
	n, err := res.RowsAffected()
	require.NoError(e.t, err)
	require.Positive(e.t, n, "archive recorded no key")
}

// exec runs a statement with {seq} replaced by the path's sequence.
func (e seqEnv) exec(stmt string) {
	e.t.Helper()
	exec(e.t, e.db, strings.ReplaceAll(stmt, "{seq}", e.p.seq))
}

// collisions is how many keys of the table were handed out before, elsewhere.
func (e seqEnv) collisions() int64 {
	e.t.Helper()
	return queryInt64(e.t, e.db, `SELECT count(*) FROM `+e.p.table+` JOIN archive USING (id)`)
}

func TestSequenceMovedByHandNeverGoesBackwards(t *testing.T) {
	t.Parallel()
	scenarios := []struct {
		name    string
		before  func(seqEnv) // at INCREMENT 1, before Up
		between func(seqEnv) // at INCREMENT 50, between Up and Down
	}{{
		// The reviewer's case: the sequence was jumped ahead past keys handed to another
		// table; pg_sequence_last_value is NULL and the next nextval returns 1000.
		name: "setval false ahead of the table's keys",
		before: func(e seqEnv) {
			e.defaults(10)
			e.archive(11, 999)
			e.exec(`SELECT setval('{seq}', 1000, false)`)
		},
	}, {
		name: "RESTART WITH, an explicit key above it",
		before: func(e seqEnv) {
			e.defaults(3)
			e.keys(2000)
			e.archive(4, 999)
			e.exec(`ALTER SEQUENCE {seq} RESTART WITH 1000`)
		},
	}, {
		name: "RESTART WITH after adoption",
		before: func(e seqEnv) {
			e.defaults(10)
		},
		between: func(e seqEnv) {
			e.archive(11, 4999)
			e.exec(`ALTER SEQUENCE {seq} RESTART WITH 5000`)
		},
	}, {
		// pooled must not read nextval 1 as the block -48..1: the key -5 is in it.
		name: "setval false at MINVALUE below START, a key below it",
		before: func(e seqEnv) {
			e.keys(-5)
			e.exec(`ALTER SEQUENCE {seq} START WITH 100`)
			e.exec(`SELECT setval('{seq}', 1, false)`)
		},
	}, {
		name: "setval false after adoption, an explicit key above it",
		before: func(e seqEnv) {
			e.defaults(10)
		},
		between: func(e seqEnv) {
			e.archive(11, 2999)
			e.exec(`SELECT setval('{seq}', 3000, false)`)
			e.keys(8000)
		},
	}}
	for _, p := range seqPaths() {
		for _, s := range scenarios {
			for _, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
				t.Run(p.name+"/"+s.name+"/"+opt.String(), func(t *testing.T) {
					t.Parallel()
					ctx := t.Context()
					db := p.open(t)
					e := seqEnv{t: t, db: db, p: p, held: new([]int64)}
					s.before(e)
					require.Zero(t, e.collisions())
					next := nextValue(t, db, p.seq)

					require.NoError(t, p.up(t, db))
					inc, _ := seqState(t, db, p.seq)
					require.Equal(t, int64(50), inc)
					assert.GreaterOrEqual(t, nextValue(t, db, p.seq), next, "Up moved the sequence backwards")

					// Blocks from an allocator and keys from DEFAULT, interleaved: the primary key
					// refuses a duplicate within the table, the join finds one with the archive.
					// Every writer in this run uses opt: record it on the sequence, where the
					// Adoption recorded pooled-lo.
					cfg := idgen.Config{Sequence: p.seq, AllocationSize: 50, Optimizer: opt}
					exec(t, db, `COMMENT ON SEQUENCE `+p.seq+` IS '`+cfg.Marker()+`'`)
					alloc, err := idgen.New(ctx, db, cfg)
					require.NoError(t, err)
					var keys []int64
					for range 3 {
						got, err := alloc.NextN(ctx, 50)
						require.NoError(t, err)
						keys = append(keys, got...)
						e.defaults(2)
					}
					e.keys(keys[:60]...)
					*e.held = keys[60:]
					assert.Zero(t, e.collisions(), "after Up, keys %d..%d were handed out before", keys[0], keys[len(keys)-1])

					if s.between != nil {
						s.between(e)
					}
					next = nextValue(t, db, p.seq)
					require.NoError(t, p.down(t, db))
					inc, _ = seqState(t, db, p.seq)
					require.Equal(t, int64(1), inc)
					assert.GreaterOrEqual(t, nextValue(t, db, p.seq), next, "Down moved the sequence backwards")
					e.defaults(60)
					e.keys(keys[60:]...) // the rest of the allocator's blocks
					assert.Zero(t, e.collisions(), "after Down, DEFAULT keys were handed out before")
				})
			}
		}
	}
}

// TestDownCapsAtMaxValue: when the last block reserved reaches past MAXVALUE, Down moves the
// sequence to MAXVALUE (the next nextval then reports the sequence exhausted) rather than fail.
func TestDownCapsAtMaxValue(t *testing.T) {
	t.Parallel()
	for _, p := range seqPaths() {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			db := p.open(t)
			e := seqEnv{t: t, db: db, p: p, held: new([]int64)}
			e.defaults(3)
			require.NoError(t, p.up(t, db))
			e.exec(`ALTER SEQUENCE {seq} MAXVALUE 100`)
			e.exec(`SELECT setval('{seq}', 90)`) // a writer holds 90..139, past MAXVALUE

			require.NoError(t, p.down(t, db))
			inc, last := seqState(t, db, p.seq)
			assert.Equal(t, int64(1), inc)
			assert.Equal(t, sql.NullInt64{Int64: 100, Valid: true}, last)
		})
	}
}
