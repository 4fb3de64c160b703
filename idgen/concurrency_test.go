package idgen_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// take makes n keys with a, mixing Next and NextN calls of varying size, and returns
// them, or the keys so far and the first error.
func take(ctx context.Context, a *idgen.Allocator, n, seed int) ([]int64, error) {
	keys := make([]int64, 0, n)
	for i := 0; len(keys) < n; i++ {
		if (i+seed)%3 != 0 {
			k, err := a.Next(ctx)
			if err != nil {
				return keys, err
			}
			keys = append(keys, k)
			continue
		}
		m := min(1+(i*37+seed*11)%180, n-len(keys))
		got, err := a.NextN(ctx, m)
		if err != nil {
			return keys, err
		}
		if len(got) != m {
			return keys, fmt.Errorf("NextN(%d) returned %d keys", m, len(got))
		}
		keys = append(keys, got...)
	}
	return keys, nil
}

// takeAll runs workers goroutines, each taking perWorker keys from the allocator
// allocs[worker % len(allocs)], and returns every key.
func takeAll(t *testing.T, allocs []*idgen.Allocator, workers, perWorker int) []int64 {
	t.Helper()
	ctx := t.Context()
	results := make([][]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[w], errs[w] = take(ctx, allocs[w%len(allocs)], perWorker, w)
		}()
	}
	wg.Wait()
	var all []int64
	for w := range workers {
		noErr(t, errs[w], fmt.Sprintf("worker %d", w))
		all = append(all, results[w]...)
	}
	if len(all) != workers*perWorker {
		t.Fatalf("got %d keys, want %d", len(all), workers*perWorker)
	}
	return all
}

// TestConcurrentGoroutines: 16 goroutines × 20,000 keys on one Allocator, no key twice.
func TestConcurrentGoroutines(t *testing.T) {
	for _, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
		t.Run(opt.String(), func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := newAlloc(t, db, "s", 50, opt)
			keys := takeAll(t, []*idgen.Allocator{a}, 16, 20000)
			requireUnique(t, keys)
			if got := a.Stats().Keys; got != int64(len(keys)) {
				t.Fatalf("Stats().Keys = %d, handed out %d", got, len(keys))
			}
			// Every key lies in a block reserved from the sequence: none above the last one.
			var last int64
			noErr(t, db.QueryRowContext(t.Context(), `SELECT last_value FROM s`).Scan(&last), "last_value")
			top := last + 49
			if opt == idgen.Pooled {
				top = last
			}
			for _, k := range keys {
				if k < 1 || k > top {
					t.Fatalf("key %d lies outside every reserved block (1..%d)", k, top)
				}
			}
		})
	}
}

// TestTwoHosts: two Allocators, each with its own connection pool, as two hosts would
// have, share one sequence.
func TestTwoHosts(t *testing.T) {
	db, dsn := openDB(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	var allocs []*idgen.Allocator
	for range 2 {
		host, err := sql.Open("pgx", dsn)
		noErr(t, err, "open")
		t.Cleanup(func() { _ = host.Close() })
		allocs = append(allocs, newAlloc(t, host, "s", 50))
	}
	keys := takeAll(t, allocs, 16, 10000)
	requireUnique(t, keys)
	for i, a := range allocs {
		if a.Stats().Keys != 80000 {
			t.Fatalf("host %d handed out %d keys, want 80000", i, a.Stats().Keys)
		}
	}
}

// TestBesideDefaultWriter: allocator keys and keys from INSERT … DEFAULT nextval(...)
// go into the same primary key, interleaved; none collides.
func TestBesideDefaultWriter(t *testing.T) {
	for _, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
		t.Run(opt.String(), func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db,
				`CREATE SEQUENCE s INCREMENT 50`,
				`CREATE TABLE t (id bigint PRIMARY KEY DEFAULT nextval('s'), src text NOT NULL)`)
			a := newAlloc(t, db, "s", 50, opt)
			ctx := t.Context()

			// The writer inserts rows with DEFAULT keys each time an allocator
			// goroutine has inserted a batch, so the two kinds of nextval interleave.
			turns := make(chan struct{})
			writerDone := make(chan error, 1)
			var defaultKeys []int64
			go func() {
				var err error
				for range turns {
					if err != nil {
						continue // keep draining so the allocators never block
					}
					var rows *sql.Rows
					rows, err = db.QueryContext(ctx, `INSERT INTO t (src) SELECT 'default' FROM generate_series(1, 3) RETURNING id`)
					if err != nil {
						continue
					}
					for rows.Next() {
						var id int64
						if err = rows.Scan(&id); err != nil {
							break
						}
						defaultKeys = append(defaultKeys, id)
					}
					rows.Close()
					if err == nil {
						err = rows.Err()
					}
				}
				writerDone <- err
			}()

			const workers, batches = 4, 40
			var wg sync.WaitGroup
			allocKeys := make([][]int64, workers)
			errs := make([]error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for b := range batches {
						keys, err := a.NextN(ctx, 1+(w*31+b*17)%150)
						if err == nil {
							_, err = db.ExecContext(ctx, `INSERT INTO t (id, src) SELECT unnest($1::bigint[]), 'alloc'`, keys)
						}
						if err != nil {
							errs[w] = fmt.Errorf("batch %d: %w", b, err)
							return
						}
						allocKeys[w] = append(allocKeys[w], keys...)
						turns <- struct{}{}
					}
				}()
			}
			wg.Wait()
			close(turns)
			noErr(t, <-writerDone, "DEFAULT writer")
			for w, err := range errs {
				noErr(t, err, fmt.Sprintf("allocator goroutine %d (a unique violation means a collision)", w))
			}
			all := append([]int64(nil), defaultKeys...)
			for _, k := range allocKeys {
				all = append(all, k...)
			}
			requireUnique(t, all)
			if len(defaultKeys) != 3*workers*batches {
				t.Fatalf("writer inserted %d rows, want %d", len(defaultKeys), 3*workers*batches)
			}
			var rows int
			noErr(t, db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&rows), "count")
			if rows != len(all) {
				t.Fatalf("table has %d rows, want %d", rows, len(all))
			}
		})
	}
}

