package repo_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Reliability (issue 6): faults in the middle of a batch write, bad input, and
// configurations that must be refused. For every fault: the call returns an error,
// nothing of the batch is in the table, the next call works, and no key is handed out
// twice, checked against every key that ever reached the server.

// relContext returns a context that ends a little before the test's deadline, so that a
// wait that never ends fails the test with a message instead of hanging it. It bounds
// waits; it asserts nothing about speed.
func relContext(t *testing.T) context.Context { return pgtest.Context(t, 5*time.Minute) }

// relProbe is a copy of the test schema whose writes to widgets can be watched and
// parked. A statement-level trigger reports the keys of every statement's rows as a
// NOTICE, which the server sends at once and which no rollback takes back; when a row is
// named "park" it then waits for an advisory lock that the test holds, after a second
// NOTICE naming its backend.
type relProbe struct {
	db      *gorm.DB // GORM with the plugin, on connections that report notices
	admin   *sql.DB  // a pool of its own, to look at and terminate backends
	stmts   atomic.Int64
	parked  chan int // the pid of every backend that parks
	mu      sync.Mutex
	reached []int64 // every key a statement has sent to the server; protected by mu
	unpark  func()  // releases the lock holdPark took
}

const relProbeTrigger = `
CREATE FUNCTION probe_widgets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'probe keys %', (SELECT string_agg(id::text, ',') FROM new_rows);
	IF EXISTS (SELECT FROM new_rows WHERE name = 'park') THEN
		RAISE NOTICE 'probe parked %', pg_backend_pid();
		PERFORM pg_advisory_xact_lock(6);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER probe AFTER INSERT ON widgets REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION probe_widgets();`

// relOpenProbe returns a probe on a fresh copy of the test schema.
func relOpenProbe(t *testing.T) *relProbe {
	t.Helper()
	dsn := pgtestDatabase(t)
	p := &relProbe{parked: make(chan int, 16)}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = (*relCounter)(&p.stmts)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if keys, ok := strings.CutPrefix(n.Message, "probe keys "); ok {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, k := range strings.Split(keys, ",") {
				key, err := strconv.ParseInt(k, 10, 64)
				if err != nil {
					panic(fmt.Sprintf("probe notice %q", n.Message))
				}
				p.reached = append(p.reached, key)
			}
		} else if pid, ok := strings.CutPrefix(n.Message, "probe parked "); ok {
			n, _ := strconv.Atoi(pid)
			p.parked <- n
		}
	}
	sqlDB := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = sqlDB.Close() })
	p.db, err = gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.db.Use(repo.NewPlugin()); err != nil {
		t.Fatal(err)
	}
	p.admin, err = sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.admin.Close() })
	if _, err := p.admin.Exec(relProbeTrigger); err != nil {
		t.Fatal(err)
	}
	return p
}

// keysReached returns every key that a statement has sent to the server so far.
func (p *relProbe) keysReached() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reached)
}

// holdPark takes the advisory lock that a statement writing a row named "park" waits
// for; releasePark lets it go. The lock belongs to a transaction, which keeps it on one
// server connection also through a pooler in transaction mode.
func (p *relProbe) holdPark(t *testing.T, ctx context.Context) {
	t.Helper()
	p.unpark = pgtest.HoldLock(t, ctx, p.admin, `SELECT pg_advisory_xact_lock(6)`)
}

func (p *relProbe) releasePark(t *testing.T) {
	t.Helper()
	if p.unpark != nil {
		p.unpark()
	}
}

// awaitParked returns the pid of the next backend that parks.
func (p *relProbe) awaitParked(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case pid := <-p.parked:
		return pid
	case <-ctx.Done():
		t.Fatalf("no statement parked: %v", ctx.Err())
		return 0
	}
}

// relCounter is a pgx tracer that counts what a connection sends: queries, COPYs,
// prepares, batches and connects.
type relCounter atomic.Int64

func (c *relCounter) add() { (*atomic.Int64)(c).Add(1) }
func (c *relCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.add()
	return ctx
}
func (c *relCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *relCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.add()
	return ctx
}
func (c *relCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}
func (c *relCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.add()
	return ctx
}
func (c *relCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
func (c *relCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.add()
	return ctx
}
func (c *relCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *relCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (c *relCounter) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	c.add()
	return ctx
}
func (c *relCounter) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) {}

var (
	_ pgx.QueryTracer    = (*relCounter)(nil)
	_ pgx.CopyFromTracer = (*relCounter)(nil)
	_ pgx.PrepareTracer  = (*relCounter)(nil)
	_ pgx.BatchTracer    = (*relCounter)(nil)
	_ pgx.ConnectTracer  = (*relCounter)(nil)
)

// sent returns the number of statements the relProbe's GORM pool has sent.
func (p *relProbe) sent() int64 { return p.stmts.Load() }

