//go:build unix

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// bouncerPort names PgBouncer's socket file (.s.PGSQL.6432): like the cluster's, it is alone in its directory.
	bouncerPort = 6432
	// bouncerPidFile, in a PgBouncer directory, is pgbouncer's pid file, which the stale-directory sweep reads.
	bouncerPidFile = "pgbouncer.pid"
	// bouncerReadyMessage is what pgbouncer logs once it listens.
	bouncerReadyMessage = "process up: "
	// bouncerStopTimeout bounds pgbouncer's shutdown before it is killed: it holds nothing worth waiting for.
	bouncerStopTimeout = 5 * time.Second
	// defaultPoolSize is PgBouncerOptions.PoolSize's default.
	defaultPoolSize = 20

	// PgBouncerExecMode is the pgx query exec mode (default_query_exec_mode) of the DSNs PgBouncer.DSN returns:
	// the one that works for seqrepo through PgBouncer 1.18 in transaction pooling mode.
	//
	// In that mode PgBouncer may give each transaction, and each statement outside one, a different server
	// connection, and before 1.21 it does not carry prepared statements from one to another. So pgx's default,
	// cache_statement, which prepares named statements, fails with "prepared statement … already exists" (42P05)
	// or "… does not exist" (26000), and so does database/sql's Prepare in every mode, and with it GORM's
	// PrepareStmt. describe_exec binds, in a second round trip, the unnamed statement it described in the first,
	// which by then may be on another server connection. exec and simple_protocol send self-contained single
	// round trips and take the parameters' types from the Go values: they work too (seqrepo sends unnest's
	// arrays as text with a cast, which needs no server-side types), but pgx itself cannot encode an array given
	// as []any in them. cache_describe describes a statement once per client connection,
	// with the unnamed statement, then runs it as one self-contained Parse/Bind/Execute with the described
	// parameter types: it works. Like cache_statement, it assumes that a cached statement's tables do not change
	// shape under a running client. TestPgBouncerExecModes shows each of these.
	PgBouncerExecMode = "cache_describe"
)

// errNoPgBouncer is returned by StartPgBouncer when no pgbouncer binary is found.
var errNoPgBouncer = errors.New("pgtest: no pgbouncer binary found on PATH, in /usr/sbin or in /usr/local/sbin: " +
	"install PgBouncer (Debian/Ubuntu: apt-get install pgbouncer)")

// PgBouncerOptions configures StartPgBouncer. The zero value is fine.
type PgBouncerOptions struct {
	// PoolSize is the number of server connections PgBouncer opens per database and user (default_pool_size).
	// 0 means 20.
	PoolSize int
}

// PgBouncer is a running PgBouncer in transaction pooling mode, in front of one PostgreSQL server, in a private
// temporary directory, listening only on a Unix socket there (no TCP). Every database on the server is reachable
// through it under its own name (a wildcard database entry), and clients log in without a password (auth_type
// trust) as the server DSN's user.
//
// PgBouncer is safe for concurrent use: DSN, SocketDir, Port and Version may be called at any time, and Stop is
// idempotent.
type PgBouncer struct {
	dir     string // private temporary directory: config, auth file, pid file, socket, log
	user    string // the server DSN's user, which clients log in as
	version string // e.g. "1.18.0"

	mu      sync.Mutex // serialises Stop and protects the following
	d       *daemon    // the running pgbouncer; nil once Stop ran
	stopped bool

	loginsMu sync.Mutex     // protects logins; held only to count
	logins   map[string]int // client logins pgbouncer logged, by database
}

// loginPattern matches the line pgbouncer logs (log_connections) when a client logs in.
var loginPattern = regexp.MustCompile(` login attempt: db=(\S+) user=`)