// The helper process protocol: the parent sets helperEnv to a role and passes the
// DSN, sequence and key count in the environment; the child waits for its stdin to
// close (so that all children start together), then prints one "key N" line per key.
const (
	helperEnv      = "IDGEN_TEST_HELPER_ROLE"
	helperDSNEnv   = "IDGEN_TEST_HELPER_DSN"
	helperSeqEnv   = "IDGEN_TEST_HELPER_SEQUENCE"
	helperCountEnv = "IDGEN_TEST_HELPER_COUNT"
)

// TestHelperProcess is not a test: it is the body of the child processes that
// TestProcesses starts by running this test binary again. Run directly, without
// helperEnv, it returns at once.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "allocate" {
		return
	}
	n, err := strconv.Atoi(os.Getenv(helperCountEnv))
	noErr(t, err, helperCountEnv)
	db, err := sql.Open("pgx", os.Getenv(helperDSNEnv))
	noErr(t, err, "open")
	defer db.Close()
	a := newAlloc(t, db, os.Getenv(helperSeqEnv), 50)
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin once every child runs

	const workers = 4
	keys := make([][]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[w], errs[w] = take(t.Context(), a, n/workers+map[bool]int{true: n % workers}[w == 0], w)
		}()
	}
	wg.Wait()
	out := bufio.NewWriter(os.Stdout)
	for w := range workers {
		noErr(t, errs[w], "allocate")
		for _, k := range keys[w] {
			fmt.Fprintf(out, "key %d\n", k)
		}
	}
	noErr(t, out.Flush(), "write keys")
}

// TestProcesses: 4 OS processes, each with its own Allocator and goroutines, share
// one sequence; together they hand out 80,000 keys, none twice.
func TestProcesses(t *testing.T) {
	db, dsn := openDB(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	const procs, perProc = 4, 20000

	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stdout strings.Builder
		stderr strings.Builder
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")}
		c.cmd.Env = append(os.Environ(),
			helperEnv+"=allocate",
			helperDSNEnv+"="+dsn,
			helperSeqEnv+"=s",
			helperCountEnv+"="+strconv.Itoa(perProc),
		)
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		var err error
		c.stdin, err = c.cmd.StdinPipe()
		noErr(t, err, "stdin pipe")
		noErr(t, c.cmd.Start(), "start helper process")
		t.Cleanup(func() {
			if c.cmd.ProcessState == nil { // a failed test left it running
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
		})
		children[i] = c
	}
	for _, c := range children {
		noErr(t, c.stdin.Close(), "start allocating")
	}

	var all []int64
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("helper process %d: %v\nstdout:\n%s\nstderr:\n%s", i, err, tail(c.stdout.String()), c.stderr.String())
		}
		var got int
		for _, line := range strings.Split(c.stdout.String(), "\n") {
			v, ok := strings.CutPrefix(line, "key ")
			if !ok {
				continue
			}
			k, err := strconv.ParseInt(v, 10, 64)
			noErr(t, err, "parse key")
			all = append(all, k)
			got++
		}
		if got != perProc {
			t.Fatalf("helper process %d printed %d keys, want %d\nstdout:\n%s", i, got, perProc, tail(c.stdout.String()))
		}
	}
	if len(all) != procs*perProc {
		t.Fatalf("got %d keys, want %d", len(all), procs*perProc)
	}
	requireUnique(t, all)
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// alterIncrement changes the sequence's INCREMENT and returns its last value as the
// change committed: every nextval before the ALTER issued at most that value, every
// one after it is issued under the new INCREMENT.
func alterIncrement(t *testing.T, db *sql.DB, seq string, increment int) int64 {
	t.Helper()
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	noErr(t, err, "begin")
	defer func() { _ = tx.Rollback() }()
	// The ALTER waits for running nextval statements and keeps new ones out until commit.
	_, err = tx.ExecContext(ctx, fmt.Sprintf(`ALTER SEQUENCE %s INCREMENT BY %d`, seq, increment))
	noErr(t, err, "alter")
	var last int64
	noErr(t, tx.QueryRowContext(ctx, `SELECT last_value FROM `+seq).Scan(&last), "last_value")
	noErr(t, tx.Commit(), "commit")
	return last
}