// relSeq yields rows, for CopySeq.
func relSeq[T any](rows []T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, r := range rows {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// relKeys returns the keys of rows, in order.
func relKeys(rows []Widget) []int64 {
	keys := make([]int64, len(rows))
	for i := range rows {
		keys[i] = rows[i].ID
	}
	return keys
}

// relWrite is one of the Repository's batch writes of widgets. It returns the keys the
// rows got, in input order.
type relWrite struct {
	name string
	// viaTemp makes Upsert use the temporary-table pivot (it then runs in InTx).
	viaTemp bool
	write   func(ctx context.Context, db *gorm.DB, r *repo.Repository[Widget], rows []Widget) ([]int64, error)
}

var relOnCode = repo.OnConflict{Columns: []string{"code"}}

var relWrites = []relWrite{
	{name: "CreateAll", write: func(ctx context.Context, _ *gorm.DB, r *repo.Repository[Widget], rows []Widget) ([]int64, error) {
		err := r.CreateAll(ctx, rows)
		return relKeys(rows), err
	}},
	{name: "Copy", write: func(ctx context.Context, _ *gorm.DB, r *repo.Repository[Widget], rows []Widget) ([]int64, error) {
		err := r.Copy(ctx, rows)
		return relKeys(rows), err
	}},
	{name: "CopySeq", write: func(ctx context.Context, _ *gorm.DB, r *repo.Repository[Widget], rows []Widget) ([]int64, error) {
		var keys []int64
		_, err := r.CopySeq(ctx, relSeq(rows), func(batch []Widget) error {
			keys = append(keys, relKeys(batch)...)
			return nil
		})
		return keys, err
	}},
	{name: "Upsert", write: func(ctx context.Context, _ *gorm.DB, r *repo.Repository[Widget], rows []Widget) ([]int64, error) {
		_, err := r.Upsert(ctx, rows, relOnCode)
		return relKeys(rows), err
	}},
	{name: "Upsert via a temporary table", viaTemp: true, write: func(ctx context.Context, db *gorm.DB, r *repo.Repository[Widget], rows []Widget) ([]int64, error) {
		err := repo.InTx(ctx, db, func(tx *gorm.DB) error {
			_, err := r.WithTx(tx).Upsert(ctx, rows, relOnCode)
			return err
		})
		return relKeys(rows), err
	}},
}

// relDistinct fails t if any key occurs twice in keys.
func relDistinct(t *testing.T, what string, keys []int64) {
	t.Helper()
	seen := make(map[int64]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			t.Fatalf("%s: key %d handed out twice", what, k)
		}
		seen[k] = true
	}
}

// relSameWidgets fails t unless the table holds exactly want (code → key).
func relSameWidgets(t *testing.T, db *gorm.DB, want map[string]Widget) {
	t.Helper()
	got := dbKeys(t, db)
	if len(got) != len(want) {
		t.Fatalf("%d widgets in the table, want %d", len(got), len(want))
	}
	for code, w := range want {
		if got[code].ID != w.ID {
			t.Fatalf("widget %s: key %d in the table, want %d", code, got[code].ID, w.ID)
		}
	}
}

// relCheckNext checks the table after a failed write and a successful one: it holds the
// rows from before and the next call's rows, and no key reached the server twice (the
// failed call's keys included: the probe saw every statement).
func relCheckNext(t *testing.T, p *relProbe, before map[string]Widget, next []Widget) {
	t.Helper()
	want := maps.Clone(before)
	for _, w := range next {
		want[w.Code] = w
	}
	relSameWidgets(t, p.db, want)
	relDistinct(t, "every key sent to the server", p.keysReached())
}

// TestBackendKilledMidWrite terminates the backend of each batch write while its last
// statement is parked: the call returns an error, the table is as it was (earlier
// batches of the call included), the rows get their old keys back, the next call works
// on a new connection, and its keys are none of those the killed call had sent.
func TestBackendKilledMidWrite(t *testing.T) {
	for _, w := range relWrites {
		t.Run(w.name, func(t *testing.T) {
			ctx := relContext(t)
			p := relOpenProbe(t)
			r := newRepo[Widget](t, p.db, repo.Config{BatchSize: 100})
			if w.viaTemp {
				repo.UpsertViaTempTable(r)
			}
			seed := widgets("seed", 150)
			seedKeys, err := w.write(ctx, p.db, r, seed)
			if err != nil {
				t.Fatal(err)
			}
			before := dbKeys(t, p.db)

			rows := widgets("killed", 250)
			rows[249].Name = "park" // in the last of three batches (CopySeq, CreateAll)
			p.holdPark(t, ctx)
			done := make(chan error, 1)
			go func() {
				_, err := w.write(ctx, p.db, r, rows)
				done <- err
			}()
			pgtest.TerminateBackend(t, ctx, p.admin, p.awaitParked(t, ctx))
			p.releasePark(t)
			err = <-done
			var dup *repo.DuplicateKeyError
			if err == nil || errors.As(err, &dup) {
				t.Fatalf("%s whose backend was terminated: %v, want the connection's error", w.name, err)
			}
			relSameWidgets(t, p.db, before)
			for i := range rows {
				if rows[i].ID != 0 {
					t.Fatalf("row %d keeps key %d after the failed %s", i, rows[i].ID, w.name)
				}
			}
			// The keys the killed call had been given: CreateAll, Copy and CopySeq had
			// sent every row (the parked one is last); Upsert gives each batch its keys
			// just before sending it.
			killed := p.keysReached()[len(seed):]
			if len(killed) == 0 || (!strings.HasPrefix(w.name, "Upsert") && len(killed) != len(rows)) {
				t.Fatalf("the killed call sent %d keys for %d rows", len(killed), len(rows))
			}

			again := widgets("after", 250)
			keys, err := w.write(ctx, p.db, r, again)
			if err != nil {
				t.Fatalf("%s after the backend was terminated: %v", w.name, err)
			}
			want := before
			for i := range again {
				again[i].ID = keys[i]
				want[again[i].Code] = again[i]
			}
			relSameWidgets(t, p.db, want)
			relDistinct(t, "seed, killed call, next call", append(append(seedKeys, killed...), keys...))
		})
	}
}

// TestContextCancelledMidWrite ends the caller's context while a write is under way:
// while CopySeq's source waits for more rows, while a COPY or an Upsert statement is
// parked, and while the key refill waits for the sequence. The call returns the
// context's error, nothing is written, and the next call works with keys none of which
// the cancelled call had sent.
func TestContextCancelledMidWrite(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		name := map[bool]string{false: "CopySeq, source yields ctx.Err()", true: "CopySeq, source ends when ctx is done"}[quiet]
		t.Run(name, func(t *testing.T) {
			ctx := relContext(t)
			p := relOpenProbe(t)
			r := newRepo[Widget](t, p.db, repo.Config{BatchSize: 100})
			if err := r.CreateAll(ctx, widgets("seed", 10)); err != nil {
				t.Fatal(err)
			}
			before := dbKeys(t, p.db)

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			waiting := make(chan struct{})
			source := func(yield func(Widget, error) bool) {
				for i := range 100 { // one whole batch: written before the source waits
					if !yield(Widget{Code: fmt.Sprint("streamed-", i), Name: "streamed"}, nil) {
						return
					}
				}
				close(waiting)
				<-wctx.Done() // a source that waits for rows until its context ends
				if !quiet {
					yield(Widget{}, wctx.Err())
				}
			}
			var written []int64
			done := make(chan error, 1)
			go func() {
				n, err := r.CopySeq(wctx, source, func(batch []Widget) error {
					written = append(written, relKeys(batch)...)
					return nil
				})
				if err == nil && n != 0 {
					err = fmt.Errorf("CopySeq wrote %d rows and returned no error", n)
				}
				done <- err
			}()
			<-waiting
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("CopySeq cancelled while its source waits: %v, want context.Canceled", err)
			}
			if len(written) != 100 {
				t.Fatalf("the first batch (%d rows) was not written before the source waited", len(written))
			}
			relSameWidgets(t, p.db, before)

			again := widgets("after", 150)
			keys, err := relWrites[2].write(ctx, p.db, r, again)
			if err != nil {
				t.Fatal(err)
			}
			for i := range again {
				again[i].ID = keys[i]
			}
			relCheckNext(t, p, before, again)
		})
	}

	parked := []struct {
		name     string
		deadline bool
		write    func(ctx context.Context, r *repo.Repository[Widget], rows []Widget) error
	}{
		{"Copy, COPY parked, cancelled", false, func(ctx context.Context, r *repo.Repository[Widget], rows []Widget) error {
			return r.Copy(ctx, rows)
		}},
		{"Upsert, INSERT parked, deadline passes", true, func(ctx context.Context, r *repo.Repository[Widget], rows []Widget) error {
			_, err := r.Upsert(ctx, rows, relOnCode)
			return err
		}},
		{"CreateAll, INSERT parked, deadline passes", true, func(ctx context.Context, r *repo.Repository[Widget], rows []Widget) error {
			return r.CreateAll(ctx, rows)
		}},
	}
	for _, tt := range parked {
		t.Run(tt.name, func(t *testing.T) {
			ctx := relContext(t)
			p := relOpenProbe(t)
			r := newRepo[Widget](t, p.db)
			if err := r.CreateAll(ctx, widgets("seed", 10)); err != nil {
				t.Fatal(err)
			}
			before := dbKeys(t, p.db)
			rows := widgets("parked", 200)
			rows[150].Name = "park"
			p.holdPark(t, ctx)
			var err error
			if tt.deadline {
				// The statement stays parked until the call has returned, so only the
				// deadline can end it: how soon it passes does not matter.
				wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				err = tt.write(wctx, r, rows)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("write past its deadline: %v, want context.DeadlineExceeded", err)
				}
			} else {
				wctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- tt.write(wctx, r, rows) }()
				p.awaitParked(t, ctx)
				cancel()
				if err = <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("write cancelled while parked: %v, want context.Canceled", err)
				}
			}
			p.releasePark(t)
			relSameWidgets(t, p.db, before)
			for i := range rows {
				if rows[i].ID != 0 {
					t.Fatalf("row %d keeps key %d after the failed write", i, rows[i].ID)
				}
			}
			again := widgets("after", 200)
			if err := tt.write(ctx, r, again); err != nil {
				t.Fatalf("write after the cancelled one: %v", err)
			}
			relCheckNext(t, p, before, again)
		})
	}

	for _, inTx := range []bool{false, true} {
		name := map[bool]string{false: "Copy, shared refill parked", true: "Copy in InTx, refill on the transaction parked"}[inTx]
		t.Run(name, func(t *testing.T) {
			ctx := relContext(t)
			p := relOpenProbe(t)
			r := newRepo[Widget](t, p.db)
			if err := r.CreateAll(ctx, widgets("seed", 10)); err != nil { // 40 keys stay in memory
				t.Fatal(err)
			}
			before := dbKeys(t, p.db)
			// ALTER SEQUENCE takes a lock that nextval waits for until the transaction ends.
			unlock := pgtest.HoldLock(t, ctx, p.admin, `ALTER SEQUENCE widgets_id_seq INCREMENT BY 50`)
			rows := widgets("refill", 300)
			write := func(ctx context.Context) error {
				if !inTx {
					return r.Copy(ctx, rows)
				}
				return repo.InTx(ctx, p.db, func(tx *gorm.DB) error { return r.WithTx(tx).Copy(ctx, rows) })
			}
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- write(wctx) }()
			pgtest.LockWaiter(t, ctx, p.admin, "%nextval%")
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Copy cancelled while its refill waits: %v, want context.Canceled", err)
			}
			unlock()
			relSameWidgets(t, p.db, before)
			for i := range rows {
				if rows[i].ID != 0 {
					t.Fatalf("row %d keeps key %d after the cancelled Copy", i, rows[i].ID)
				}
			}
			if err := write(ctx); err != nil {
				t.Fatalf("Copy after the cancelled one: %v", err)
			}
			relCheckNext(t, p, before, rows)
		})
	}
}

