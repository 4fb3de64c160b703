// Command seqbench ingests a git commit history into PostgreSQL under each write
// strategy, side by side, verifies every result and prints what each cost: the proof
// of seqrepo's claim on your own machine.
//
// With no flags it starts a private PostgreSQL from the local server binaries, applies
// seqrepo's migrations, generates a deterministic history of 30,000 commits by a few
// hundred authors in a handful of repositories, and runs every strategy three times,
// in rounds (each round runs every strategy once, so that a noisy machine slows all of
// them alike). The graph strategies write request-sized object graphs instead (1
// repository, 10 authors, 10 commits per request) and report each request's time.
// --rtt puts an in-process proxy between seqbench and PostgreSQL that adds a network
// round trip, to see what the network costs each strategy:
//
//	go run ./cmd/seqbench
//	go run ./cmd/seqbench --rows 1000000 --strategies copy
//	go run ./cmd/seqbench --rtt 1ms --strategies graph-gorm,graph-plugin,graph --rounds 5
//	go run ./cmd/seqbench --git ~/src/linux --strategies prealloc-batch,copy,upsert
//	go run ./cmd/seqbench --dsn postgres://me@localhost/db --json > results.json
//
// Against a server of yours (--dsn or DATABASE_URL) it works in a schema of its own,
// "seqbench", and drops it afterwards. It exits non-zero if any run's verification
// fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/repo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	dsn        string
	rows       int
	alloc      int
	batch      int
	strategies string
	writers    int
	repeat     int
	git        string
	json       bool
	cpuprofile string
	rtt        time.Duration // added round trip (the proxy), 0 for none
	requests   int           // requests per run of the graph strategies
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("seqbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dsn, "dsn", "", "PostgreSQL to use (default $DATABASE_URL, else a private server started from the local binaries)")
	fs.IntVar(&o.rows, "rows", 30000, "commits to generate (with --git: at most this many, 0 for all)")
	fs.IntVar(&o.alloc, "alloc", 50, "allocation size; the sequences' INCREMENT is set to match")
	fs.IntVar(&o.batch, "batch", repo.DefaultBatchSize, "rows per write batch, the library's default (GORM's INSERTs are capped at PostgreSQL's 65,535 bind parameters)")
	fs.StringVar(&o.strategies, "strategies", strings.Join(strategyNames(), ","), "comma-separated strategies to run")
	fs.IntVar(&o.writers, "writers", 1, "concurrent writers sharing the sequences")
	fs.IntVar(&o.repeat, "rounds", 3, "rounds; each runs every strategy once, and each strategy's median is reported")
	fs.IntVar(&o.repeat, "repeat", 3, "the same as --rounds")
	fs.DurationVar(&o.rtt, "rtt", 0, "add this network round trip with an in-process delay proxy (e.g. 1ms); the effective one is measured and printed")
	fs.IntVar(&o.requests, "requests", 200, "requests per run of the graph strategies")
	fs.StringVar(&o.git, "git", "", "ingest the history of the git repository at this path instead of a generated one")
	fs.BoolVar(&o.json, "json", false, "print machine-readable results on stdout")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a Go CPU profile of the timed runs to this file (go tool pprof)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: seqbench [flags]\n\nStrategies:\n")
		for _, s := range allStrategies() {
			fmt.Fprintf(stderr, "  %-16s %s\n", s.name, s.about)
		}
		fmt.Fprintf(stderr, "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case o.rows < 0 || (o.rows == 0 && o.git == ""):
		return o, fmt.Errorf("--rows must be positive")
	case o.alloc < 1:
		return o, fmt.Errorf("--alloc must be at least 1")
	case o.batch < 1:
		return o, fmt.Errorf("--batch must be at least 1")
	case o.writers < 1:
		return o, fmt.Errorf("--writers must be at least 1")
	case o.repeat < 1:
		return o, fmt.Errorf("--rounds must be at least 1")
	case o.rtt < 0:
		return o, fmt.Errorf("--rtt must not be negative")
	case o.requests < 1:
		return o, fmt.Errorf("--requests must be at least 1")
	}
	if o.dsn == "" {
		o.dsn = os.Getenv("DATABASE_URL")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "seqbench:", err)
		return 2
	}
	chosen, err := pickStrategies(o.strategies)
	if err != nil {
		fmt.Fprintln(stderr, "seqbench:", err)
		return 2
	}
	stderr = &lockedWriter{w: stderr} // progress lines come from another goroutine
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }

	dsn, schema := o.dsn, ""
	if dsn == "" {
		logf("starting a private PostgreSQL (default durability) ...")
		cluster, err := pgtest.Start(ctx, pgtest.Options{Durable: true})
		if err != nil {
			fmt.Fprintln(stderr, "seqbench:", err)
			return 1
		}
		defer cluster.Stop()
		dsn = cluster.DSN("postgres")
	} else {
		schema = "seqbench"
	}

	var h *history
	if o.git != "" {
		if h, err = gitHistory(ctx, o.git, o.rows); err != nil {
			fmt.Fprintln(stderr, "seqbench:", err)
			return 1
		}
	} else {
		h = generatedHistory(o.rows)
	}

	results, meta, err := bench(ctx, o, dsn, schema, h, chosen, stderr, logf)
	if err != nil {
		fmt.Fprintln(stderr, "seqbench:", err)
		return 1
	}
	if o.json {
		if err := printJSON(stdout, meta, results); err != nil {
			fmt.Fprintln(stderr, "seqbench:", err)
			return 1
		}
	} else {
		fmt.Fprintf(stdout, "%s\n\n", meta.String())
		printTable(stdout, results)
	}
	for _, r := range results {
		if !r.Verified {
			return 1
		}
	}
	return 0
}

