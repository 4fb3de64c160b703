//go:build unix

package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// sharedStartTimeout bounds starting the shared ephemeral cluster.
	sharedStartTimeout = 2 * time.Minute
	// dropTimeout bounds dropping databases in cleanups and in Run.
	dropTimeout = time.Minute
)

// shared is the test process's shared server, used by Run, NewDatabase, CreateDatabase and Server.
var shared = &sharedServer{
	databaseURL:      func() string { return os.Getenv("DATABASE_URL") },
	throughPgBouncer: ThroughPgBouncer,
	locate:           defaultLocator,
	report:           os.Stdout,
}

// PgBouncerEnv is the environment variable that makes a test process reach its databases through PgBouncer:
// when it is "1", NewDatabase and CreateDatabase return DSNs through a PgBouncer in transaction pooling mode
// that pgtest starts in front of the shared server (see NewDatabase). RerunThroughPgBouncer sets it.
const PgBouncerEnv = "SEQREPO_TEST_PGBOUNCER"

// ThroughPgBouncer reports whether this test process reaches its databases through PgBouncer (PgBouncerEnv=1).
func ThroughPgBouncer() bool { return os.Getenv(PgBouncerEnv) == "1" }

// Run is for TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
// It runs the Setup functions among opts, in order, then the tests, then (also when tests fail) drops the
// databases and templates that NewDatabase and CreateDatabase created and did not drop or deliberately keep,
// and stops the shared ephemeral cluster, and the PgBouncer in front of it, if they were started. A setup or
// cleanup failure is printed and turns a passing exit code into 1; when a setup fails no test runs.
//
// Through PgBouncer (see ThroughPgBouncer), Run also prints, after the tests, how many of the databases handed
// out through PgBouncer it served, a line RerunThroughPgBouncer looks for:
//
//	pgtest: PgBouncer 1.18.0 (transaction pooling) served 41 of 41 databases handed out through it
//
// Without Run the tests still work; the shared cluster then dies with the test process and the next Start
// removes its directory.
func Run(m *testing.M, opts ...RunOption) (code int) {
	var cfg runConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	defer func() {
		if err := shared.close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}()
	for _, setup := range cfg.setups {
		if err := setup(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: setup before the tests: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// RunOption configures Run.
type RunOption func(*runConfig)

type runConfig struct {
	setups []func(ctx context.Context) error
}

// Setup makes Run call f before the tests, for what tests cannot do for themselves, such as creating the
// database that Example functions, which get no testing.TB, share:
//
//	var exampleDSN string
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Run(m, pgtest.Setup(func(ctx context.Context) (err error) {
//			exampleDSN, err = pgtest.CreateDatabase(ctx, migrated)
//			return err
//		})))
//	}
//
// ctx is not cancelled. An error fails the whole test binary: Run prints it, runs no test and returns 1.
func Setup(f func(ctx context.Context) error) RunOption {
	return func(c *runConfig) { c.setups = append(c.setups, f) }
}

// NewDatabase creates a fresh, empty database for this test on the shared server and returns its DSN.
// It is safe to call from parallel tests.
//
// The shared server is DATABASE_URL when that is set (NewDatabase creates and drops its own databases there and
// touches nothing else), otherwise one ephemeral Cluster started on first use and stopped by Run. The database
// is dropped (WITH (FORCE)) when the test and its subtests have finished, except that with DATABASE_URL a
// failed test's database is kept for inspection and its name logged. Databases are named
// seqrepo_test_<pid>_<random>_<n>, unique per process and call.
//
// Through PgBouncer (PgBouncerEnv=1, see ThroughPgBouncer), the database is still created on the server, but
// the DSN goes through a PgBouncer in transaction pooling mode that pgtest starts in front of the server when
// it starts the server (see PgBouncer.DSN), unless the test asks for Direct. WithTemplate's setup always gets a
// direct DSN.
//
// Any problem (no server binaries and no DATABASE_URL, no pgbouncer binary when one is needed, a failed
// template setup) fails the test with tb.Fatal; it never skips.
func NewDatabase(tb testing.TB, opts ...DatabaseOption) string {
	tb.Helper()
	return shared.newDatabase(tb, opts...)
}

// CreateDatabase is NewDatabase for code that has no test: Setup functions, TestMain, Example functions. It
// creates a fresh database on the shared server, as NewDatabase does, and returns its DSN. The database is
// dropped by Run, after all the tests: call CreateDatabase only in a test binary whose TestMain calls Run.
// ctx bounds the creation (a template's setup gets ctx's values but not its cancellation). It is safe for
// concurrent use.
func CreateDatabase(ctx context.Context, opts ...DatabaseOption) (dsn string, err error) {
	_, dsn, err = shared.create(ctx, opts)
	return dsn, err
}

// Server returns the shared server's admin DSN (database "postgres" on the ephemeral cluster, or DATABASE_URL),
// starting the ephemeral cluster if needed, and the *Cluster when it is ephemeral (nil for DATABASE_URL).
// The admin DSN is always direct, never through PgBouncer. It is safe to call from parallel tests.
//
// The cluster is shared by every test in the process: a test that restarts or stops a server should Start its
// own.
func Server(tb testing.TB) (adminDSN string, c *Cluster) {
	tb.Helper()
	return shared.server(tb)
}

// DatabaseOption configures NewDatabase and CreateDatabase.
type DatabaseOption func(*databaseConfig)

type databaseConfig struct {
	template *templateSpec
	direct   bool
}

type templateSpec struct {
	name  string
	setup func(ctx context.Context, dsn string) error
}

// WithTemplate makes NewDatabase clone a template database (CREATE DATABASE ... TEMPLATE ...) instead of
// starting empty. The template is built once per test process per name: the first NewDatabase that names it
// creates an empty database and calls setup with its DSN (to run migrations, say); later calls, also
// concurrent ones, wait for that and clone the result. A setup error fails every test that uses the template.
// Use one setup per name: a second setup given with the same name is ignored.
//
// name is a label: the template database itself is named seqrepo_tpl_<pid>_<random>_<n>_<name>, so test
// processes sharing one DATABASE_URL never collide. setup's ctx carries the first caller's values but is not
// cancelled with its test. setup's DSN is always direct, never through PgBouncer: migrations hold a session
// advisory lock, which a transaction pooler cannot keep. Connections setup leaves open are terminated before
// the first clone, and the template refuses new connections from then on. Run drops templates.
func WithTemplate(name string, setup func(ctx context.Context, dsn string) error) DatabaseOption {
	return func(c *databaseConfig) { c.template = &templateSpec{name: name, setup: setup} }
}

// Direct makes NewDatabase and CreateDatabase return a DSN straight to the server even through PgBouncer (see
// ThroughPgBouncer), for a test that needs a session of its own: session-level advisory locks, SET (not SET
// LOCAL), named prepared statements, LISTEN, temporary tables across transactions, or knowing which server
// process it talks to (pg_backend_pid, to pg_terminate_backend it). Without PgBouncer it changes nothing.
func Direct() DatabaseOption {
	return func(c *databaseConfig) { c.direct = true }
}

// sharedServer is a test process's shared server and the databases it created there. It is safe for
// concurrent use.
type sharedServer struct {
	databaseURL      func() string // where DATABASE_URL comes from
	throughPgBouncer func() bool   // whether to hand out DSNs through PgBouncer; nil means no
	locate           locator
	report           io.Writer // where close reports what PgBouncer served; nil means os.Stdout

	once     sync.Once // starts the server; the four fields below are set inside it
	adminDSN string
	cluster  *Cluster   // the ephemeral cluster; nil when the server is DATABASE_URL's
	bouncer  *PgBouncer // in front of the server when throughPgBouncer; else nil
	startErr error

	mu        sync.Mutex           // protects the following; never held across a round trip or a start
	databases map[string]struct{}  // created, and not yet dropped nor deliberately kept
	templates map[string]*template // by WithTemplate name
	bounced   []string             // databases whose DSN went through the bouncer, for close's report
	closed    bool                 // close has run
}

// template is one template database, built once.
type template struct {
	dbname string
	once   sync.Once
	err    error // set inside once
}

func (s *sharedServer) server(tb testing.TB) (string, *Cluster) {
	tb.Helper()
	// One impatient test must not abort the start other tests wait on: keep values, drop cancellation.
	if err := s.start(context.WithoutCancel(tb.Context())); err != nil {
		tb.Fatal(err)
	}
	return s.adminDSN, s.cluster
}

// start starts the shared server, and the PgBouncer in front of it, once; later calls return the first call's
// error.
func (s *sharedServer) start(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("pgtest: the shared server is used after Run has stopped it")
	}
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, sharedStartTimeout)
		defer cancel()
		if u := s.databaseURL(); u != "" {
			s.adminDSN = u
		} else {
			c, err := start(ctx, Options{}, s.locate)
			if err != nil {
				s.startErr = err
				return
			}
			s.cluster, s.adminDSN = c, c.DSN("postgres")
		}
		if s.throughPgBouncer != nil && s.throughPgBouncer() {
			b, err := StartPgBouncer(ctx, s.adminDSN, PgBouncerOptions{})
			if err != nil {
				s.startErr = fmt.Errorf("%w (%s=1 asks for PgBouncer in front of the test server)", err, PgBouncerEnv)
				return
			}
			s.bouncer = b
		}
	})
	return s.startErr
}

// create creates a database on the shared server, starting the server if needed, and returns its name and the
// DSN to hand out. ctx bounds the creation; the server start and a template's build are not cancelled with it.
// On error no database is left behind that close would not drop.
func (s *sharedServer) create(ctx context.Context, opts []DatabaseOption) (name, dsn string, err error) {
	var cfg databaseConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	if err := s.start(context.WithoutCancel(ctx)); err != nil {
		return "", "", err
	}
	admin := s.adminDSN

	var source string
	if cfg.template != nil {
		t := s.template(cfg.template.name)
		t.once.Do(func() { t.err = buildTemplate(context.WithoutCancel(ctx), admin, t.dbname, *cfg.template) })
		if t.err != nil {
			return "", "", t.err
		}
		source = t.dbname
	}

	name = newDatabaseName("test", "")
	bounced := s.bouncer != nil && !cfg.direct
	if bounced {
		dsn = s.bouncer.DSN(name)
	} else if dsn, err = withDatabase(admin, name); err != nil {
		return "", "", err
	}
	if err := createDatabase(ctx, admin, name, source); err != nil {
		return "", "", err
	}
	s.mu.Lock()
	if bounced {
		s.bounced = append(s.bounced, name)
	}
	s.mu.Unlock()
	s.track(name, true)
	return name, dsn, nil
}

func (s *sharedServer) newDatabase(tb testing.TB, opts ...DatabaseOption) string {
	tb.Helper()
	name, dsn, err := s.create(tb.Context(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() && s.cluster == nil {
			s.track(name, false)
			tb.Logf("pgtest: test failed; keeping database %s on DATABASE_URL's server (drop it with DROP DATABASE %s WITH (FORCE))",
				name, pgx.Identifier{name}.Sanitize())
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		if err := dropDatabase(ctx, s.adminDSN, name); err != nil {
			tb.Errorf("%v (Run tries again)", err)
			return
		}
		s.track(name, false)
	})
	return dsn
}

// track records that database name exists on the server and is ours to drop (true), or no longer (false).
func (s *sharedServer) track(name string, ours bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.databases == nil {
		s.databases = make(map[string]struct{})
	}
	if ours {
		s.databases[name] = struct{}{}
	} else {
		delete(s.databases, name)
	}
}

// template returns the template with this WithTemplate name, registering it (and so its drop in close) on
// first use.
func (s *sharedServer) template(name string) *template {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.templates == nil {
		s.templates = make(map[string]*template)
	}
	t := s.templates[name]
	if t == nil {
		t = &template{dbname: newDatabaseName("tpl", name)}
		s.templates[name] = t
	}
	return t
}

// close stops PgBouncer and reports what it served, drops what the tests left on a DATABASE_URL server and
// stops the ephemeral cluster. When PgBouncer was used but served none of the databases handed out through it,
// close returns an error.
func (s *sharedServer) close() error {
	s.once.Do(func() {}) // waits for a start in progress; none can begin after this
	s.mu.Lock()
	s.closed = true
	var leftovers []string
	for name := range s.databases {
		leftovers = append(leftovers, name)
	}
	for _, t := range s.templates {
		leftovers = append(leftovers, t.dbname)
	}
	bounced := s.bounced
	s.databases, s.templates, s.bounced = nil, nil, nil
	s.mu.Unlock()

	var errs []error
	if s.bouncer != nil {
		errs = append(errs, s.bouncer.Stop()) // first: after Stop, its login counts are final
		errs = append(errs, s.reportBouncer(bounced))
	}
	if s.cluster != nil {
		// Stopping removes everything at once.
		return errors.Join(append(errs, s.cluster.Stop())...)
	}
	if s.adminDSN != "" && len(leftovers) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		for _, name := range leftovers {
			errs = append(errs, dropDatabase(ctx, s.adminDSN, name))
		}
	}
	return errors.Join(errs...)
}

// reportBouncer writes how many of the databases handed out through PgBouncer (bounced) it logged client
// logins to, and returns an error when it logged none.
func (s *sharedServer) reportBouncer(bounced []string) error {
	served := 0
	for _, name := range bounced {
		if s.bouncer.Logins(name) > 0 {
			served++
		}
	}
	report := s.report
	if report == nil {
		report = os.Stdout
	}
	fmt.Fprintf(report, "pgtest: PgBouncer %s (transaction pooling) served %d of %d databases handed out through it\n",
		s.bouncer.Version(), served, len(bounced))
	if len(bounced) > 0 && served == 0 {
		return fmt.Errorf("pgtest: PgBouncer served none of the %d databases handed out through it", len(bounced))
	}
	return nil
}

// buildTemplate creates template database dbname, runs setup on it, and readies it for cloning.
func buildTemplate(ctx context.Context, admin, dbname string, spec templateSpec) error {
	if err := createDatabase(ctx, admin, dbname, ""); err != nil {
		return err
	}
	dsn, err := withDatabase(admin, dbname)
	if err != nil {
		return err
	}
	if err := spec.setup(ctx, dsn); err != nil {
		return fmt.Errorf("pgtest: template %q: setup: %w", spec.name, err)
	}
	// CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template: refuse new connections
	// and end the ones setup left open (PostgreSQL waits a few seconds for them to go).
	err = adminExec(ctx, admin,
		"ALTER DATABASE "+pgx.Identifier{dbname}.Sanitize()+" WITH ALLOW_CONNECTIONS false",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "+quoteLiteral(dbname))
	if err != nil {
		return fmt.Errorf("pgtest: template %q: %w", spec.name, err)
	}
	return nil
}

func createDatabase(ctx context.Context, admin, name, template string) error {
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if err := adminExec(ctx, admin, sql); err != nil {
		return fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, admin, name string) error {
	if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: dropping database %s: %w", name, err)
	}
	return nil
}

// adminExec runs statements, one at a time and outside any transaction, on a new connection to admin.
func adminExec(ctx context.Context, admin string, statements ...string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, sql := range statements {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return err
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings is on in every supported server).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// withDatabase returns dsn, a URL or keyword/value connection string, with its database replaced by dbname.
func withDatabase(dsn, dbname string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pgtest: parsing DSN: %w", err)
		}
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		u.Path, u.RawPath = "/"+dbname, ""
		return u.String(), nil
	}
	// A later keyword overrides an earlier one.
	return strings.TrimSpace(dsn) + " dbname=" + quoteDSNValue(dbname), nil
}

// Database names: a per-process random token keeps processes that share a DATABASE_URL apart even when their
// pids repeat (as in containers), and a counter keeps calls apart.
var (
	processToken = newProcessToken()
	nameCounter  atomic.Int64
)

func newProcessToken() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b)
}

// newDatabaseName returns seqrepo_<kind>_<pid>_<token>_<n>[_<label>], the label reduced to [a-z0-9_] and the
// whole cut to PostgreSQL's 63-byte identifier limit.
func newDatabaseName(kind, label string) string {
	name := fmt.Sprintf("seqrepo_%s_%d_%s_%d", kind, os.Getpid(), processToken, nameCounter.Add(1))
	if label != "" {
		name += "_" + strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
				return r
			case r >= 'A' && r <= 'Z':
				return r - 'A' + 'a'
			default:
				return '_'
			}
		}, label)
	}
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}
