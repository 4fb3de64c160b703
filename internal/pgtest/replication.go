//go:build unix

package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// standbyReadyMessage is what a hot standby's postmaster logs once it accepts read-only connections.
	standbyReadyMessage = "database system is ready to accept read-only connections"
	// pairStartTimeout bounds NewPair's start of both servers.
	pairStartTimeout = 2 * time.Minute
	// pollInterval is how often the waits below look again at what they wait for.
	pollInterval = 5 * time.Millisecond
)

// PairOptions configures StartPair. The zero value is a fast, non-durable primary with an asynchronous standby.
type PairOptions struct {
	// Synchronous makes the standby synchronous: the primary runs with synchronous_standby_names = '*', so a
	// commit that wrote WAL returns only once the standby has flushed that WAL. When false the standby is
	// asynchronous: a commit returns once its WAL is flushed on the primary, and a crash of the primary loses
	// whatever the standby had not received.
	Synchronous bool
	// Options are both servers' settings, as for Start, with two differences: synchronous_commit is on unless
	// Options.Settings says otherwise (without it no commit waits for the synchronous standby), and the
	// standby runs with wal_receiver_timeout = 0 unless Options.Settings says otherwise, so that a WAL sender
	// frozen by FreezeWALSender stays frozen until it is thawed or killed instead of being replaced after a
	// minute. synchronous_standby_names belongs to StartPair (see Synchronous) and is rejected.
	Options Options
}

// Pair is a primary Cluster and a hot standby made from it with pg_basebackup -R, streaming its WAL over the
// primary's Unix socket, for tests of what a failover does: FreezeWALSender holds WAL back from the standby,
// KillPrimary crashes the primary, Promote makes the standby the new primary, and DSN reaches whichever of the
// two accepts writes.
//
// Both servers run as Start's do (private directories, Unix sockets only, the "postgres" OS user when running as
// root) and share the system identifier, as a standby and its primary always do. The standby's Cluster is for
// connecting (DSN, SocketDir) and for Stop; its Restart works only once it has been promoted, since before that
// it never logs that it accepts read-write connections.
//
// Pair is safe for concurrent use; its lifecycle methods (FreezeWALSender, ThawWALSender, KillPrimary, Promote,
// Stop) are meant to be called from one goroutine, the test's, while others use the servers.
type Pair struct {
	primary *Cluster
	standby *Cluster

	mu     sync.Mutex // protects frozen; held across no round trip
	frozen []int      // pids of the primary's WAL senders that FreezeWALSender stopped and nothing has resumed yet
}

// StartPair starts a primary (as Start does), makes a standby of it with pg_basebackup -R, starts the standby and
// waits until it streams from the primary (and, with opts.Synchronous, is its synchronous standby). ctx bounds
// only the start. Call Stop to shut both down and remove their directories; NewPair does that for a test.
func StartPair(ctx context.Context, opts PairOptions) (_ *Pair, err error) {
	for name := range opts.Options.Settings {
		if strings.EqualFold(strings.TrimSpace(name), "synchronous_standby_names") {
			return nil, errors.New("pgtest: PairOptions.Options.Settings may not set synchronous_standby_names: " +
				"set PairOptions.Synchronous instead")
		}
	}
	primaryOpts := withDefaults(opts.Options, map[string]string{"synchronous_commit": "on"})
	standbyOpts := withDefaults(opts.Options, map[string]string{"synchronous_commit": "on", "wal_receiver_timeout": "0"})
	if opts.Synchronous {
		// On the primary's command line from the start: a reload could take effect in one backend before the
		// checkpointer tells the others, and the standby, started with its own settings, must not wait for a
		// standby of its own once promoted. Until the standby connects, commits on the primary wait; StartPair
		// commits nothing before then.
		primaryOpts.Settings["synchronous_standby_names"] = "*"
	}
	standbySettings, err := standbyOpts.serverSettings()
	if err != nil {
		return nil, err
	}

	primary, err := start(ctx, primaryOpts, defaultLocator)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = primary.Stop()
		}
	}()
	standby, err := primary.startStandby(ctx, standbySettings)
	if err != nil {
		return nil, err
	}
	p := &Pair{primary: primary, standby: standby}
	defer func() {
		if err != nil {
			_ = standby.Stop()
		}
	}()
	if err := p.waitStreaming(ctx, opts.Synchronous); err != nil {
		return nil, err
	}
	return p, nil
}