// TestIncrementChangedUnderWriters changes the sequence's INCREMENT while goroutines
// write in loops through every batch write and the plugin's plain Create: each of them
// stops with idgen.ErrIncrementMismatch, the table holds exactly the rows of the calls
// that returned nil, no key repeats, and every key lies in a block reserved under the
// old INCREMENT. With the INCREMENT back, writing goes on above those blocks.
func TestIncrementChangedUnderWriters(t *testing.T) {
	ctx := relContext(t)
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 40})
	writes := append(slices.Clone(relWrites[:4]), relWrite{name: "plugin Create", write: func(ctx context.Context, db *gorm.DB, _ *repo.Repository[Widget], rows []Widget) ([]int64, error) {
		err := db.WithContext(ctx).Create(&rows).Error
		return relKeys(rows), err
	}})
	const writers = 10
	type report struct {
		committed []Widget
		err       error
	}
	// top is set once the ALTER has committed: the last key of the last block reserved
	// under INCREMENT 50. A writer that gets a key above it stops at once.
	var top atomic.Int64
	ready := make(chan struct{}, writers)
	reports := make(chan report, writers)
	for w := range writers {
		go func() {
			var rep report
			signalled := false
			for i := 0; ; i++ {
				rows := widgets(fmt.Sprintf("w%d-%d", w, i), 1+(i*37+w*11)%90)
				keys, err := writes[w%len(writes)].write(ctx, db, r, rows)
				if err != nil {
					rep.err = fmt.Errorf("%s: %w", writes[w%len(writes)].name, err)
					break
				}
				for j := range rows {
					rows[j].ID = keys[j]
				}
				rep.committed = append(rep.committed, rows...)
				if t := top.Load(); t != 0 && slices.Max(keys) > t {
					rep.err = fmt.Errorf("key %d written, but the last block reserved under INCREMENT 50 ends at %d", slices.Max(keys), t)
					break
				}
				if !signalled && i == 2 {
					signalled = true
					ready <- struct{}{}
				}
			}
			if !signalled {
				ready <- struct{}{}
			}
			reports <- rep
		}()
	}
	for range writers {
		<-ready // every writer has committed rows and is still writing
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	alter := func(increment int) int64 {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		// The ALTER waits for running nextval calls and holds new ones off until commit.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`ALTER SEQUENCE widgets_id_seq INCREMENT BY %d`, increment)); err != nil {
			t.Fatal(err)
		}
		var last int64
		if err := tx.QueryRowContext(ctx, `SELECT last_value FROM widgets_id_seq`).Scan(&last); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return last
	}
	top.Store(alter(10) + 49)

	var committed []Widget
	for range writers {
		rep := <-reports
		if !errors.Is(rep.err, idgen.ErrIncrementMismatch) {
			t.Fatalf("a writer stopped with %v, want idgen.ErrIncrementMismatch", rep.err)
		}
		committed = append(committed, rep.committed...)
	}
	checkWidgetsInDB(t, db, committed)
	relDistinct(t, "committed rows", relKeys(committed))
	for _, w := range committed {
		if w.ID > top.Load() {
			t.Fatalf("key %d written, but the last block reserved under INCREMENT 50 ends at %d", w.ID, top.Load())
		}
	}

	alter(50)
	more := widgets("restored", 120)
	if err := r.Copy(ctx, more); err != nil {
		t.Fatalf("Copy with the INCREMENT restored: %v", err)
	}
	for _, w := range more {
		if w.ID <= top.Load() {
			t.Fatalf("key %d after the restore is not above the old blocks (…%d)", w.ID, top.Load())
		}
	}
	checkWidgetsInDB(t, db, append(committed, more...))
}