// TestAlterIncrementWhileRunning changes INCREMENT under goroutines that allocate in
// loops: each of them ends with ErrIncrementMismatch, every key handed out before was
// reserved under the old INCREMENT and is unique, no call that began after a mismatch
// was reported hands out a key, and calls keep failing until the INCREMENT is back.
func TestAlterIncrementWhileRunning(t *testing.T) {
	for _, opt := range []idgen.Optimizer{idgen.PooledLo, idgen.Pooled} {
		t.Run(opt.String(), func(t *testing.T) {
			db, _ := openDB(t)
			mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
			a := newAlloc(t, db, "s", 50, opt)
			ctx := t.Context()

			const workers = 8
			type result struct {
				keys []int64
				err  error
				late []int64 // keys from calls that began after a mismatch was reported
			}
			var mismatchReported atomic.Bool
			// top is set once the ALTER has committed: the last key of the last block
			// reserved under INCREMENT 50. A worker that gets a key above it stops at
			// once (instead of looping for ever, had the fetch missed the mismatch).
			var top atomic.Int64
			ready := make(chan struct{}, workers)
			results := make(chan result, workers)
			for w := range workers {
				go func() {
					var r result
					signalled := false
					for i := 0; ; i++ {
						after := mismatchReported.Load()
						var got []int64
						var err error
						switch {
						case w%4 == 3:
							got, err = a.WithTx(db).NextN(ctx, 1+(i*13+w)%120)
						case w%2 == 0:
							var k int64
							k, err = a.Next(ctx)
							got = []int64{k}
						default:
							got, err = a.NextN(ctx, 1+(i*7+w)%120)
						}
						if err != nil {
							if errors.Is(err, idgen.ErrIncrementMismatch) {
								mismatchReported.Store(true)
							}
							r.err = err
							break
						}
						if after {
							r.late = append(r.late, got...)
						}
						r.keys = append(r.keys, got...)
						if t := top.Load(); t != 0 && slices.Max(got) > t {
							r.err = fmt.Errorf("key %d handed out, but the last block reserved under INCREMENT 50 ends at %d", slices.Max(got), t)
							break
						}
						if !signalled && len(r.keys) >= 500 {
							signalled = true
							ready <- struct{}{}
						}
					}
					if !signalled {
						ready <- struct{}{}
					}
					results <- r
				}()
			}
			for range workers {
				<-ready // every worker has keys; all are still running
			}
			lastBefore := alterIncrement(t, db, "s", 10)
			if opt == idgen.Pooled {
				top.Store(lastBefore)
			} else {
				top.Store(lastBefore + 49)
			}

			var all []int64
			for range workers {
				r := <-results
				if !errors.Is(r.err, idgen.ErrIncrementMismatch) {
					t.Fatalf("a worker stopped with %v, want ErrIncrementMismatch", r.err)
				}
				if len(r.late) > 0 {
					t.Fatalf("calls that began after a mismatch was reported handed out %d keys (%v…)", len(r.late), r.late[0])
				}
				all = append(all, r.keys...)
			}
			requireUnique(t, all)
			// Keys come only from nextval values issued before the ALTER.
			for _, k := range all {
				if k > top.Load() {
					t.Fatalf("key %d was handed out, but the last block reserved under INCREMENT 50 ends at %d", k, top.Load())
				}
			}
			if got := a.Stats().Keys; got != int64(len(all)) {
				t.Fatalf("Stats().Keys = %d, workers got %d", got, len(all))
			}

			// While the INCREMENT is wrong, every call fails and hands out nothing.
			for i := range 3 {
				if keys, err := a.NextN(ctx, 1); !errors.Is(err, idgen.ErrIncrementMismatch) {
					t.Fatalf("NextN %d after the mismatch = %v, %v; want ErrIncrementMismatch", i, keys, err)
				}
				if k, err := a.Next(ctx); !errors.Is(err, idgen.ErrIncrementMismatch) {
					t.Fatalf("Next %d after the mismatch = %v, %v; want ErrIncrementMismatch", i, k, err)
				}
				if keys, err := a.WithTx(db).NextN(ctx, 1); !errors.Is(err, idgen.ErrIncrementMismatch) {
					t.Fatalf("WithTx.NextN %d after the mismatch = %v, %v; want ErrIncrementMismatch", i, keys, err)
				}
			}
			if got := a.Stats().Keys; got != int64(len(all)) {
				t.Fatalf("failed calls changed Stats().Keys from %d to %d", len(all), got)
			}

			// With the INCREMENT back, the same Allocator works again, above everything
			// the sequence issued in between.
			alterIncrement(t, db, "s", 50)
			keys, err := a.NextN(ctx, 120)
			noErr(t, err, "NextN after the INCREMENT is restored")
			for _, k := range keys {
				if k <= top.Load() {
					t.Fatalf("key %d after the restore is not above the old blocks (…%d)", k, top.Load())
				}
			}
			requireUnique(t, append(all, keys...))
		})
	}
}