// NewPair starts a Pair for tb (see StartPair) and stops it, removing both servers, when tb and its subtests have
// finished, whether they passed or not. A failure to start fails tb with tb.Fatal; it never skips. Like Start, it
// needs the PostgreSQL server binaries (DATABASE_URL does not replace them).
func NewPair(tb testing.TB, opts PairOptions) *Pair {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), pairStartTimeout)
	defer cancel()
	p, err := StartPair(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// withDefaults returns a copy of o whose Settings also hold defaults for the names o.Settings does not set.
func withDefaults(o Options, defaults map[string]string) Options {
	s := make(map[string]string, len(o.Settings)+len(defaults))
	for name, value := range defaults {
		s[name] = value
	}
	for name, value := range o.Settings {
		for d := range defaults {
			if strings.EqualFold(strings.TrimSpace(name), d) {
				delete(s, d)
			}
		}
		s[name] = value
	}
	o.Settings = s
	return o
}

// Primary returns the primary Cluster. After KillPrimary it is dead; only its Stop (which Pair.Stop calls) is
// still useful.
func (p *Pair) Primary() *Cluster { return p.primary }

// Standby returns the standby Cluster: read-only until Promote, the new primary after.
func (p *Pair) Standby() *Cluster { return p.standby }

// DSN returns a multi-host keyword/value connection string for database dbname that reaches whichever of the two
// servers accepts writes: host=<primary socket dir>,<standby socket dir> port=<port>,<port>
// target_session_attrs=read-write, as an application behind a failover manager would use. pgx and libpq try the
// hosts in order and skip one that refuses the connection (a killed primary) or is read-only (a standby not yet
// promoted); while neither accepts writes, connecting fails.
func (p *Pair) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d,%d user=%s dbname=%s sslmode=disable target_session_attrs=read-write",
		quoteDSNValue(p.primary.SocketDir()+","+p.standby.SocketDir()), p.primary.Port(), p.standby.Port(),
		superuser, quoteDSNValue(dbname))
}

// FreezeWALSender stops the primary's WAL sender with SIGSTOP and returns once it has stopped (on Linux, where
// that can be seen; elsewhere once the signal is sent). From then on the standby receives no WAL: on a
// synchronous primary every commit that writes WAL waits (SyncRepWaiters counts them), on an asynchronous one
// commits return and their WAL stays on the primary alone, to be lost if KillPrimary comes next. ThawWALSender
// resumes it; KillPrimary kills it with the rest of the primary.
func (p *Pair) FreezeWALSender(ctx context.Context) error {
	var pids []int
	err := withConn(ctx, p.primary.DSN("postgres"), func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_replication")
		if err != nil {
			return err
		}
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	})
	if err != nil {
		return fmt.Errorf("pgtest: freeze WAL sender: %w", err)
	}
	if len(pids) == 0 {
		return errors.New("pgtest: freeze WAL sender: the primary has no WAL sender (pg_stat_replication is empty): " +
			"is the standby connected?")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("pgtest: freeze WAL sender %d: %w", pid, err)
		}
		p.mu.Lock()
		p.frozen = append(p.frozen, pid)
		p.mu.Unlock()
		if err := waitStopped(ctx, pid); err != nil {
			return fmt.Errorf("pgtest: freeze WAL sender: %w", err)
		}
	}
	return nil
}