// WidgetPooled is Widget's table with the same sequence, read by the pooled optimizer:
// a configuration error when both are used.
type WidgetPooled struct {
	ID   int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:widgets_id_seq;allocationSize:50;optimizer:pooled"`
	Code string
	Name string
}

func (WidgetPooled) TableName() string { return "widgets" }

// TestMixedConfigRefusedByPlugin: two models whose tags read one sequence with
// different optimizers, and two *gorm.DB of one process with different allocation
// sizes for one sequence, cannot both write: the second fails with idgen.ErrMixedConfig
// and writes nothing, while the first goes on.
func TestMixedConfigRefusedByPlugin(t *testing.T) {
	ctx := relContext(t)
	db, _ := open(t)
	lo := newRepo[Widget](t, db)
	hi := newRepo[WidgetPooled](t, db)
	if err := lo.CreateAll(ctx, widgets("lo", 10)); err != nil {
		t.Fatal(err)
	}
	if err := hi.CreateAll(ctx, []WidgetPooled{{Code: "hi", Name: "hi"}}); !errors.Is(err, idgen.ErrMixedConfig) {
		t.Fatalf("CreateAll of a pooled model beside a pooled-lo one: %v, want idgen.ErrMixedConfig", err)
	}
	if err := db.Create(&WidgetPooled{Code: "hi", Name: "hi"}).Error; !errors.Is(err, idgen.ErrMixedConfig) {
		t.Fatalf("plugin Create of a pooled model beside a pooled-lo one: %v, want idgen.ErrMixedConfig", err)
	}
	if err := lo.Copy(ctx, widgets("lo-again", 100)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "widgets"); n != 110 {
		t.Fatalf("%d widgets, want 110", n)
	}

	// A second *gorm.DB on the same database, sized for an INCREMENT changed by hand.
	sqlDB, _ := db.DB()
	if _, err := sqlDB.ExecContext(ctx, `ALTER SEQUENCE teams_id_seq INCREMENT 50`); err != nil {
		t.Fatal(err)
	}
	teamsA := newRepo[Team](t, db)
	if err := teamsA.CreateAll(ctx, teams(5)); err != nil { // keys 1..5; 6..50 stay in memory
		t.Fatal(err)
	}
	if _, err := sqlDB.ExecContext(ctx, `ALTER SEQUENCE teams_id_seq INCREMENT 25`); err != nil {
		t.Fatal(err)
	}
	other, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Use(repo.NewPluginWithConfig(repo.PluginConfig{AllocationSize: 25})); err != nil {
		t.Fatal(err)
	}
	// Its first nextval would return 26 and reserve 26..50, keys the first still holds.
	if err := newRepo[Team](t, other).CreateAll(ctx, teams(5)); !errors.Is(err, idgen.ErrMixedConfig) {
		t.Fatalf("CreateAll with allocation size 25 beside a plugin with 50: %v, want idgen.ErrMixedConfig", err)
	}
	if n := count(t, db, "teams"); n != 5 {
		t.Fatalf("%d teams, want 5", n)
	}
	runtime.KeepAlive(teamsA)
}

// Bad input. Each: a clear error naming the problem, nothing written, and no round trip
// where none is needed.

