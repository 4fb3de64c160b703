//go:build unix

package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// superuser is the role initdb creates and every DSN connects as.
	superuser = "postgres"
	// port only names the socket file (.s.PGSQL.<port>): the server listens on no TCP address and its socket
	// directory is private, so every cluster can use the standard port without colliding.
	port = 5432
	// readyMessage is what the postmaster logs once it accepts connections (lc_messages=C keeps it in English).
	readyMessage = "database system is ready to accept connections"
	// stopTimeout bounds the fast shutdown in Stop before the postmaster is killed.
	stopTimeout = 30 * time.Second
	// drainTimeout bounds the wait, after the postmaster has exited, for its children to exit too.
	drainTimeout = 10 * time.Second
	// logTailLines is how many server log lines an error from Start or Restart quotes.
	logTailLines = 30
)

// errStopped is returned by Restart after Stop.
var errStopped = errors.New("pgtest: cluster is stopped")

// Options configures Start. The zero value is a fast, non-durable server for tests.
type Options struct {
	// Durable keeps PostgreSQL's default durability settings. When false (the default, for tests)
	// fsync, synchronous_commit and full_page_writes are turned off for speed.
	Durable bool
	// Settings are extra server settings, passed as -c name=value (e.g. "max_connections": "200").
	// They override Start's defaults (max_connections=300, dynamic_shared_memory_type=mmap, lc_messages=C and
	// the durability settings above). port, listen_addresses, unix_socket_directories and logging_collector
	// belong to Start and are rejected.
	Settings map[string]string
}

// reservedSettings are the server settings Start owns, with the reason a caller may not change them.
var reservedSettings = map[string]string{
	"port":                    "it names the socket file that DSN points at",
	"listen_addresses":        "the server listens only on its private Unix socket",
	"unix_socket_directories": "the socket lives in the cluster's private directory",
	"logging_collector":       "Start reads the server's stderr to learn when it is ready",
}

// serverSettings returns the settings the postmaster is started with: Start's defaults, then opts.Settings.
// This is the one place Options are checked.
func (o Options) serverSettings() (map[string]string, error) {
	s := map[string]string{
		"listen_addresses": "",
		"lc_messages":      "C",
		// Many tests, and tests running in several processes, share one server.
		"max_connections": "300",
		// Dynamic shared memory in files under the data directory instead of /dev/shm, so a killed server
		// leaves nothing behind outside the cluster directory that Stop and the stale-directory sweep remove.
		"dynamic_shared_memory_type": "mmap",
	}
	if !o.Durable {
		s["fsync"] = "off"
		s["synchronous_commit"] = "off"
		s["full_page_writes"] = "off"
	}
	for name, value := range o.Settings {
		name = strings.ToLower(strings.TrimSpace(name))
		if reason, ok := reservedSettings[name]; ok {
			return nil, fmt.Errorf("pgtest: Options.Settings may not set %s: %s", name, reason)
		}
		if name == "" {
			return nil, errors.New("pgtest: Options.Settings has an empty setting name")
		}
		s[name] = value
	}
	return s, nil
}

// Cluster is a running PostgreSQL server in a private temporary directory, listening only on a Unix socket
// (listen_addresses is empty: no TCP), superuser "postgres", trust auth.
//
// Cluster is safe for concurrent use: DSN, SocketDir and Port may be called at any time, and Restart and Stop
// are serialised, one lifecycle change at a time.
type Cluster struct {
	dir      string              // private temporary directory: socket, data directory, owner file, log
	dataDir  string              // dir/data
	postgres string              // path of the postgres binary
	args     []string            // postmaster arguments, fixed at Start
	cred     *syscall.Credential // the OS user the server runs as; nil to run as ourselves

	// mu serialises Restart and Stop and protects the following fields. It is held for the whole of a
	// shutdown and start (long operations are the point of it); DSN, SocketDir and Port never take it.
	mu      sync.Mutex
	pm      *daemon // the running server; nil once Stop ran or when a Restart failed
	stopped bool    // Stop has run
}

// Start creates a cluster in a new private temporary directory with initdb, starts PostgreSQL on it and waits
// until the server accepts connections. ctx bounds only the start (initdb and the wait for readiness): once
// Start has returned, cancelling ctx does not affect the server. Call Stop to shut it down and remove the
// directory.
//
// When running as root (initdb refuses to), the server runs as the "postgres" OS user. The server is killed
// if the process that started it dies without calling Stop, and the next Start, in any process, removes
// directories left behind by dead processes.
//
// The server binaries are found on PATH, else in `pg_config --bindir`, else in the highest version under
// /usr/lib/postgresql/*/bin; without them Start fails with an error that says how to install them.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	return start(ctx, opts, defaultLocator)
}