// ThawWALSender resumes, with SIGCONT, the WAL senders FreezeWALSender stopped. It does nothing when none is
// frozen.
func (p *Pair) ThawWALSender() error {
	p.mu.Lock()
	frozen := p.frozen
	p.frozen = nil
	p.mu.Unlock()
	var errs []error
	for _, pid := range frozen {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("pgtest: thaw WAL sender %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// KillPrimary crashes the primary (see Cluster.Kill), frozen WAL sender included: WAL the standby has not
// received is lost to it, and open connections to the primary break. It returns once every process of the
// primary has exited, or ctx has ended.
func (p *Pair) KillPrimary(ctx context.Context) error {
	p.mu.Lock()
	frozen := p.frozen
	p.frozen = nil
	p.mu.Unlock()
	return p.primary.kill(ctx, frozen)
}

// Promote promotes the standby with pg_ctl promote and waits, bounded by ctx, until it has left recovery
// (pg_is_in_recovery() is false) and so accepts writes, on its own DSN and through DSN. Kill the primary first
// (KillPrimary) unless the test wants two primaries.
func (p *Pair) Promote(ctx context.Context) error {
	c := p.standby
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(filepath.Dir(c.postgres), "pg_ctl"), "promote", "-W", "-D", c.dataDir)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = c.sysProcAttr() // pg_ctl refuses to run as root, as initdb does
	if err := runBounded(ctx, cmd); err != nil {
		return fmt.Errorf("pgtest: pg_ctl promote: %w:\n%s", err, bytes.TrimSpace(out.Bytes()))
	}
	var last error // the latest look's error: connecting may fail for a moment while recovery ends
	err := pollUntil(ctx, func() (bool, error) {
		var inRecovery bool
		last = withConn(ctx, c.DSN("postgres"), func(conn *pgx.Conn) error {
			return conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		})
		return last == nil && !inRecovery, nil
	})
	if err != nil {
		return fmt.Errorf("pgtest: waiting for the promoted standby to accept writes: %w (last look: %v); end of its log:\n%s",
			err, last, c.logTail())
	}
	return nil
}

// CatchUp waits, bounded by ctx, until the standby has replayed all the WAL the primary had written when CatchUp
// was called, so that what was committed on the primary before can be read on the standby, and survives a
// KillPrimary even with an asynchronous standby.
func (p *Pair) CatchUp(ctx context.Context) error {
	var lsn string
	err := withConn(ctx, p.primary.DSN("postgres"), func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	})
	if err != nil {
		return fmt.Errorf("pgtest: catch up: reading the primary's WAL position: %w", err)
	}
	err = withConn(ctx, p.standby.DSN("postgres"), func(conn *pgx.Conn) error {
		return pollUntil(ctx, func() (bool, error) {
			var done bool
			err := conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done)
			return done, err
		})
	})
	if err != nil {
		return fmt.Errorf("pgtest: waiting for the standby to replay the primary's WAL up to %s: %w", lsn, err)
	}
	return nil
}

// SyncRepWaiters returns the number of the primary's client backends whose commit waits for the synchronous
// standby to confirm it (wait event IPC/SyncRep), for a test to see that a session it started is stuck there.
// Autovacuum workers, whose commits wait too, are not counted.
func (p *Pair) SyncRepWaiters(ctx context.Context) (int, error) {
	var n int
	err := withConn(ctx, p.primary.DSN("postgres"), func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx,
			`SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND wait_event_type = 'IPC' AND wait_event = 'SyncRep'`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("pgtest: counting the backends that wait for the synchronous standby: %w", err)
	}
	return n, nil
}

// Stop resumes a frozen WAL sender, stops both servers and removes their directories, as Cluster.Stop does. It
// is idempotent.
func (p *Pair) Stop() error {
	thawErr := p.ThawWALSender()
	return errors.Join(thawErr, p.primary.Stop(), p.standby.Stop())
}