type metaInfo struct {
	Date       string `json:"date"`
	Postgres   string `json:"postgres"`
	CPUs       int    `json:"cpus"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	Commits    int    `json:"commits"`
	Authors    int    `json:"authors"`
	Repos      int    `json:"repositories"`
	Alloc      int    `json:"alloc"`
	Batch      int    `json:"batch"`
	Writers    int    `json:"writers"`
	Repeat     int    `json:"repeat"`
	PeakRSSMiB int64  `json:"peak_rss_mib"`
	// RTT is the round trip --rtt asked for; MeasuredRTTMs the median SELECT 1 that
	// the strategies' connections saw, with or without the proxy.
	RTT           string  `json:"rtt"`
	MeasuredRTTMs float64 `json:"measured_rtt_ms"`
	Requests      int     `json:"graph_requests"`
}

func (m metaInfo) String() string {
	return fmt.Sprintf("seqbench %s: %d commits, %d authors, %d repositories; graphs: %d requests; alloc %d, batch %d, %d writer(s), median of %d rounds\n"+
		"round trip: added %s, measured %.3f ms (SELECT 1)\n%s; %d CPUs %s/%s; peak RSS %d MiB",
		m.Date, m.Commits, m.Authors, m.Repos, m.Requests, m.Alloc, m.Batch, m.Writers, m.Repeat, m.RTT, m.MeasuredRTTMs, m.Postgres, m.CPUs, m.GOOS, m.GOARCH, m.PeakRSSMiB)
}

// bench sets up the schema and runs o.repeat rounds, each running every chosen strategy
// once, in order.
func bench(ctx context.Context, o options, dsn, schema string, h *history, chosen []strategy, stderr io.Writer, logf func(string, ...any)) ([]*result, metaInfo, error) {
	meta := metaInfo{Date: time.Now().UTC().Format("2006-01-02"), CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		Commits: h.n, Authors: len(h.authors), Repos: len(h.repos), Alloc: o.alloc, Batch: o.batch, Writers: o.writers, Repeat: o.repeat,
		RTT: o.rtt.String(), Requests: o.requests}
	ctr := &counter{}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, meta, fmt.Errorf("--dsn: %w", err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, meta, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if err := admin.QueryRow(ctx, `SELECT split_part(version(), ' on ', 1)`).Scan(&meta.Postgres); err != nil {
		return nil, meta, err
	}
	if schema != "" {
		s := pgx.Identifier{schema}.Sanitize()
		if _, err := admin.Exec(ctx, `DROP SCHEMA IF EXISTS `+s+` CASCADE; CREATE SCHEMA `+s); err != nil {
			return nil, meta, fmt.Errorf("create schema %s: %w", schema, err)
		}
		defer admin.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+s+` CASCADE`)
		cfg.RuntimeParams["search_path"] = schema
		if _, err := admin.Exec(ctx, `SET search_path TO `+s); err != nil {
			return nil, meta, err
		}
	}
	e, closeEnv, err := openEnv(ctx, cfg, admin, h, o, ctr)
	if err != nil {
		return nil, meta, err
	}
	defer closeEnv()
	meta.MeasuredRTTMs = float64(e.rtt.Microseconds()) / 1000
	logf("round trip: added %s, measured %.3f ms (SELECT 1)", o.rtt, meta.MeasuredRTTMs)

	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return nil, meta, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, meta, err
		}
		defer pprof.StopCPUProfile()
	}
	stopProgress := startProgress(stderr)
	defer stopProgress()
	results := make([]*result, len(chosen))
	lats := make([][]time.Duration, len(chosen))
	trips := make([]int64, len(chosen)) // round trips of every strategy's runs, summed
	for i, s := range chosen {
		results[i] = &result{Strategy: s.name, Rows: h.n, Verified: true}
		if isGraph(s.name) {
			results[i].Rows = o.requests * (1 + 2*graphCommits)
			results[i].Requests = o.requests
		}
	}
	for round := 1; round <= o.repeat; round++ {
		for i, s := range chosen {
			r := results[i]
			if !r.Verified {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, meta, err
			}
			label := fmt.Sprintf("round %d/%d %s", round, o.repeat, s.name)
			total, unit := h.n, "rows"
			if isGraph(s.name) {
				total, unit = o.requests, "requests"
			}
			setProgress(label, total, unit)
			if _, err := admin.Exec(ctx, `TRUNCATE commits, authors, repositories`); err != nil {
				return nil, meta, err
			}
			if s.prepare != nil {
				if err := s.prepare(ctx, e); err != nil {
					r.Verified, r.Error = false, "prepare: "+err.Error()
					continue
				}
			}
			e.lat.take()
			before, tripsBefore := ctr.snapshot(), e.roundTrips()
			start := time.Now()
			keys, err := s.run(ctx, e)
			elapsed := time.Since(start).Seconds()
			r.Counts = ctr.snapshot().sub(before)
			if e.proxy != nil {
				r.Counts.RoundTrips = e.roundTrips() - tripsBefore
			}
			if err != nil {
				r.Verified, r.Error = false, err.Error()
				continue
			}
			r.Runs = append(r.Runs, elapsed)
			lats[i] = append(lats[i], e.lat.take()...)
			trips[i] += r.Counts.RoundTrips
			if isGraph(s.name) {
				err = verifyGraph(ctx, admin, o.requests, keys)
			} else {
				err = verify(ctx, admin, h, keys)
			}
			if err != nil {
				r.Verified, r.Error = false, err.Error()
				continue
			}
			logf("%s: %.3fs", label, elapsed)
		}
	}
	for i, r := range results {
		r.Median = median(r.Runs)
		if r.Requests > 0 && len(r.Runs) > 0 {
			r.P50ms = float64(percentile(lats[i], 50).Microseconds()) / 1000
			r.P99ms = float64(percentile(lats[i], 99).Microseconds()) / 1000
			r.RoundTripsPerRequest = float64(trips[i]) / float64(len(r.Runs)*r.Requests)
		}
		extra := ""
		if r.Requests > 0 {
			extra = fmt.Sprintf(", per request p50 %.2f ms p99 %.2f ms, %.2f round trips", r.P50ms, r.P99ms, r.RoundTripsPerRequest)
		}
		logf("%-16s median %.3fs over %d run(s)%s%s", r.Strategy, r.Median, len(r.Runs), extra, map[bool]string{true: "", false: " FAILED: " + r.Error}[r.Verified])
	}
	finish(results)
	meta.PeakRSSMiB = peakRSSMiB()
	return results, meta, nil
}

// openEnv migrates the database cfg points at (through admin, on the same database),
// sets the sequences' INCREMENT to o.alloc, and opens the handles a strategy uses,
// all counting through ctr. closeEnv closes them.
func openEnv(ctx context.Context, cfg *pgx.ConnConfig, admin *pgx.Conn, h *history, o options, ctr *counter) (e *env, closeEnv func(), err error) {
	// Migrations run on a connection without the counter.
	migrateDB := stdlib.OpenDB(*cfg.Copy())
	err = migrations.Up(ctx, migrateDB)
	migrateDB.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	if err := setIncrement(ctx, admin, o.alloc); err != nil {
		return nil, nil, err
	}
	cfg = cfg.Copy()
	var proxy *rttProxy
	if o.rtt > 0 {
		if proxy, err = startRTTProxy(cfg, o.rtt); err != nil {
			return nil, nil, err
		}
		cfg.DialFunc = proxy.dial
	}
	closeProxy := func() {
		if proxy != nil {
			proxy.Close()
		}
	}
	rtt, err := measureRTT(ctx, cfg)
	if err != nil {
		closeProxy()
		return nil, nil, fmt.Errorf("measure the round trip: %w", err)
	}
	cfg.Tracer = ctr
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(2*o.writers + 4)
	sqlDB.SetMaxIdleConns(2*o.writers + 4)
	closeAll := func() { sqlDB.Close(); closeProxy() }
	plain, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	seq, err := openSeqrepo(sqlDB, o.alloc)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	e = &env{h: h, pgxCfg: cfg, plain: plain, seq: seq, batch: o.batch, writers: o.writers, alloc: o.alloc,
		requests: o.requests, lat: &latencies{}, proxy: proxy, rtt: rtt}
	return e, closeAll, nil
}

// setIncrement makes every key sequence's INCREMENT equal the allocation size, and
// updates the configuration marker migration 00003 wrote on it (idgen.Config.Marker),
// which idgen.New checks. The database is seqbench's own and no writer runs yet, so
// nothing has reserved a block under the old INCREMENT.
func setIncrement(ctx context.Context, conn *pgx.Conn, alloc int) error {
	marker := idgen.Config{AllocationSize: alloc}.Marker()
	for _, t := range []string{"repositories", "authors", "commits", "tenants"} {
		sql := fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN id SET INCREMENT BY %d`, pgx.Identifier{t}.Sanitize(), alloc)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("set increment of %s: %w", t, err)
		}
		// regclass's text is the sequence's name, quoted where it needs to be.
		var seq string
		if err := conn.QueryRow(ctx, `SELECT pg_get_serial_sequence($1, 'id')::regclass::text`, t).Scan(&seq); err != nil {
			return fmt.Errorf("find the sequence of %s: %w", t, err)
		}
		if _, err := conn.Exec(ctx, `COMMENT ON SEQUENCE `+seq+` IS '`+strings.ReplaceAll(marker, "'", "''")+`'`); err != nil {
			return fmt.Errorf("mark the sequence of %s: %w", t, err)
		}
	}
	return nil
}

// peakRSSMiB is this process's peak resident set size (VmHWM), or 0 where unknown.
func peakRSSMiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb / 1024
		}
	}
	return 0
}