// TestEmptyBatchesSendNothing: nil and empty slices are no-ops that send nothing, and
// so is an invalid OnConflict, refused before anything is sent.
func TestEmptyBatchesSendNothing(t *testing.T) {
	ctx := relContext(t)
	p := relOpenProbe(t)
	r := newRepo[Widget](t, p.db)
	calls := []struct {
		name string
		call func() error
	}{
		{"CreateAll(nil)", func() error { return r.CreateAll(ctx, nil) }},
		{"CreateAll(empty)", func() error { return r.CreateAll(ctx, []Widget{}) }},
		{"Copy(nil)", func() error { return r.Copy(ctx, nil) }},
		{"Copy(empty)", func() error { return r.Copy(ctx, []Widget{}) }},
		{"Upsert(nil)", func() error {
			res, err := r.Upsert(ctx, nil, relOnCode)
			if err == nil && len(res.Inserted) != 0 {
				err = fmt.Errorf("UpsertResult %v", res.Inserted)
			}
			return err
		}},
		{"Upsert(empty)", func() error { _, err := r.Upsert(ctx, []Widget{}, relOnCode); return err }},
		{"GetMany(nil)", func() error {
			got, err := r.GetMany(ctx, nil)
			if err == nil && len(got) != 0 {
				err = fmt.Errorf("GetMany(nil) = %v", got)
			}
			return err
		}},
	}
	for _, c := range calls {
		before := p.sent()
		if err := c.call(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if n := p.sent() - before; n != 0 {
			t.Errorf("%s sent %d statements, want none", c.name, n)
		}
	}
	for _, on := range []repo.OnConflict{{}, {Columns: []string{"nope"}}, {Columns: []string{"id"}}} {
		before := p.sent()
		_, err := r.Upsert(ctx, widgets("x", 3), on)
		if err == nil {
			t.Errorf("Upsert with %+v: no error", on)
		}
		if n := p.sent() - before; n != 0 {
			t.Errorf("Upsert with %+v sent %d statements before refusing it, want none", on, n)
		}
	}
	// CopySeq cannot know that a sequence is empty before pulling from it, inside its
	// transaction: it writes nothing and returns 0.
	if n, err := r.CopySeq(ctx, relSeq[Widget](nil), nil); n != 0 || err != nil {
		t.Errorf("CopySeq of an empty sequence: %d, %v", n, err)
	}
	if n := count(t, p.db, "widgets"); n != 0 {
		t.Errorf("%d widgets written", n)
	}
	// The counter does count: one row is a key refill, a BEGIN, an INSERT and a COMMIT.
	before := p.sent()
	if err := r.CreateAll(ctx, widgets("one", 1)); err != nil {
		t.Fatal(err)
	}
	if n := p.sent() - before; n < 3 {
		t.Fatalf("CreateAll of one row counted as %d statements: the counter misses statements", n)
	}
}

// TestExplicitKeyCollides: a row whose caller-set key is an existing row's key fails the
// whole batch with a *DuplicateKeyError on the primary key, in a later batch of the call
// too; nothing is written, the caller's key stays, and the keys the call gave are taken
// back. Upsert assigns its own keys and ignores the caller's.
func TestExplicitKeyCollides(t *testing.T) {
	ctx := relContext(t)
	db, _ := open(t)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 100})
	existing := widgets("existing", 20)
	if err := r.Copy(ctx, existing); err != nil {
		t.Fatal(err)
	}
	taken := existing[13].ID
	before := dbKeys(t, db)
	for _, w := range relWrites[:3] {
		t.Run(w.name, func(t *testing.T) {
			rows := widgets("collides", 250)
			rows[230].ID = taken // in the third batch
			_, err := w.write(ctx, db, r, rows)
			var dup *repo.DuplicateKeyError
			if !errors.As(err, &dup) || dup.Constraint != "widgets_pkey" || dup.Table != "widgets" ||
				!strings.Contains(dup.Detail, fmt.Sprintf("(id)=(%d)", taken)) {
				t.Fatalf("%s with an existing key: %v, want a *DuplicateKeyError on widgets_pkey naming key %d", w.name, err, taken)
			}
			relSameWidgets(t, db, before)
			for i := range rows {
				if want := map[bool]int64{true: taken}[i == 230]; rows[i].ID != want {
					t.Fatalf("row %d: key %d after the failed %s, want %d", i, rows[i].ID, w.name, want)
				}
			}
		})
	}
	t.Run("Upsert", func(t *testing.T) {
		rows := widgets("upserted", 3)
		rows[1].ID = taken
		if _, err := r.Upsert(ctx, rows, relOnCode); err != nil {
			t.Fatal(err)
		}
		if rows[1].ID == taken {
			t.Fatalf("Upsert inserted a new row under the caller's key %d, an existing row's", taken)
		}
		want := before
		for _, w := range rows {
			want[w.Code] = w
		}
		relSameWidgets(t, db, want)
	})
}

// Models that cannot take client-assigned keys, all on the widgets table.
type (
	tagOffKey struct {
		ID   int64  `gorm:"primaryKey"`
		Code string `idgen:"sequence:widgets_id_seq"`
		Name string
	}
	twoTags struct {
		ID   int64  `gorm:"primaryKey" idgen:"sequence:widgets_id_seq"`
		Code string `idgen:"sequence:widgets_id_seq"`
		Name string
	}
	textKey struct {
		ID   string `gorm:"primaryKey" idgen:"sequence:widgets_id_seq"`
		Code string
		Name string
	}
	sizeZero struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq;allocationSize:0"`
		Code string
		Name string
	}
	sizeNegative struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq;allocationSize:-50"`
		Code string
		Name string
	}
	sizeWord struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq;allocationSize:fifty"`
		Code string
		Name string
	}
	unknownKey struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq;increment:50"`
		Code string
		Name string
	}
	unterminated struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:\"widgets_id_seq;allocationSize:50"`
		Code string
		Name string
	}
	badOptimizer struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq;optimizer:hilo"`
		Code string
		Name string
	}
	repeatedKey struct {
		ID   int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq;seq:widgets_id_seq"`
		Code string
		Name string
	}
)

func (tagOffKey) TableName() string    { return "widgets" }
func (twoTags) TableName() string      { return "widgets" }
func (textKey) TableName() string      { return "widgets" }
func (sizeZero) TableName() string     { return "widgets" }
func (sizeNegative) TableName() string { return "widgets" }
func (sizeWord) TableName() string     { return "widgets" }
func (unknownKey) TableName() string   { return "widgets" }
func (unterminated) TableName() string { return "widgets" }
func (badOptimizer) TableName() string { return "widgets" }
func (repeatedKey) TableName() string  { return "widgets" }

