package seqrepo_test

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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Reliability of the whole stack (issue 6): a server restart in the middle of an
// ingest, and many writer processes beside a writer that inserts with DEFAULT.
//
// Every test here runs a short version by default. SEQREPO_SOAK=1 runs the long one:
// more restarts, more rounds, bigger batches.

// soak reports whether the long versions run (SEQREPO_SOAK=1).
func soak() bool { return os.Getenv("SEQREPO_SOAK") == "1" }

// relCtx returns a context that ends a little before the test's deadline, so that a wait
// that never ends fails the test with a message instead of hanging it. It bounds waits;
// it asserts nothing about speed.
func relCtx(t *testing.T) context.Context { return pgtest.Context(t, 10*time.Minute) }

// relSHA is the commit SHA of a row number: 40 hexadecimal digits.
func relSHA(n int64) string { return fmt.Sprintf("%040x", n) }

// relOpen opens GORM with the plugin, every model validated, on dsn.
func relOpen(t testing.TB, dsn string) (*gorm.DB, *sql.DB) {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	if err := db.Use(repo.NewPluginWithConfig(repo.PluginConfig{Validate: models.All()})); err != nil {
		t.Fatal(err)
	}
	return db, sqlDB
}

// relCommits returns n commits of project by author, with SHAs from first on.
func relCommits(project, author, first int64, n int) []models.Commit {
	now := time.Now()
	rows := make([]models.Commit, n)
	for i := range rows {
		rows[i] = models.Commit{RepositoryID: project, AuthorID: author, SHA: relSHA(first + int64(i)),
			Message: "reliability", AuthoredAt: now, CommittedAt: now}
	}
	return rows
}

// relWrite writes commits through one of the Repository's batch writes and returns the
// keys the rows got, in order.
type relWrite struct {
	name  string
	write func(ctx context.Context, r *repo.Repository[models.Commit], rows []models.Commit) ([]int64, error)
}

var onSHA = repo.OnConflict{Columns: []string{"repository_id", "sha"}}

func commitKeysOf(rows []models.Commit) []int64 {
	keys := make([]int64, len(rows))
	for i := range rows {
		keys[i] = rows[i].ID
	}
	return keys
}

var relWrites = []relWrite{
	{"CreateAll", func(ctx context.Context, r *repo.Repository[models.Commit], rows []models.Commit) ([]int64, error) {
		err := r.CreateAll(ctx, rows)
		return commitKeysOf(rows), err
	}},
	{"Copy", func(ctx context.Context, r *repo.Repository[models.Commit], rows []models.Commit) ([]int64, error) {
		err := r.Copy(ctx, rows)
		return commitKeysOf(rows), err
	}},
	{"CopySeq", func(ctx context.Context, r *repo.Repository[models.Commit], rows []models.Commit) ([]int64, error) {
		var keys []int64
		_, err := r.CopySeq(ctx, func(yield func(models.Commit, error) bool) {
			for _, c := range rows {
				if !yield(c, nil) {
					return
				}
			}
		}, func(batch []models.Commit) error {
			keys = append(keys, commitKeysOf(batch)...)
			return nil
		})
		return keys, err
	}},
	{"Upsert", func(ctx context.Context, r *repo.Repository[models.Commit], rows []models.Commit) ([]int64, error) {
		_, err := r.Upsert(ctx, rows, onSHA)
		return commitKeysOf(rows), err
	}},
}

// call is one write and what came of it.
type call struct {
	writer int
	rows   []models.Commit // with their keys when err is nil
	err    error
	after  bool // began after the restart had returned
	probe  bool // a probe call, made while the server restarts
}