// start is Start with the binary discovery injected.
func start(ctx context.Context, opts Options, loc locator) (_ *Cluster, err error) {
	settings, err := opts.serverSettings()
	if err != nil {
		return nil, err
	}
	bindir, err := loc.bindir()
	if err != nil {
		return nil, err
	}
	dir, cred, err := privateDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = removeClusterDir(dir)
		}
	}()

	c := &Cluster{
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		postgres: filepath.Join(bindir, "postgres"),
		cred:     cred,
	}
	c.args = postmasterArgs(c.dataDir, c.dir, settings)
	if err := c.initdb(ctx, filepath.Join(bindir, "initdb")); err != nil {
		return nil, err
	}
	pm, err := c.startPostmaster(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c.pm = pm
	return c, nil
}

// postmasterArgs returns the postgres command line: data directory, socket directory, port, then the settings
// in name order.
func postmasterArgs(dataDir, socketDir string, settings map[string]string) []string {
	args := []string{"-D", dataDir, "-k", socketDir, "-c", "port=" + strconv.Itoa(port)}
	names := make([]string, 0, len(settings))
	for name := range settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "-c", name+"="+settings[name])
	}
	return args
}

// DSN returns a keyword/value connection string for database dbname on this cluster, which pgx and libpq
// understand: host=<socket dir> port=<port> user=postgres dbname=<dbname> sslmode=disable.
func (c *Cluster) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		quoteDSNValue(c.dir), port, superuser, quoteDSNValue(dbname))
}

// SocketDir returns the directory holding the server's Unix socket (the DSN's host).
func (c *Cluster) SocketDir() string { return c.dir }

// Port returns the server's port, which names its socket file; the server listens on no TCP address.
func (c *Cluster) Port() int { return port }

// Restart shuts the server down (fast shutdown: open sessions are terminated) and starts it again on the same
// directory, socket and port, like pg_ctl restart -m fast. Existing connections break; new ones work once
// Restart has returned. ctx bounds both halves: when it ends during the shutdown the server is killed, and
// when it ends before the new server is ready the start is abandoned. A failed Restart leaves the cluster
// stopped but not removed: Restart may be tried again, and Stop still cleans up.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errStopped
	}
	if c.pm != nil {
		pm := c.pm
		c.pm = nil
		if err := pm.shutdown(ctx, syscall.SIGINT); err != nil {
			return fmt.Errorf("pgtest: restart: %w", err)
		}
		// A new postmaster refuses to start while children of the old one still hold its shared memory.
		if err := pm.waitDrained(ctx); err != nil {
			return fmt.Errorf("pgtest: restart: waiting for the old server's processes to exit: %w", err)
		}
	}
	pm, err := c.startPostmaster(ctx)
	if err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	c.pm = pm
	return nil
}

// Stop shuts the server down (fast shutdown, then SIGKILL if it has not exited within 30 seconds) and removes
// the cluster's directory. Stop is idempotent: later calls do nothing and return nil.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	if pm := c.pm; pm != nil {
		c.pm = nil
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		_ = pm.shutdown(ctx, syscall.SIGINT) // a timeout only means the server was killed, which is still stopped
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), drainTimeout)
		_ = pm.waitDrained(ctx) // best effort: children of a killed server exit on their own
		cancel()
	}
	if err := removeClusterDir(c.dir); err != nil {
		return fmt.Errorf("pgtest: stop: %w", err)
	}
	return nil
}