// unusable checks one model that cannot take client-assigned keys: New refuses it with
// an error naming the model and mentioning each of mentions, and matching want unless
// want is nil; GORM's Create of it fails in the plugin, before anything is sent; and
// Validate names it.
func unusable[T any](want error, mentions ...string) func(t *testing.T, p *relProbe) {
	return func(t *testing.T, p *relProbe) {
		_, err := repo.New[T](p.db)
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("New: %v, want an error matching %v", err, want)
		}
		for _, m := range mentions {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("New: %q does not mention %q", err, m)
			}
		}
		before := p.sent()
		if err := p.db.Create(new(T)).Error; err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("Create: %v, want an error matching %v", err, want)
		}
		if n := p.sent() - before; n != 0 {
			t.Errorf("Create sent %d statements, want none", n)
		}
		plugin := p.db.Config.Plugins["seqrepo"].(*repo.Plugin)
		if err := plugin.Validate(t.Context(), new(T)); err == nil || !strings.Contains(err.Error(), mentions[0]) {
			t.Errorf("Validate: %v, want a problem naming %s", err, mentions[0])
		}
	}
}

// TestUnusableModels: a model with no idgen tag, with the tag in the wrong place, and
// with malformed tags (an allocation size of 0, negative or not a number among them).
func TestUnusableModels(t *testing.T) {
	p := relOpenProbe(t)
	for name, check := range map[string]func(*testing.T, *relProbe){
		"no idgen tag": func(t *testing.T, p *relProbe) {
			_, err := repo.New[Plain](p.db)
			if err == nil || !strings.Contains(err.Error(), "Plain") || !strings.Contains(err.Error(), `idgen:"sequence:`) {
				t.Fatalf("New[Plain]: %v, want an error naming Plain and showing the tag to add", err)
			}
			plugin := p.db.Config.Plugins["seqrepo"].(*repo.Plugin)
			if _, err := plugin.Allocator(t.Context(), &Plain{}); err == nil || !strings.Contains(err.Error(), "Plain") {
				t.Fatalf("Allocator(&Plain{}): %v, want an error naming Plain", err)
			}
		},
		"tag on a column that is not the key": unusable[tagOffKey](nil, "tagOffKey", "Code", "not the only primary key"),
		"two tags":                            unusable[twoTags](nil, "twoTags", "2 fields"),
		"text key":                            unusable[textKey](nil, "textKey", "integer"),
		"allocationSize 0":                    unusable[sizeZero](idgen.ErrInvalidConfig, "sizeZero", "allocationSize", `"0"`),
		"allocationSize -50":                  unusable[sizeNegative](idgen.ErrInvalidConfig, "sizeNegative", "allocationSize", `"-50"`),
		"allocationSize fifty":                unusable[sizeWord](idgen.ErrInvalidConfig, "sizeWord", "allocationSize", `"fifty"`),
		"unknown key":                         unusable[unknownKey](idgen.ErrInvalidConfig, "unknownKey", `"increment"`),
		"unterminated quote":                  unusable[unterminated](idgen.ErrInvalidConfig, "unterminated", "unterminated"),
		"unknown optimizer":                   unusable[badOptimizer](idgen.ErrInvalidConfig, "badOptimizer", `"hilo"`),
		"repeated key":                        unusable[repeatedKey](idgen.ErrInvalidConfig, "repeatedKey", "twice"),
	} {
		t.Run(name, func(t *testing.T) { check(t, p) })
	}
	if n := count(t, p.db, "widgets"); n != 0 {
		t.Errorf("%d widgets written", n)
	}
	for _, n := range []int{-1, -50} {
		gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: p.admin}), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		if err := gdb.Use(repo.NewPluginWithConfig(repo.PluginConfig{AllocationSize: n})); err == nil || !strings.Contains(err.Error(), fmt.Sprint(n)) {
			t.Errorf("PluginConfig{AllocationSize: %d}: %v, want an error naming %d", n, err, n)
		}
	}
}

// Models whose tags name sequences in every way a name can be odd, all on the widgets
// table. The names are identifiers resolved by PostgreSQL, never SQL.
type (
	quotedInjection struct {
		ID        int64 `gorm:"primaryKey" idgen:"sequence:\"x'; DROP TABLE victim; --\""`
		Code      string
		Name      string
		CreatedAt time.Time
	}
	dottedSchema struct {
		ID        int64 `gorm:"primaryKey" idgen:"sequence:\"odd.schema\".\"a;b\""`
		Code      string
		Name      string
		CreatedAt time.Time
	}
	tableAsSequence struct {
		ID        int64 `gorm:"primaryKey" idgen:"sequence:victim"`
		Code      string
		Name      string
		CreatedAt time.Time
	}
	callAsSequence struct {
		ID        int64 `gorm:"primaryKey" idgen:"sequence:nextval('victim')"`
		Code      string
		Name      string
		CreatedAt time.Time
	}
	closeQuote struct {
		ID        int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq'::regclass) --"`
		Code      string
		Name      string
		CreatedAt time.Time
	}
	bareSemicolons struct {
		ID        int64 `gorm:"primaryKey" idgen:"sequence:widgets_id_seq; DROP TABLE victim"`
		Code      string
		Name      string
		CreatedAt time.Time
	}
)

func (quotedInjection) TableName() string { return "widgets" }
func (dottedSchema) TableName() string    { return "widgets" }
func (tableAsSequence) TableName() string { return "widgets" }
func (callAsSequence) TableName() string  { return "widgets" }
func (closeQuote) TableName() string      { return "widgets" }
func (bareSemicolons) TableName() string  { return "widgets" }