// TestServerRestartMidIngest restarts the server (fast shutdown, as pg_ctl restart -m
// fast) while writers on every batch path ingest commits, each with a write in flight
// (parked behind a table lock, so the restart deterministically cuts it off), and a
// probe writes single rows while the server is down. The writes in flight fail; the
// allocator and the repositories work again once the server is back, without a new
// *gorm.DB (at most each stale pooled connection fails one call); the table holds
// exactly the rows of the calls that returned nil; no key repeats; and writers that
// insert with DEFAULT get no key a seqrepo writer has.
func TestServerRestartMidIngest(t *testing.T) {
	ctx := relCtx(t)
	// A prepared transaction holds the lock that parks the writes: it outlives the
	// restart, so no parked write can slip through while the server shuts down.
	c, err := pgtest.Start(ctx, pgtest.Options{Durable: true, Settings: map[string]string{"max_prepared_transactions": "4"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	admin, err := sql.Open("pgx", c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE ingest`); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	dsn := c.DSN("ingest")
	// fresh returns a pool with no connection from before a restart in it.
	fresh := func() *sql.DB {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	if err := migrations.Up(ctx, fresh()); err != nil {
		t.Fatal(err)
	}

	db, sqlDB := relOpen(t, dsn)
	const idle = 2
	sqlDB.SetMaxIdleConns(idle) // each idle connection may fail one call after the restart
	commits, err := repo.NewWithConfig[models.Commit](db, repo.Config{BatchSize: 60})
	if err != nil {
		t.Fatal(err)
	}
	project := models.Repository{Name: "restart", URL: "u"}
	author := models.Author{Email: "restart@example.com", Name: "r"}
	if err := db.Create(&project).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Create(&author).Error; err != nil {
		t.Fatal(err)
	}

	writers, restarts, per := 8, 1, 80
	if soak() {
		restarts, per = 5, 400
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	record := func(c call) {
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
	}
	var next int64 // row numbers for SHAs; protected by mu
	rows := func(n int) []models.Commit {
		mu.Lock()
		defer mu.Unlock()
		next += int64(n)
		return relCommits(project.ID, author.ID, next-int64(n), n)
	}

	for round := range restarts {
		// Every writer commits twice, then starts a write that waits for the table lock
		// the test holds, and after the restart writes until it has committed twice more.
		ready := make(chan struct{}, writers)
		locked := make(chan struct{})
		restarted := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := relWrites[w%len(relWrites)]
				n := 0
				write := func(after bool) error {
					n++
					batch := rows(1 + (w*31+n*17)%per)
					keys, err := m.write(ctx, commits, batch)
					if err == nil {
						for i := range batch {
							batch[i].ID = keys[i]
						}
					}
					record(call{writer: w, rows: batch, err: err, after: after})
					return err
				}
				for ok := 0; ok < 2; {
					if write(false) == nil {
						ok++
					}
				}
				ready <- struct{}{}
				<-locked
				_ = write(false) // parked until the restart ends it
				<-restarted
				for ok, failed := 0, 0; ok < 2 && failed <= idle; {
					if write(true) == nil {
						ok++
					} else {
						failed++
					}
				}
			}()
		}
		for range writers {
			<-ready
		}
		direct := fresh()
		lock, err := direct.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gid := fmt.Sprintf("restart-lock-%d", round)
		for _, stmt := range []string{`BEGIN`, `LOCK TABLE commits IN SHARE MODE`, `PREPARE TRANSACTION '` + gid + `'`} {
			if _, err := lock.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		_ = lock.Close()
		close(locked)
		waitForLockWaiters(t, ctx, direct, writers)

		// The probe writes single rows for as long as the restart takes.
		probeDone := make(chan struct{})
		stopProbe := make(chan struct{})
		go func() {
			defer close(probeDone)
			for {
				select {
				case <-stopProbe:
					return
				default:
				}
				batch := rows(1)
				err := commits.Copy(ctx, batch)
				record(call{writer: -1, rows: batch, err: err, probe: true})
				runtime.Gosched()
			}
		}()
		if err := c.Restart(ctx); err != nil {
			t.Fatalf("restart %d: %v", round, err)
		}
		close(stopProbe)
		if _, err := fresh().ExecContext(ctx, `ROLLBACK PREPARED '`+gid+`'`); err != nil {
			t.Fatal(err)
		}
		<-probeDone
		close(restarted)
		wg.Wait()
	}

	// DEFAULT writers after the restarts: the identity's nextval, beside the blocks
	// the allocator holds.
	var defaultKeys []int64
	direct := fresh()
	for i := range 5 {
		var id int64
		err := direct.QueryRowContext(ctx, `INSERT INTO commits (repository_id, author_id, sha, message, authored_at, committed_at)
VALUES ($1, $2, $3, 'default', now(), now()) RETURNING id`, project.ID, author.ID, relSHA(1<<40+int64(i))).Scan(&id)
		if err != nil {
			t.Fatalf("INSERT with a DEFAULT key after the restart: %v", err)
		}
		defaultKeys = append(defaultKeys, id)
	}
	more := relCommits(project.ID, author.ID, 1<<41, 300)
	if err := commits.Copy(ctx, more); err != nil {
		t.Fatalf("Copy after the DEFAULT writer: %v", err)
	}

	want := map[string]int64{}
	for i, k := range defaultKeys {
		want[relSHA(1<<40+int64(i))] = k
	}
	for _, c := range more {
		want[c.SHA] = c.ID
	}
	failed := map[string]bool{}    // rows of writes that failed: never in the table
	ambiguous := map[string]bool{} // rows of probe writes that failed: perhaps cut off at COMMIT
	var parked, probeFailed, lateFailed int
	for _, c := range calls {
		switch {
		case c.err == nil:
			for _, row := range c.rows {
				want[row.SHA] = row.ID
			}
		case c.probe:
			probeFailed++
			for _, row := range c.rows {
				ambiguous[row.SHA] = true
			}
		default:
			var dup *repo.DuplicateKeyError
			if errors.As(c.err, &dup) {
				t.Fatalf("writer %d: %v", c.writer, c.err)
			}
			if c.after {
				lateFailed++
			} else {
				parked++
			}
			for _, row := range c.rows {
				failed[row.SHA] = true
			}
		}
	}
	if parked != writers*restarts {
		t.Fatalf("%d writes failed across the restarts, want the %d in flight", parked, writers*restarts)
	}
	if lateFailed > idle*restarts {
		t.Fatalf("%d writes failed after the server was back, want at most %d (one per stale idle connection)", lateFailed, idle*restarts)
	}
	t.Logf("%d restarts: %d writes in flight failed, %d of the probe's writes failed while the server was down, %d writes failed on stale connections afterwards",
		restarts, parked, probeFailed, lateFailed)

	var inTable []models.Commit
	if err := db.Select("id", "sha").Find(&inTable).Error; err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, c := range inTable {
		got[c.SHA] = c.ID
	}
	for sha, key := range want {
		if got[sha] != key {
			t.Fatalf("commit %s: key %d in the table, %d reported written", sha, got[sha], key)
		}
	}
	for sha := range got {
		if _, ok := want[sha]; !ok && !ambiguous[sha] {
			t.Fatalf("commit %s is in the table, but no call that returned nil wrote it (failed call: %v)", sha, failed[sha])
		}
	}
	relDistinctKeys(t, inTable)
}

// waitForLockWaiters waits until n writes (INSERT or COPY: ROW EXCLUSIVE, which
// autovacuum never asks for) wait for a lock on the commits table, looking again and
// again (each look is a query; nothing sleeps).
func waitForLockWaiters(t *testing.T, ctx context.Context, db *sql.DB, n int) {
	t.Helper()
	for {
		var waiting int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks
WHERE relation = 'commits'::regclass AND mode = 'RowExclusiveLock' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		runtime.Gosched()
	}
}

// relDistinctKeys fails t if two commits share a key.
func relDistinctKeys(t *testing.T, rows []models.Commit) {
	t.Helper()
	seen := make(map[int64]string, len(rows))
	for _, c := range rows {
		if other, ok := seen[c.ID]; ok {
			t.Fatalf("key %d is both %s and %s", c.ID, other, c.SHA)
		}
		seen[c.ID] = c.SHA
	}
}

// The many-writers protocol: the parent sets relHelperEnv and passes the DSN, the
// process number, the repository's key and the number of rounds in the environment. The
// child waits for its stdin to close, so that every child writes at the same time, then
// prints one line per row it wrote: "commit SHA KEY" and "author EMAIL KEY", and a last
// line "count COMMITS AUTHORS".
const (
	relHelperEnv  = "SEQREPO_RELIABILITY_HELPER"
	relDSNEnv     = "SEQREPO_RELIABILITY_DSN"
	relProcEnv    = "SEQREPO_RELIABILITY_PROC"
	relProjectEnv = "SEQREPO_RELIABILITY_PROJECT"
	relRoundsEnv  = "SEQREPO_RELIABILITY_ROUNDS"
)

// sharedSHA is the SHA of shared commit i of a round: every process upserts the same ones.
func sharedSHA(round, i int) string { return relSHA(1<<50 + int64(round)*1000 + int64(i)) }

// ownSHA is the SHA of row i of round r of goroutine g of process p: no one else's.
func ownSHA(p, g, r, i int) string {
	return relSHA(((int64(p)*100+int64(g))*1000+int64(r))*10_000 + int64(i))
}

// TestManyWritersHelper is not a test: it is the body of the processes that
// TestManyWriterProcesses starts by running this test binary again. Run without
// relHelperEnv, it returns at once.
func TestManyWritersHelper(t *testing.T) {
	if os.Getenv(relHelperEnv) != "writer" {
		return
	}
	ctx := t.Context()
	proc, err := strconv.Atoi(os.Getenv(relProcEnv))
	if err != nil {
		t.Fatal(err)
	}
	project, err := strconv.ParseInt(os.Getenv(relProjectEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	rounds, err := strconv.Atoi(os.Getenv(relRoundsEnv))
	if err != nil {
		t.Fatal(err)
	}
	db, _ := relOpen(t, os.Getenv(relDSNEnv))
	commits, err := repo.NewWithConfig[models.Commit](db, repo.Config{BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	authors, err := repo.New[models.Author](db)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin once every process runs

	const goroutines = 8
	type result struct {
		commits map[string]int64
		authors map[string]int64
		err     error
	}
	results := make([]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := result{commits: map[string]int64{}, authors: map[string]int64{}}
			defer func() { results[g] = res }()
			for r := range rounds {
				// Authors shared by every process, upserted in an order of their own.
				as := make([]models.Author, 20)
				for i := range as {
					as[i] = models.Author{Email: fmt.Sprintf("a%d@example.com", (i*7+g*3+proc*5+r)%60), Name: "a"}
				}
				if _, res.err = authors.Upsert(ctx, as, repo.OnConflict{Columns: []string{"email"}}); res.err != nil {
					return
				}
				for _, a := range as {
					res.authors[a.Email] = a.ID
				}
				// This goroutine's own commits through one batch path.
				own := make([]models.Commit, 1+(g*37+r*11+proc*13)%120)
				now := time.Now()
				for i := range own {
					own[i] = models.Commit{RepositoryID: project, AuthorID: as[i%len(as)].ID, SHA: ownSHA(proc, g, r, i),
						Message: "own", AuthoredAt: now, CommittedAt: now}
				}
				keys, err := relWrites[(g+r+proc)%len(relWrites)].write(ctx, commits, own)
				if res.err = err; err != nil {
					return
				}
				for i, c := range own {
					res.commits[c.SHA] = keys[i]
				}
				// Commits every process upserts: all must end up with one key.
				shared := make([]models.Commit, 10)
				for i := range shared {
					shared[i] = models.Commit{RepositoryID: project, AuthorID: as[0].ID, SHA: sharedSHA(r, (i+g)%10),
						Message: "shared", AuthoredAt: now, CommittedAt: now}
				}
				if _, res.err = commits.Upsert(ctx, shared, onSHA); res.err != nil {
					return
				}
				for _, c := range shared {
					res.commits[c.SHA] = c.ID
				}
			}
		}()
	}
	wg.Wait()
	out := bufio.NewWriter(os.Stdout)
	var nc, na int
	for g, res := range results {
		if res.err != nil {
			t.Fatalf("goroutine %d: %v", g, res.err)
		}
		for sha, key := range res.commits {
			fmt.Fprintf(out, "commit %s %d\n", sha, key)
			nc++
		}
		for email, key := range res.authors {
			fmt.Fprintf(out, "author %s %d\n", email, key)
			na++
		}
	}
	fmt.Fprintf(out, "count %d %d\n", nc, na)
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestManyWriterProcesses: 4 processes × 8 goroutines ingest commits and authors into
// the same tables through CreateAll, Copy, CopySeq and Upsert (shared authors and
// shared commits upserted by all of them), while this process inserts commits with
// DEFAULT keys (the identity's nextval). Each writer reports every row it wrote with
// its key; the tables hold exactly those rows under those keys, every key once, and
// every process that upserted a shared row got the table's key for it.
func TestManyWriterProcesses(t *testing.T) {
	ctx := relCtx(t)
	dsn := pgtest.NewDatabase(t, migrated)
	db, sqlDB := relOpen(t, dsn)
	project := models.Repository{Name: "many", URL: "u"}
	author := models.Author{Email: "default@example.com", Name: "d"}
	if err := db.Create(&project).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Create(&author).Error; err != nil {
		t.Fatal(err)
	}
	procs, rounds := 4, 3
	if soak() {
		rounds = 40
	}

	type child struct {
		cmd            *exec.Cmd
		stdin          io.WriteCloser
		stdout, stderr strings.Builder
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestManyWritersHelper$", "-test.count=1")}
		c.cmd.Env = append(os.Environ(),
			relHelperEnv+"=writer",
			relDSNEnv+"="+dsn,
			relProcEnv+"="+strconv.Itoa(i),
			relProjectEnv+"="+strconv.FormatInt(project.ID, 10),
			relRoundsEnv+"="+strconv.Itoa(rounds),
		)
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if c.cmd.ProcessState == nil { // a failed test left it running
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
		})
		children[i] = c
	}

	for _, c := range children {
		if err := c.stdin.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// The DEFAULT writer starts with the children and runs until every child has
	// finished, at least 10 rounds and at most 1,000 (then it waits for them).
	childrenDone := make(chan struct{})
	type defaultResult struct {
		keys map[string]int64
		err  error
	}
	defaults := make(chan defaultResult, 1)
	go func() {
		res := defaultResult{keys: map[string]int64{}}
		defer func() { defaults <- res }()
		for i := 0; ; i++ {
			switch {
			case i >= 1000:
				<-childrenDone
				return
			case i >= 10:
				select {
				case <-childrenDone:
					return
				default:
				}
			}
			shas := []string{relSHA(1<<55 + int64(3*i)), relSHA(1<<55 + int64(3*i+1)), relSHA(1<<55 + int64(3*i+2))}
			rows, err := sqlDB.QueryContext(ctx, `INSERT INTO commits (repository_id, author_id, sha, message, authored_at, committed_at)
SELECT $1, $2, sha, 'default', now(), now() FROM unnest($3::text[]) AS sha RETURNING sha, id`, project.ID, author.ID, shas)
			if err != nil {
				res.err = err
				return
			}
			for rows.Next() {
				var sha string
				var id int64
				if res.err = rows.Scan(&sha, &id); res.err != nil {
					rows.Close()
					return
				}
				res.keys[sha] = id
			}
			rows.Close()
			if res.err = rows.Err(); res.err != nil {
				return
			}
		}
	}()

	wantCommits := map[string]int64{}
	wantAuthors := map[string]int64{author.Email: author.ID}
	agree := func(kind string, want map[string]int64, name string, key int64, proc int) {
		if k, ok := want[name]; ok && k != key {
			t.Fatalf("%s %s: process %d reports key %d, another writer %d", kind, name, proc, key, k)
		}
		want[name] = key
	}
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("writer process %d: %v\nstdout:\n%s\nstderr:\n%s", i, err, relTail(c.stdout.String()), c.stderr.String())
		}
		var nc, na, wantC, wantA int
		for _, line := range strings.Split(c.stdout.String(), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			switch f[0] {
			case "commit", "author":
				key, err := strconv.ParseInt(f[2], 10, 64)
				if err != nil {
					t.Fatalf("process %d: %q", i, line)
				}
				if f[0] == "commit" {
					agree("commit", wantCommits, f[1], key, i)
					nc++
				} else {
					agree("author", wantAuthors, f[1], key, i)
					na++
				}
			case "count":
				wantC, _ = strconv.Atoi(f[1])
				wantA, _ = strconv.Atoi(f[2])
			}
		}
		if nc == 0 || nc != wantC || na != wantA {
			t.Fatalf("process %d reported %d commits and %d authors, counted %d and %d\n%s", i, wantC, wantA, nc, na, relTail(c.stdout.String()))
		}
	}
	close(childrenDone)
	d := <-defaults
	if d.err != nil {
		t.Fatalf("DEFAULT writer: %v (a duplicate key means it collided with a block)", d.err)
	}
	for sha, key := range d.keys {
		agree("commit", wantCommits, sha, key, -1)
	}

	var inCommits []models.Commit
	if err := db.Select("id", "sha").Find(&inCommits).Error; err != nil {
		t.Fatal(err)
	}
	if len(inCommits) != len(wantCommits) {
		t.Fatalf("%d commits in the table, %d reported written", len(inCommits), len(wantCommits))
	}
	for _, c := range inCommits {
		if wantCommits[c.SHA] != c.ID {
			t.Fatalf("commit %s: key %d in the table, %d reported", c.SHA, c.ID, wantCommits[c.SHA])
		}
	}
	relDistinctKeys(t, inCommits)
	var inAuthors []models.Author
	if err := db.Find(&inAuthors).Error; err != nil {
		t.Fatal(err)
	}
	if len(inAuthors) != len(wantAuthors) {
		t.Fatalf("%d authors in the table, %d reported", len(inAuthors), len(wantAuthors))
	}
	for _, a := range inAuthors {
		if wantAuthors[a.Email] != a.ID {
			t.Fatalf("author %s: key %d in the table, %d reported", a.Email, a.ID, wantAuthors[a.Email])
		}
	}
	t.Logf("%d processes × 8 goroutines and a DEFAULT writer: %d commits (%d by DEFAULT), %d authors", procs, len(inCommits), len(d.keys), len(inAuthors))
}

func relTail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