// initdb creates the data directory.
func (c *Cluster) initdb(ctx context.Context, initdb string) error {
	var out bytes.Buffer
	cmd := exec.Command(initdb, "-D", c.dataDir, "-U", superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = c.sysProcAttr()
	wait, err := startLocked(cmd)
	if err != nil {
		return fmt.Errorf("pgtest: starting initdb: %w", err)
	}
	select {
	case err = <-wait:
	case <-ctx.Done():
		// initdb runs the bootstrap backend as its child, in initdb's own process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-wait
		return fmt.Errorf("pgtest: initdb: %w", context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %w:\n%s", err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// startPostmaster starts the server and waits, bounded by ctx, until it accepts connections. On failure the
// server has exited and the error, which the caller prefixes, quotes the end of its log.
func (c *Cluster) startPostmaster(ctx context.Context) (*daemon, error) {
	cmd := exec.Command(c.postgres, c.args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = c.sysProcAttr()
	return startDaemon(ctx, cmd, filepath.Join(c.dir, "postgres.log"), c.cred, readyMessage, nil)
}

// startDaemon starts cmd (a postgres or pgbouncer whose Dir, Env and SysProcAttr are set), copies its output to
// logPath, and waits, bounded by ctx, until the output shows ready. onLine, unless nil, sees every line of the
// output, from one goroutine. On failure the process has exited and the error quotes the end of its output.
func startDaemon(ctx context.Context, cmd *exec.Cmd, logPath string, cred *syscall.Credential, ready string,
	onLine func(string)) (*daemon, error) {
	name := filepath.Base(cmd.Path)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if err := chown(logFile.Name(), cred); err != nil {
		logFile.Close()
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stdout = w
	cmd.Stderr = w
	wait, err := startLocked(cmd)
	w.Close() // the process and its children hold the write end now
	if err != nil {
		r.Close()
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d := &daemon{
		proc:         cmd.Process,
		readyMessage: ready,
		onLine:       onLine,
		ready:        make(chan struct{}),
		exited:       make(chan struct{}),
		drained:      make(chan struct{}),
	}
	go func() {
		d.exitErr = <-wait
		close(d.exited)
	}()
	go d.readLog(r, logFile)

	select {
	case <-d.ready:
		return d, nil
	case <-d.exited:
		// Let the reader catch the last lines before quoting them; the process's children are gone or going.
		drainCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		_ = d.waitDrained(drainCtx)
		cancel()
		return nil, fmt.Errorf("%s exited before it was ready (%v); end of its log:\n%s", name, d.exitErr, d.logTail())
	case <-ctx.Done():
		_ = d.proc.Signal(syscall.SIGKILL)
		<-d.exited
		return nil, fmt.Errorf("waiting for %s to be ready: %w; end of its log:\n%s", name, context.Cause(ctx), d.logTail())
	}
}

// sysProcAttr returns the attributes for initdb and the postmaster: the server's OS user, a process group of
// their own (a terminal's ^C reaches only the test process, which then stops the server), and death with the
// starting thread (see startLocked).
func (c *Cluster) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	setParentDeathSignal(attr)
	return attr
}

// serverEnv is the environment for initdb and postgres: ours, without PG* variables (PGDATA, PGPORT and
// friends must not redirect them), in the C locale so messages and defaults do not depend on the host.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// startLocked starts cmd from a goroutine locked to its OS thread and returns a channel that receives the
// result of cmd.Wait. The parent-death signal (Pdeathsig) fires when the thread that forked the child exits,
// not when the process does, and the Go runtime retires threads whose goroutine exits while locked. So the
// goroutine stays locked and alive, in cmd.Wait, for exactly as long as the child lives; the thread is retired
// only after the child has exited. If the whole process dies, the thread dies with it and the child is killed.
func startLocked(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, on purpose: see above
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waited, nil
}

// daemon is one run of a server process: a postmaster or a pgbouncer.
type daemon struct {
	proc         *os.Process
	readyMessage string        // what the process logs once it accepts connections
	onLine       func(string)  // called with every line of the log, from readLog; may be nil
	ready        chan struct{} // closed when the log says the server accepts connections
	exited       chan struct{} // closed when the process has exited; exitErr is set before
	exitErr      error
	drained      chan struct{} // closed when every process holding the log pipe (it and its children) is gone

	mu   sync.Mutex // protects tail
	tail []string   // the last logTailLines lines of the log
}

// readLog copies the server's output to logFile, keeps its tail for error messages, and closes ready when
// the readiness message appears. It returns when the process and all its children have closed the pipe.
func (d *daemon) readLog(r, logFile *os.File) {
	defer close(d.drained)
	defer r.Close()
	defer logFile.Close()
	br := bufio.NewReader(r)
	ready := false
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			_, _ = logFile.WriteString(line)
			d.mu.Lock()
			d.tail = append(d.tail, strings.TrimRight(line, "\n"))
			if len(d.tail) > logTailLines {
				d.tail = d.tail[len(d.tail)-logTailLines:]
			}
			d.mu.Unlock()
			if d.onLine != nil {
				d.onLine(line)
			}
			if !ready && strings.Contains(line, d.readyMessage) {
				ready = true
				close(d.ready)
			}
		}
		if err != nil {
			return
		}
	}
}

func (d *daemon) logTail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.tail, "\n")
}

// shutdown sends sig (SIGINT is a postmaster's fast shutdown, SIGTERM a pgbouncer's) and waits for the process
// to exit. If ctx ends first, the process is killed and the error says so; shutdown returns only after the
// process has exited.
func (d *daemon) shutdown(ctx context.Context, sig syscall.Signal) error {
	_ = d.proc.Signal(sig) // fails only when it has already exited
	select {
	case <-d.exited:
		return nil
	case <-ctx.Done():
		_ = d.proc.Signal(syscall.SIGKILL)
		<-d.exited
		return fmt.Errorf("fast shutdown did not finish, server killed: %w", context.Cause(ctx))
	}
}

// waitDrained waits, bounded by ctx, until the process's children have exited too. After a fast shutdown
// that is immediate; after a kill they notice the postmaster's death and exit on their own.
func (d *daemon) waitDrained(ctx context.Context) error {
	select {
	case <-d.drained:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// pid returns the postmaster's process id, or 0 when no server is running.
func (c *Cluster) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pm == nil {
		return 0
	}
	return c.pm.proc.Pid
}

// quoteDSNValue quotes a keyword/value connection string value when it needs it.
func quoteDSNValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\v\f'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