// waitStreaming waits, bounded by ctx, until the primary has a WAL sender streaming to the standby, a
// synchronous one when synchronous.
func (p *Pair) waitStreaming(ctx context.Context, synchronous bool) error {
	err := withConn(ctx, p.primary.DSN("postgres"), func(conn *pgx.Conn) error {
		return pollUntil(ctx, func() (bool, error) {
			var ok bool
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_replication
WHERE state = 'streaming' AND (NOT $1 OR sync_state = 'sync'))`, synchronous).Scan(&ok)
			return ok, err
		})
	})
	if err != nil {
		return fmt.Errorf("pgtest: waiting for the standby to stream from the primary: %w; end of the standby's log:\n%s",
			err, p.standby.logTail())
	}
	return nil
}

// startStandby makes a standby of c in a new private directory with pg_basebackup -R and starts it with settings,
// returning once it accepts read-only connections.
func (c *Cluster) startStandby(ctx context.Context, settings map[string]string) (_ *Cluster, err error) {
	dir, cred, err := privateDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = removeClusterDir(dir)
		}
	}()
	s := &Cluster{
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		postgres: c.postgres,
		cred:     cred,
	}
	s.args = postmasterArgs(s.dataDir, s.dir, settings)

	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(filepath.Dir(c.postgres), "pg_basebackup"),
		"-D", s.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-d", c.DSN("postgres"))
	cmd.Dir = s.dir
	cmd.Env = serverEnv()
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = s.sysProcAttr() // the copy belongs to the server's OS user, as the standby requires
	if err := runBounded(ctx, cmd); err != nil {
		return nil, fmt.Errorf("pgtest: pg_basebackup: %w:\n%s", err, bytes.TrimSpace(out.Bytes()))
	}

	pm := exec.Command(s.postgres, s.args...)
	pm.Dir = s.dir
	pm.Env = serverEnv()
	pm.SysProcAttr = s.sysProcAttr()
	d, err := startDaemon(ctx, pm, filepath.Join(s.dir, "postgres.log"), s.cred, standbyReadyMessage, nil)
	if err != nil {
		return nil, fmt.Errorf("pgtest: standby: %w", err)
	}
	s.pm = d
	return s, nil
}

// Kill ends the server at once, as a crash of its machine would: the postmaster is stopped (SIGSTOP) so that it
// starts no process and restarts nothing, then it and every process running in its data directory get SIGKILL.
// Nothing is shut down cleanly: open connections break without an answer, WAL not yet sent to a standby is
// lost to it, and a commit waiting for a synchronous standby is never acknowledged. Kill returns once every
// process has exited, or ctx has ended. Restart then starts the server again with crash recovery; Stop removes
// it. (Outside Linux only the postmaster is killed; its other processes exit when they notice.)
func (c *Cluster) Kill(ctx context.Context) error { return c.kill(ctx, nil) }

// kill is Kill, also killing the processes extra (the primary's frozen WAL senders, which cannot notice that
// their postmaster died).
func (c *Cluster) kill(ctx context.Context, extra []int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errStopped
	}
	pm := c.pm
	if pm == nil {
		return nil
	}
	c.pm = nil
	_ = pm.proc.Signal(syscall.SIGSTOP)
	if err := waitStopped(ctx, pm.proc.Pid); err != nil {
		_ = pm.proc.Signal(syscall.SIGKILL)
		return fmt.Errorf("pgtest: kill: %w", err)
	}
	for _, pid := range append(processesIn(c.dataDir), extra...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = pm.proc.Signal(syscall.SIGKILL)
	select {
	case <-pm.exited:
	case <-ctx.Done():
		return fmt.Errorf("pgtest: kill: waiting for the postmaster to exit: %w", context.Cause(ctx))
	}
	if err := pm.waitDrained(ctx); err != nil {
		return fmt.Errorf("pgtest: kill: waiting for the server's processes to exit: %w", err)
	}
	return nil
}

// logTail returns the end of the running server's log, or "" when none runs.
func (c *Cluster) logTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pm == nil {
		return ""
	}
	return c.pm.logTail()
}

// runBounded runs cmd (whose SysProcAttr puts it in a process group of its own) to completion, killing its
// process group if ctx ends first.
func runBounded(ctx context.Context, cmd *exec.Cmd) error {
	wait, err := startLocked(cmd)
	if err != nil {
		return err
	}
	select {
	case err := <-wait:
		return err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-wait
		return context.Cause(ctx)
	}
}

// withConn runs f on a new connection to dsn, closing it afterwards.
func withConn(ctx context.Context, dsn string, f func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return f(conn)
}

// pollUntil calls done until it reports true or an error, looking again every pollInterval, bounded by ctx.
func pollUntil(ctx context.Context, done func() (bool, error)) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// waitStopped waits, bounded by ctx, until process pid is stopped by a signal or gone; where that cannot be
// seen (outside Linux) it returns at once.
func waitStopped(ctx context.Context, pid int) error {
	err := pollUntil(ctx, func() (bool, error) { return stoppedOrGone(pid), nil })
	if err != nil {
		return fmt.Errorf("process %d did not stop: %w", pid, err)
	}
	return nil
}