// TestSequenceNameIsOnlyAName: sequence names with quotes, dots, semicolons and SQL in
// them, given in tags, are resolved as identifiers: the odd but real ones work through
// every write path, the others are refused (ErrSequenceNotFound, or ErrInvalidConfig
// for a tag that does not parse) with nothing written, and the victim table survives.
func TestSequenceNameIsOnlyAName(t *testing.T) {
	ctx := relContext(t)
	db, _ := open(t)
	if err := db.Exec(`
CREATE TABLE victim (id int);
INSERT INTO victim VALUES (1);
CREATE SEQUENCE "x'; DROP TABLE victim; --" INCREMENT 50 START 7;
CREATE SCHEMA "odd.schema";
CREATE SEQUENCE "odd.schema"."a;b" INCREMENT 50 START 1000`).Error; err != nil {
		t.Fatal(err)
	}
	victimSurvives := func(t *testing.T) {
		t.Helper()
		var n int64
		if err := db.Raw(`SELECT count(*) FROM victim`).Scan(&n).Error; err != nil || n != 1 {
			t.Fatalf("victim: %d rows, %v: a sequence name was executed as SQL", n, err)
		}
	}

	q := newRepo[quotedInjection](t, db)
	a := []quotedInjection{{Code: "q1", Name: "q"}, {Code: "q2", Name: "q"}}
	if err := q.CreateAll(ctx, a); err != nil || a[0].ID != 7 || a[1].ID != 8 {
		t.Fatalf("CreateAll through %q: keys %d %d, %v", `"x'; DROP TABLE victim; --"`, a[0].ID, a[1].ID, err)
	}
	b := []quotedInjection{{Code: "q3", Name: "q"}}
	if err := q.Copy(ctx, b); err != nil || b[0].ID != 9 {
		t.Fatalf("Copy: key %d, %v", b[0].ID, err)
	}
	c := []quotedInjection{{Code: "q4", Name: "q"}}
	if _, err := q.Upsert(ctx, c, relOnCode); err != nil || c[0].ID != 10 {
		t.Fatalf("Upsert: key %d, %v", c[0].ID, err)
	}
	d := []dottedSchema{{Code: "d1", Name: "d"}}
	if err := newRepo[dottedSchema](t, db).Copy(ctx, d); err != nil || d[0].ID != 1000 {
		t.Fatalf("Copy through %q: key %d, %v", `"odd.schema"."a;b"`, d[0].ID, err)
	}
	victimSurvives(t)

	t.Run("a table", func(t *testing.T) {
		err := newRepo[tableAsSequence](t, db).CreateAll(ctx, []tableAsSequence{{Code: "t", Name: "t"}})
		if !errors.Is(err, idgen.ErrSequenceNotFound) || !strings.Contains(err.Error(), "not a sequence") {
			t.Fatalf("CreateAll with sequence:victim: %v, want ErrSequenceNotFound saying it is not a sequence", err)
		}
		victimSurvives(t)
	})
	t.Run("a call", func(t *testing.T) {
		if err := newRepo[callAsSequence](t, db).Copy(ctx, []callAsSequence{{Code: "c", Name: "c"}}); !errors.Is(err, idgen.ErrSequenceNotFound) {
			t.Fatalf("Copy with sequence:nextval('victim'): %v, want ErrSequenceNotFound", err)
		}
		victimSurvives(t)
	})
	t.Run("a closing quote", func(t *testing.T) {
		if _, err := newRepo[closeQuote](t, db).Upsert(ctx, []closeQuote{{Code: "c", Name: "c"}}, relOnCode); !errors.Is(err, idgen.ErrSequenceNotFound) {
			t.Fatalf("Upsert with a closing quote in the name: %v, want ErrSequenceNotFound", err)
		}
		victimSurvives(t)
	})
	t.Run("bare semicolons", func(t *testing.T) {
		if _, err := repo.New[bareSemicolons](db); !errors.Is(err, idgen.ErrInvalidConfig) {
			t.Fatalf("New with unquoted semicolons in the tag: %v, want ErrInvalidConfig", err)
		}
		victimSurvives(t)
	})
	if n := count(t, db, "widgets"); n != 5 {
		t.Errorf("%d widgets, want the 5 written through real sequences", n)
	}
}

// TestSequenceExhaustedMidBatch: a batch whose keys would pass the sequence's MAXVALUE
// fails with idgen.ErrExhausted naming the sequence, writes nothing and takes its keys
// back; keys reserved before, and the blocks that fit below MAXVALUE, are still good.
func TestSequenceExhaustedMidBatch(t *testing.T) {
	for _, w := range relWrites {
		t.Run(w.name, func(t *testing.T) {
			ctx := relContext(t)
			db, _ := open(t)
			if err := db.Exec(`ALTER SEQUENCE widgets_id_seq MAXVALUE 1000`).Error; err != nil {
				t.Fatal(err)
			}
			r := newRepo[Widget](t, db, repo.Config{BatchSize: 500})
			if w.viaTemp {
				repo.UpsertViaTempTable(r)
			}
			first := widgets("first", 280) // keys 1..280; 281..300 stay in memory
			keys, err := w.write(ctx, db, r, first)
			if err != nil {
				t.Fatal(err)
			}
			for i := range first {
				first[i].ID = keys[i]
			}
			rows := widgets("past", 2000)
			_, err = w.write(ctx, db, r, rows)
			if !errors.Is(err, idgen.ErrExhausted) || !strings.Contains(err.Error(), "widgets_id_seq") {
				t.Fatalf("%s past MAXVALUE: %v, want idgen.ErrExhausted naming widgets_id_seq", w.name, err)
			}
			checkWidgetsInDB(t, db, first)
			for i := range rows {
				if rows[i].ID != 0 {
					t.Fatalf("row %d keeps key %d after the failed %s", i, rows[i].ID, w.name)
				}
			}
			// The keys in memory before the failed call were not lost with it, nor were
			// the blocks it reserved below MAXVALUE but did not hand out: writes go on
			// until the sequence is used up, and then fail with idgen.ErrExhausted.
			last := widgets("last", 20)
			keys, err = w.write(ctx, db, r, last)
			if err != nil {
				t.Fatalf("%s of the 20 keys still in memory: %v", w.name, err)
			}
			for i := range last {
				last[i].ID = keys[i]
			}
			for _, n := range []int{10, 1} { // chunks of 10 while they fit, then single rows
				for i := 0; ; i++ {
					more := widgets(fmt.Sprintf("more%d-%d", n, i), n)
					keys, err := w.write(ctx, db, r, more)
					if errors.Is(err, idgen.ErrExhausted) {
						break
					}
					if err != nil {
						t.Fatalf("%s of %d more rows: %v", w.name, n, err)
					}
					for j := range more {
						more[j].ID = keys[j]
					}
					last = append(last, more...)
				}
			}
			for _, row := range last {
				if row.ID > 1000 {
					t.Fatalf("key %d is past MAXVALUE 1000", row.ID)
				}
			}
			checkWidgetsInDB(t, db, append(first, last...))
		})
	}
}