// StartPgBouncer starts PgBouncer in transaction pooling mode in front of the server serverDSN names (its host,
// a Unix socket directory or a host name, port, user and password; its database does not matter), in a new
// private temporary directory, and waits until it listens. ctx bounds only the start. Call Stop to shut it down
// and remove the directory.
//
// Like Start, when running as root (pgbouncer refuses to) it runs pgbouncer as the "postgres" OS user; the
// process is killed if the process that started it dies without calling Stop, and the next Start or
// StartPgBouncer, in any process, removes directories left behind by dead processes.
//
// The pgbouncer binary is found on PATH, else in /usr/sbin or /usr/local/sbin; without it StartPgBouncer fails
// with an error that says how to install it.
func StartPgBouncer(ctx context.Context, serverDSN string, opts PgBouncerOptions) (_ *PgBouncer, err error) {
	if opts.PoolSize < 0 {
		return nil, fmt.Errorf("pgtest: PgBouncerOptions.PoolSize is %d, want 0 (the default) or more", opts.PoolSize)
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = defaultPoolSize
	}
	server, err := pgconn.ParseConfig(serverDSN)
	if err != nil {
		return nil, fmt.Errorf("pgtest: PgBouncer: parsing the server DSN: %w", err)
	}
	bin, err := pgbouncerBinary()
	if err != nil {
		return nil, err
	}
	version, err := pgbouncerVersion(ctx, bin)
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

	b := &PgBouncer{dir: dir, user: server.User, version: version, logins: make(map[string]int)}
	files := map[string]string{
		"pgbouncer.ini": bouncerConfig(dir, server, opts, version),
		// auth_type trust still wants every user listed; the password is what pgbouncer logs in to the server with.
		"userlist.txt": quoteAuthFileValue(server.User) + " " + quoteAuthFileValue(server.Password) + "\n",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("pgtest: PgBouncer: %w", err)
		}
		if err := chown(path, cred); err != nil {
			return nil, fmt.Errorf("pgtest: PgBouncer: %w", err)
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir // the sweep recognises a stale pgbouncer by its working directory
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	setParentDeathSignal(cmd.SysProcAttr)
	d, err := startDaemon(ctx, cmd, filepath.Join(dir, "pgbouncer.log"), cred, bouncerReadyMessage, b.countLogin)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	b.d = d
	return b, nil
}

// bouncerConfig returns pgbouncer.ini for a PgBouncer in dir in front of server.
func bouncerConfig(dir string, server *pgconn.Config, opts PgBouncerOptions, version string) string {
	target := "host=" + quoteBouncerValue(server.Host) + " port=" + strconv.Itoa(int(server.Port))
	lines := []string{
		"[databases]",
		"* = " + target,
		"",
		"[pgbouncer]",
		"pool_mode = transaction",
		"listen_addr =", // no TCP
		"listen_port = " + strconv.Itoa(bouncerPort),
		"unix_socket_dir = " + dir,
		"auth_type = trust",
		"auth_file = " + filepath.Join(dir, "userlist.txt"),
		"pidfile = " + filepath.Join(dir, bouncerPidFile),
		"admin_users = " + server.User,
		"default_pool_size = " + strconv.Itoa(opts.PoolSize),
		"max_client_conn = 1000",
		// A failed server login (a database dropped a moment ago, say) blocks its pool this long: keep it short.
		"server_login_retry = 1",
		"log_connections = 1", // Logins counts these lines
		"log_disconnections = 0",
	}
	if !strings.HasPrefix(server.Host, "/") {
		lines = append(lines, "server_tls_sslmode = prefer")
	}
	if compareVersions(parseVersion(version), []int{1, 21}) >= 0 {
		// The tests are about PgBouncer without prepared statement support (Debian 12's 1.18); newer ones turn
		// it off with this setting, which older ones reject.
		lines = append(lines, "max_prepared_statements = 0")
	}
	return strings.Join(lines, "\n") + "\n"
}

// DSN returns a keyword/value connection string for database dbname through this PgBouncer, for pgx and libpq:
// host=<socket dir> port=6432 user=<server user> dbname=<dbname> sslmode=disable
// default_query_exec_mode=cache_describe (see PgBouncerExecMode). libpq rejects that last keyword: build a libpq
// client's connection string from SocketDir and Port.
func (b *PgBouncer) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable default_query_exec_mode=%s",
		quoteDSNValue(b.dir), bouncerPort, quoteDSNValue(b.user), quoteDSNValue(dbname), PgBouncerExecMode)
}

// SocketDir returns the directory holding PgBouncer's Unix socket (the DSN's host).
func (b *PgBouncer) SocketDir() string { return b.dir }

// Port returns PgBouncer's port, which names its socket file; it listens on no TCP address.
func (b *PgBouncer) Port() int { return bouncerPort }

// Version returns the version of the pgbouncer binary, e.g. "1.18.0".
func (b *PgBouncer) Version() string { return b.version }

// Logins returns how many client logins to database dbname PgBouncer has logged so far: evidence that a client
// went through it. The count lags PgBouncer by the time its log takes to be read; after Stop it is final.
func (b *PgBouncer) Logins(dbname string) int {
	b.loginsMu.Lock()
	defer b.loginsMu.Unlock()
	return b.logins[dbname]
}

// countLogin counts the client login a line of pgbouncer's log reports, if it reports one.
func (b *PgBouncer) countLogin(line string) {
	if m := loginPattern.FindStringSubmatch(line); m != nil {
		b.loginsMu.Lock()
		b.logins[m[1]]++
		b.loginsMu.Unlock()
	}
}

// Stop shuts PgBouncer down (SIGTERM, which is an immediate shutdown in PgBouncer 1.18, then SIGKILL if it has
// not exited within 5 seconds), waits until its log has been read, and removes its directory. Open client connections break. Stop is idempotent:
// later calls do nothing and return nil.
func (b *PgBouncer) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil
	}
	b.stopped = true
	if d := b.d; d != nil {
		b.d = nil
		ctx, cancel := context.WithTimeout(context.Background(), bouncerStopTimeout)
		_ = d.shutdown(ctx, syscall.SIGTERM) // a timeout only means it was killed, which is still stopped
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), drainTimeout)
		_ = d.waitDrained(ctx)
		cancel()
	}
	if err := removeClusterDir(b.dir); err != nil {
		return fmt.Errorf("pgtest: stopping PgBouncer: %w", err)
	}
	return nil
}

// pid returns pgbouncer's process id, or 0 once it is stopped.
func (b *PgBouncer) pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.d == nil {
		return 0
	}
	return b.d.proc.Pid
}

// pgbouncerBinary finds pgbouncer: on PATH, else where Debian and source installs put it (sbin, often not on
// an ordinary user's PATH).
// pgbouncerBinary finds the pgbouncer program; tests replace it to simulate its absence.
var pgbouncerBinary = findPgBouncer

func findPgBouncer() (string, error) {
	if path, err := exec.LookPath("pgbouncer"); err == nil {
		return path, nil
	}
	for _, path := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"} {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return path, nil
		}
	}
	return "", errNoPgBouncer
}

// pgbouncerVersion runs pgbouncer --version, whose first line is "PgBouncer 1.18.0".
func pgbouncerVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pgtest: %s --version: %w", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(first), "PgBouncer ")
	if !ok {
		return "", fmt.Errorf("pgtest: %s --version printed %q, want \"PgBouncer <version>\"", bin, first)
	}
	return v, nil
}

// quoteAuthFileValue quotes s for a PgBouncer auth_file line: in double quotes, a double quote doubled.
func quoteAuthFileValue(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteBouncerValue quotes a value of a PgBouncer [databases] connection string when it needs it: in single
// quotes, a single quote doubled.
func quoteBouncerValue(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'\\") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