// pausingQuerier runs queries on db, but holds back the answer to the first one until
// resume is closed, after telling answered.
type pausingQuerier struct {
	db       *sql.DB
	once     sync.Once
	answered chan struct{}
	resume   chan struct{}
}

func (p *pausingQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := p.db.QueryContext(ctx, query, args...)
	p.once.Do(func() {
		close(p.answered)
		<-p.resume
	})
	return rows, err
}

// waitLastValue waits until the sequence has issued want, looking again and again
// (each look is a query; nothing sleeps).
func waitLastValue(t *testing.T, db *sql.DB, seq string, want int64) {
	t.Helper()
	for {
		var last int64
		var called bool
		noErr(t, db.QueryRowContext(t.Context(), `SELECT last_value, is_called FROM `+seq).Scan(&last, &called), "last_value")
		if called && last == want {
			return
		}
		if called && last > want {
			t.Fatalf("%s issued %d, want %d", seq, last, want)
		}
		runtime.Gosched()
	}
}

// TestMismatchDropsStaleRefill: a refill whose nextval ran before an ALTER … INCREMENT
// but whose answer arrives after another call has reported the mismatch must not put
// its keys in the pool: after a mismatch is reported, no key is handed out while the
// INCREMENT is wrong. (After the ALTER, nextval issues 11, 21, …: DEFAULT nextval
// writers get keys inside the stale block 1..50.)
func TestMismatchDropsStaleRefill(t *testing.T) {
	db, _ := openDB(t)
	mustExec(t, db, `CREATE SEQUENCE s INCREMENT 50`)
	a := exactAlloc(t, db, "s", 50)
	ctx := t.Context()

	p := &pausingQuerier{db: db, answered: make(chan struct{}), resume: make(chan struct{})}
	type result struct {
		keys []int64
		err  error
	}
	stale := make(chan result, 1)
	go func() {
		keys, err := a.WithTx(p).NextN(ctx, 1)
		stale <- result{keys, err}
	}()
	<-p.answered
	// Its nextval has run (and its lock holds the ALTER off until its statement ends).
	waitLastValue(t, db, "s", 1)
	alterIncrement(t, db, "s", 10)

	if _, err := a.Next(ctx); !errors.Is(err, idgen.ErrIncrementMismatch) {
		t.Fatalf("Next after ALTER: %v, want ErrIncrementMismatch", err)
	}
	close(p.resume)
	if r := <-stale; r.err == nil && (len(r.keys) != 1 || r.keys[0] != 1) {
		t.Fatalf("the call that straddled the ALTER got %v", r.keys)
	}
	for i := range 3 {
		if keys, err := a.NextN(ctx, 1); !errors.Is(err, idgen.ErrIncrementMismatch) {
			t.Fatalf("NextN %d after a reported mismatch = %v, %v; want ErrIncrementMismatch", i, keys, err)
		}
	}
}