// TestBatchOverBindLimit: batches whose values far exceed PostgreSQL's 65,535 bind
// parameters are split (CreateAll) or sent as one array per column (Upsert, Copy in a
// db.Transaction, GetMany), and succeed.
func TestBatchOverBindLimit(t *testing.T) {
	ctx := relContext(t)
	db, _ := open(t)
	rec := recordCreates(t, db)
	r := newRepo[Widget](t, db, repo.Config{BatchSize: 30_000})
	const n = 12_000 // 6 or 7 columns: 72,000 values or more per batch

	all := widgets("createall", n)
	rec.take("")
	if err := r.CreateAll(ctx, all); err != nil {
		t.Fatalf("CreateAll of %d rows: %v", n, err)
	}
	if got := len(rec.take(`INSERT INTO "widgets"`)); got < 2 {
		t.Errorf("CreateAll of %d rows in %d INSERT, want it split", n, got)
	}
	up := widgets("upsert", n)
	if res, err := r.Upsert(ctx, up, relOnCode); err != nil || res.InsertedCount() != n {
		t.Fatalf("Upsert of %d rows: %d inserted, %v", n, res.InsertedCount(), err)
	}
	tx := widgets("transaction", n)
	if err := db.Transaction(func(gtx *gorm.DB) error { return r.WithTx(gtx).Copy(ctx, tx) }); err != nil {
		t.Fatalf("Copy of %d rows in a db.Transaction: %v", n, err)
	}
	all = append(append(all, up...), tx...)
	checkWidgetsInDB(t, db, all)
	keys := append(relKeys(all), relKeys(all)[:30_000]...) // 66,000 keys, repeats included
	got, err := r.GetMany(ctx, keys)
	if err != nil || len(got) != len(all) {
		t.Fatalf("GetMany of %d keys: %d rows, %v", len(keys), len(got), err)
	}
}

// TestContextCancelledBeforeCommit ends the context after a write's last statement and
// before its COMMIT, when database/sql rolls the transaction back on its own: the call
// must still return the context's error (not sql.ErrTxDone), and nothing is written.
func TestContextCancelledBeforeCommit(t *testing.T) {
	ctx := relContext(t)
	p := relOpenProbe(t)
	r := newRepo[Widget](t, p.db, repo.Config{BatchSize: 100})
	// cancelAfterInsert, when set, is called by a callback after each GORM INSERT.
	var cancelAfterInsert atomic.Pointer[context.CancelFunc]
	if err := p.db.Callback().Create().After("gorm:create").Register("test:cancel", func(*gorm.DB) {
		if cancel := cancelAfterInsert.Load(); cancel != nil {
			(*cancel)()
		}
	}); err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		name  string
		write func(ctx context.Context, cancel context.CancelFunc, rows []Widget) error
	}{
		{"CreateAll, cancelled after its INSERT", func(ctx context.Context, cancel context.CancelFunc, rows []Widget) error {
			cancelAfterInsert.Store(&cancel)
			defer cancelAfterInsert.Store(nil)
			return r.CreateAll(ctx, rows)
		}},
		{"InTx, cancelled after a Copy", func(ctx context.Context, cancel context.CancelFunc, rows []Widget) error {
			return repo.InTx(ctx, p.db, func(tx *gorm.DB) error {
				if err := r.WithTx(tx).Copy(ctx, rows); err != nil {
					return err
				}
				cancel()
				return nil
			})
		}},
		{"CopySeq, cancelled after its last batch", func(ctx context.Context, cancel context.CancelFunc, rows []Widget) error {
			_, err := r.CopySeq(ctx, relSeq(rows), func([]Widget) error {
				cancel()
				return nil
			})
			return err
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			before := dbKeys(t, p.db)
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if err := w.write(wctx, cancel, widgets(w.name, 50)); !errors.Is(err, context.Canceled) {
				t.Fatalf("%v, want context.Canceled", err)
			}
			relSameWidgets(t, p.db, before)
		})
	}
}

// TestInvalidTextInCallerTransaction: in a caller's transaction (InTx or
// db.Transaction), a batch write refused for invalid text does not disturb the
// transaction: CreateAll, Copy and Upsert send nothing, CopySeq rolls back to its
// savepoint the batches it wrote before the bad row's, the writes before and after
// commit, and the refused rows are nowhere. Upsert's unique-key column is checked like
// any other.
func TestInvalidTextInCallerTransaction(t *testing.T) {
	begins := []struct {
		name  string
		begin func(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error
	}{
		{"InTx", func(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error {
			return repo.InTx(ctx, db, fn)
		}},
		{"db.Transaction", func(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error {
			return db.WithContext(ctx).Transaction(fn)
		}},
	}
	for _, b := range begins {
		t.Run(b.name, func(t *testing.T) {
			ctx := relContext(t)
			p := relOpenProbe(t)
			r := newRepo[Widget](t, p.db, repo.Config{BatchSize: 100})
			var kept []Widget
			err := b.begin(ctx, p.db, func(tx *gorm.DB) error {
				rt := r.WithTx(tx)
				first := widgets("first", 150)
				if err := rt.CreateAll(ctx, first); err != nil {
					return err
				}
				bad := widgets("bad", 150)
				bad[120].Code = "caf\xe9" // the Upsert's unique key
				for _, w := range relWrites[:4] {
					before := p.sent()
					_, err := w.write(ctx, tx, rt, bad)
					var it *repo.InvalidTextError
					if !errors.Is(err, repo.ErrInvalidText) || !errors.As(err, &it) || it.Field != "Code" || it.Row != 120 {
						return fmt.Errorf("%s of invalid text in a transaction: %v, want an *InvalidTextError for row 120, field Code", w.name, err)
					}
					// CopySeq writes the batches before the bad row's (here the first)
					// and rolls them back to its savepoint; the others send nothing.
					if n := p.sent() - before; n != 0 && w.name != "CopySeq" {
						return fmt.Errorf("%s refused invalid text after sending %d statements, want none", w.name, n)
					}
				}
				last := widgets("last", 150)
				if err := rt.Copy(ctx, last); err != nil {
					return fmt.Errorf("Copy after the refused writes, in the same transaction: %w", err)
				}
				kept = append(first, last...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			checkWidgetsInDB(t, p.db, kept)
		})
	}
}
