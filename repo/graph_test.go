package repo_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Graph test models: a post has many notes and many tags through graph_post_tags, with
// a column default GORM fills in (Rank), one the database fills in (Stamp) and an
// autoCreateTime field.
type GraphPost struct {
	ID        int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:graph_posts_id_seq;allocationSize:50"`
	Title     string
	Rank      int       `gorm:"default:3"`
	Stamp     time.Time `gorm:"default:now()"`
	CreatedAt time.Time
	Note      *string
	Notes     []GraphNote
	Tags      []*GraphTag `gorm:"many2many:graph_post_tags"`
}

type GraphNote struct {
	ID          int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:graph_notes_id_seq;allocationSize:50"`
	GraphPostID int64
	Body        string
}

type GraphTag struct {
	ID   int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:graph_tags_id_seq;allocationSize:50"`
	Name string
}

const graphSchema = `
CREATE SEQUENCE graph_posts_id_seq INCREMENT 50;
CREATE TABLE graph_posts (
	id bigint PRIMARY KEY,
	title text NOT NULL,
	rank bigint NOT NULL DEFAULT 3,
	stamp timestamptz NOT NULL DEFAULT now(),
	created_at timestamptz NOT NULL,
	note text
);
CREATE SEQUENCE graph_notes_id_seq INCREMENT 50;
CREATE TABLE graph_notes (id bigint PRIMARY KEY, graph_post_id bigint NOT NULL REFERENCES graph_posts, body text NOT NULL);
CREATE SEQUENCE graph_tags_id_seq INCREMENT 50;
CREATE TABLE graph_tags (id bigint PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE graph_post_tags (
	graph_post_id bigint REFERENCES graph_posts,
	graph_tag_id bigint REFERENCES graph_tags,
	PRIMARY KEY (graph_post_id, graph_tag_id)
);
`

// graphTemplate is the models' schema (seqrepo's migrations) plus graphSchema.
var graphTemplate = pgtest.WithTemplate("repo-graph-schema", func(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, graphSchema)
	return err
})

// graphDatabase returns the DSN of a fresh copy of graphTemplate (through PgBouncer in
// the rerun, unless direct).
func graphDatabase(t testing.TB, direct bool) string {
	if direct {
		return pgtest.NewDatabase(t, graphTemplate, pgtest.Direct())
	}
	return pgtest.NewDatabase(t, graphTemplate)
}

// roundTrips counts network round trips on the connections it dials: a write that
// follows a read (or is the first) starts one. Writes with no read in between — a
// pipeline — are one round trip.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	rc := &countingConn{Conn: conn, c: c}
	rc.read.Store(true)
	return rc, nil
}

func (c *roundTrips) count() int64 { return c.n.Load() }

type countingConn struct {
	net.Conn
	c    *roundTrips
	read atomic.Bool // read since the last write
}

func (cc *countingConn) Write(b []byte) (int, error) {
	if cc.read.Swap(false) {
		cc.c.n.Add(1)
	}
	return cc.Conn.Write(b)
}

func (cc *countingConn) Read(b []byte) (int, error) {
	n, err := cc.Conn.Read(b)
	if n > 0 {
		cc.read.Store(true)
	}
	return n, err
}

// openCounting opens GORM with the plugin on dsn, counting round trips. mode is a pgx
// exec mode ("" for the DSN's); simple does what GORM's PreferSimpleProtocol does.
// Connections are never pinged before reuse, so every round trip is the test's.
func openCounting(t testing.TB, dsn, mode string, simple bool) (*gorm.DB, *roundTrips) {
	t.Helper()
	if mode != "" {
		dsn += " default_query_exec_mode=" + mode // the later keyword wins
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	rt := &roundTrips{}
	cfg.DialFunc = rt.dial
	sqlDB := stdlib.OpenDB(*cfg, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return false }))
	t.Cleanup(func() { sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Use(repo.NewPlugin()); err != nil {
		t.Fatal(err)
	}
	return db, rt
}

// requestGraph is a repository with n commits by n authors, the first two commits by
// the same author.
func requestGraph(name string, n int) models.Repository {
	authors := make([]*models.Author, n)
	for i := range authors {
		authors[i] = &models.Author{Email: fmt.Sprintf("%s-%d@graph.example", name, i), Name: fmt.Sprintf("Author %d", i)}
	}
	if n > 1 {
		authors[1] = authors[0]
	}
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	r := models.Repository{Name: name, URL: "https://example.com/" + name + ".git", CreatedAt: at}
	for i := range n {
		r.Commits = append(r.Commits, models.Commit{
			SHA: fmt.Sprintf("%040x", i), Message: fmt.Sprintf("change %d", i), AuthoredAt: at, CommittedAt: at, Author: authors[i],
		})
	}
	return r
}

// checkStored checks that the tables hold r exactly as the structs say.
func checkStored(t *testing.T, db *gorm.DB, r models.Repository) {
	t.Helper()
	var got models.Repository
	if err := db.Preload("Commits.Author").Take(&got, r.ID).Error; err != nil {
		t.Fatalf("read repository %d back: %v", r.ID, err)
	}
	if got.Name != r.Name || len(got.Commits) != len(r.Commits) {
		t.Fatalf("stored %q with %d commits, want %q with %d", got.Name, len(got.Commits), r.Name, len(r.Commits))
	}
	byID := map[int64]models.Commit{}
	for _, c := range got.Commits {
		byID[c.ID] = c
	}
	for i, c := range r.Commits {
		s, ok := byID[c.ID]
		if !ok || c.ID == 0 {
			t.Errorf("commit %d (key %d) not stored", i, c.ID)
			continue
		}
		if c.RepositoryID != r.ID || s.RepositoryID != r.ID || c.AuthorID != c.Author.ID || s.AuthorID != c.AuthorID ||
			s.SHA != c.SHA || s.Author == nil || s.Author.Email != c.Author.Email {
			t.Errorf("commit %d: stored %+v, struct %+v", i, s, c)
		}
	}
}

func TestCreateGraphWritesEveryTable(t *testing.T) {
	ctx := context.Background()
	db, _ := openCounting(t, graphDatabase(t, false), "", false)
	repos := newRepo[models.Repository](t, db)
	rows := []models.Repository{requestGraph("alpha", 4), requestGraph("beta", 3)}
	if err := repos.CreateGraph(ctx, rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		checkStored(t, db, r)
	}
	// The author two commits share is one row.
	if got := count(t, db, "authors"); got != 5 {
		t.Errorf("%d authors, want 5", got)
	}
	if rows[0].Commits[0].AuthorID != rows[0].Commits[1].AuthorID {
		t.Error("the shared author got two keys")
	}
}

// TestCreateGraphOneRoundTrip counts the network round trips of a request-sized graph
// (1 repository, 10 authors, 10 commits) once the allocators hold keys and the
// connection knows the statements: one, where GORM's db.Create needs a round trip per
// table and two for its transaction.
func TestCreateGraphOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	db, rt := openCounting(t, graphDatabase(t, false), "", false)
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1) // one connection: its statement cache is warm after the first call
	repos := newRepo[models.Repository](t, db)

	first := []models.Repository{requestGraph("warm", 10)}
	if err := repos.CreateGraph(ctx, first); err != nil {
		t.Fatal(err)
	}
	before := rt.count()
	rows := []models.Repository{requestGraph("measured", 10)}
	if err := repos.CreateGraph(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if got := rt.count() - before; got != 1 {
		t.Errorf("CreateGraph took %d round trips, want 1", got)
	}
	checkStored(t, db, rows[0])

	// Each allocator that runs out costs one round trip more, no other.
	p := db.Config.Plugins["seqrepo"].(*repo.Plugin)
	refills := func() int64 {
		var n int64
		for _, m := range []any{&models.Repository{}, &models.Author{}, &models.Commit{}} {
			a, err := p.Allocator(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			n += a.Stats().RoundTrips
		}
		return n
	}
	for i := range 6 {
		before, keys := rt.count(), refills()
		rows := []models.Repository{requestGraph(fmt.Sprintf("more-%d", i), 10)}
		if err := repos.CreateGraph(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if got, want := rt.count()-before, 1+refills()-keys; got != want {
			t.Errorf("call %d: %d round trips, want %d (1 + %d allocator refills)", i, got, want, want-1)
		}
	}

	// GORM's create of the same graph, with the plugin, for comparison.
	before = rt.count()
	g := requestGraph("gorm", 10)
	if err := db.Create(&g).Error; err != nil {
		t.Fatal(err)
	}
	if got := rt.count() - before; got < 5 {
		t.Errorf("GORM's Create took %d round trips; expected one per table and two for the transaction", got)
	}
}

// TestCreateGraphFailsWholly makes the last table fail — a commit's author exists
// already under its e-mail, so ON CONFLICT DO NOTHING skips the new author and the
// commit's foreign key points nowhere — and expects nothing written, the error naming
// the table and row, and every key taken back.
func TestCreateGraphFailsWholly(t *testing.T) {
	ctx := context.Background()
	for _, where := range []string{"pool", "InTx", "db.Transaction"} {
		t.Run(where, func(t *testing.T) {
			db, _ := openCounting(t, graphDatabase(t, false), "", false)
			repos := newRepo[models.Repository](t, db)
			if err := db.Create(&models.Author{Email: "taken@graph.example", Name: "First"}).Error; err != nil {
				t.Fatal(err)
			}
			rows := []models.Repository{requestGraph("doomed", 4)}
			rows[0].Commits[3].Author = &models.Author{Email: "taken@graph.example", Name: "Second"}
			var failed error // CreateGraph's error in a transaction that goes on
			run := func(fn func(r *repo.Repository[models.Repository]) error) error { return fn(repos) }
			switch where {
			case "InTx":
				run = func(fn func(r *repo.Repository[models.Repository]) error) error {
					return repo.InTx(ctx, db, func(tx *gorm.DB) error {
						err := fn(repos.WithTx(tx))
						// The caller's transaction goes on after the failure.
						if err2 := repos.WithTx(tx).CreateGraph(ctx, []models.Repository{requestGraph("after", 2)}); err2 != nil {
							t.Errorf("CreateGraph after the failure, in the same transaction: %v", err2)
						}
						failed = err
						return nil
					})
				}
			case "db.Transaction":
				run = func(fn func(r *repo.Repository[models.Repository]) error) error {
					return db.Transaction(func(tx *gorm.DB) error {
						err := fn(repos.WithTx(tx))
						if err2 := repos.WithTx(tx).CreateGraph(ctx, []models.Repository{requestGraph("after", 2)}); err2 != nil {
							t.Errorf("CreateGraph after the failure, in the same transaction: %v", err2)
						}
						failed = err
						return nil
					})
				}
			}
			err := run(func(r *repo.Repository[models.Repository]) error { return r.CreateGraph(ctx, rows) })
			if err == nil {
				err = failed
			}
			var ge *repo.GraphError
			if !errors.As(err, &ge) {
				t.Fatalf("err = %v, want a *repo.GraphError", err)
			}
			if ge.Table != "commits" || ge.Row != "rows[0].Commits[3]" {
				t.Errorf("GraphError names table %q row %q, want commits rows[0].Commits[3]: %v", ge.Table, ge.Row, err)
			}
			if !strings.HasPrefix(err.Error(), "repo: CreateGraph: table commits, row rows[0].Commits[3]: ") || strings.Count(err.Error(), "repo:") != 1 {
				t.Errorf("message %q", err)
			}
			wantRepos, wantAuthors, wantCommits := int64(0), int64(1), int64(0)
			if where != "pool" {
				wantRepos, wantAuthors, wantCommits = 1, 2, 2 // "after", its author and commits
			}
			if got := count(t, db, "commits"); got != wantCommits {
				t.Errorf("%d commits, want %d", got, wantCommits)
			}
			if got := count(t, db, "repositories"); got != wantRepos {
				t.Errorf("%d repositories, want %d", got, wantRepos)
			}
			if got := count(t, db, "authors"); got != wantAuthors {
				t.Errorf("%d authors, want %d", got, wantAuthors)
			}
			if rows[0].ID != 0 {
				t.Errorf("repository keeps key %d", rows[0].ID)
			}
			for i, c := range rows[0].Commits {
				if c.ID != 0 || c.Author.ID != 0 {
					t.Errorf("commit %d keeps key %d, its author %d", i, c.ID, c.Author.ID)
				}
			}
			// The same rows go in once the conflict is gone.
			rows[0].Commits[3].Author.Email = "free@graph.example"
			if err := repos.CreateGraph(ctx, rows); err != nil {
				t.Fatal(err)
			}
			checkStored(t, db, rows[0])
		})
	}
}

func TestCreateGraphDuplicateKey(t *testing.T) {
	ctx := context.Background()
	db, _ := openCounting(t, graphDatabase(t, false), "", false)
	repos := newRepo[models.Repository](t, db)
	if err := repos.CreateGraph(ctx, []models.Repository{requestGraph("twice", 1)}); err != nil {
		t.Fatal(err)
	}
	rows := []models.Repository{requestGraph("other", 1), requestGraph("twice", 2)}
	rows[1].Commits[0].Author.Email = "fresh@graph.example"
	rows[1].Commits[1].Author = rows[1].Commits[0].Author
	err := repos.CreateGraph(ctx, rows)
	var dup *repo.DuplicateKeyError
	if !errors.As(err, &dup) || dup.Constraint != "repositories_name_key" || !errors.Is(err, gorm.ErrDuplicatedKey) {
		t.Fatalf("err = %v, want a *DuplicateKeyError on repositories_name_key", err)
	}
	var ge *repo.GraphError
	if !errors.As(err, &ge) || ge.Table != "repositories" || ge.Row != "rows[1]" {
		t.Errorf("err = %v, want a GraphError naming repositories rows[1]", err)
	}
	if got := count(t, db, "repositories"); got != 1 {
		t.Errorf("%d repositories, want 1", got)
	}
}

// TestCreateGraphManyToMany writes posts with notes (has-many) and tags (many2many):
// a tag shared by two posts is written once, an existing tag with its key is left as it
// is, and the join rows link them; defaults are filled in as GORM's create does.
func TestCreateGraphManyToMany(t *testing.T) {
	ctx := context.Background()
	db, _ := openCounting(t, graphDatabase(t, false), "", false)
	old := GraphTag{Name: "old"}
	if err := db.Create(&old).Error; err != nil {
		t.Fatal(err)
	}
	shared := &GraphTag{Name: "shared"}
	note := "a note"
	rows := []GraphPost{
		{Title: "one", Note: &note, Notes: []GraphNote{{Body: "n1"}, {Body: "n2"}}, Tags: []*GraphTag{shared, {ID: old.ID, Name: "old renamed"}}},
		{Title: "two", Rank: 9, Tags: []*GraphTag{shared, {Name: "new"}}},
	}
	posts := newRepo[GraphPost](t, db)
	start := time.Now()
	if err := posts.CreateGraph(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if rows[0].Rank != 3 || rows[1].Rank != 9 {
		t.Errorf("ranks %d, %d: want the default 3 filled in, and 9 kept", rows[0].Rank, rows[1].Rank)
	}
	if rows[0].CreatedAt.Before(start.Add(-time.Minute)) {
		t.Errorf("CreatedAt = %v, want the time of the write", rows[0].CreatedAt)
	}
	var got []GraphPost
	if err := db.Preload("Notes").Preload("Tags").Order("id").Find(&got).Error; err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d posts", len(got))
	}
	if got[0].ID != rows[0].ID || got[0].Rank != 3 || got[0].Stamp.IsZero() || got[0].Note == nil || *got[0].Note != note || got[1].Note != nil {
		t.Errorf("post one stored as %+v", got[0])
	}
	if len(got[0].Notes) != 2 || got[0].Notes[0].GraphPostID != rows[0].ID || rows[0].Notes[1].GraphPostID != rows[0].ID {
		t.Errorf("notes %+v", got[0].Notes)
	}
	tags := func(p GraphPost) string {
		var names []string
		for _, tg := range p.Tags {
			names = append(names, tg.Name)
		}
		return strings.Join(names, ",")
	}
	if a, b := tags(got[0]), tags(got[1]); !(a == "old,shared" || a == "shared,old") || !(b == "shared,new" || b == "new,shared") {
		t.Errorf("tags %q and %q", a, b)
	}
	if got := count(t, db, "graph_tags"); got != 3 {
		t.Errorf("%d tags, want 3", got)
	}
	if got := count(t, db, "graph_post_tags"); got != 4 {
		t.Errorf("%d join rows, want 4", got)
	}
	if rows[0].Tags[0].ID == 0 || rows[0].Tags[0] != rows[1].Tags[0] {
		t.Error("the shared tag has no key")
	}
}

// GraphOwner belongs to a Plain, whose key the database assigns.
type GraphOwner struct {
	ID      int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:graph_owners_id_seq;allocationSize:50"`
	PlainID int64
	Plain   *Plain
}

// TestCreateGraphRefusesDatabaseKeys: a row whose key only the database can give cannot
// go out in one round trip; CreateGraph says so before it sends anything.
func TestCreateGraphRefusesDatabaseKeys(t *testing.T) {
	db, rt := openCounting(t, graphDatabase(t, false), "", false)
	owners := newRepo[GraphOwner](t, db)
	before := rt.count()
	rows := []GraphOwner{{Plain: &Plain{Name: "x"}}}
	err := owners.CreateGraph(context.Background(), rows)
	if err == nil || !strings.Contains(err.Error(), "rows[0].Plain has no key") || !strings.HasPrefix(err.Error(), "repo: ") {
		t.Errorf("err = %v", err)
	}
	if rt.count() != before || rows[0].ID != 0 {
		t.Errorf("%d round trips, key %d", rt.count()-before, rows[0].ID)
	}
}

// TestCreateGraphEveryExecMode writes a graph in each pgx exec mode, and GORM's
// PreferSimpleProtocol, reads it back, makes a statement fail (the connection is
// usable afterwards), and counts the round trips of a call whose statements the
// connection has seen.
func TestCreateGraphEveryExecMode(t *testing.T) {
	cases := []struct {
		name, mode string
		simple     bool
		direct     bool
		trips      int64
	}{
		{name: "cache_statement", mode: "cache_statement", direct: true, trips: 1},
		{name: "cache_describe", mode: "cache_describe", trips: 1},
		{name: "describe_exec", mode: "describe_exec", direct: true, trips: 2},
		{name: "exec", mode: "exec", trips: 1},
		{name: "simple_protocol", mode: "simple_protocol", trips: 1},
		{name: "PreferSimpleProtocol", simple: true, trips: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			db, rt := openCounting(t, graphDatabase(t, c.direct), c.mode, c.simple)
			sqlDB, _ := db.DB()
			sqlDB.SetMaxOpenConns(1)
			posts := newRepo[GraphPost](t, db)
			odd := `a"b\c,{} NULL ' quote`
			post := func(title string) []GraphPost {
				return []GraphPost{{Title: title, Note: &odd, Notes: []GraphNote{{Body: odd}, {Body: "b"}}, Tags: []*GraphTag{{Name: title + "-t"}}}}
			}
			first := post("first")
			if err := posts.CreateGraph(ctx, first); err != nil {
				t.Fatal(err)
			}
			before := rt.count()
			second := post("second")
			if err := posts.CreateGraph(ctx, second); err != nil {
				t.Fatal(err)
			}
			if got := rt.count() - before; got != c.trips && !pgtest.ThroughPgBouncer() {
				t.Errorf("%d round trips, want %d", got, c.trips)
			}
			var got GraphPost
			if err := db.Preload("Notes").Preload("Tags").Take(&got, second[0].ID).Error; err != nil {
				t.Fatal(err)
			}
			if got.Note == nil || *got.Note != odd || len(got.Notes) != 2 || len(got.Tags) != 1 || got.Tags[0].Name != "second-t" {
				t.Errorf("stored %+v", got)
			}
			// A duplicate key: a note with the key of one stored is updated, not
			// duplicated (ON CONFLICT), but a post with a stored key fails.
			bad := post("bad")
			bad[0].ID = first[0].ID
			err := posts.CreateGraph(ctx, bad)
			var dup *repo.DuplicateKeyError
			if !errors.As(err, &dup) {
				t.Fatalf("err = %v, want a *DuplicateKeyError", err)
			}
			if bad[0].Notes[0].ID != 0 || bad[0].ID != first[0].ID {
				t.Errorf("keys after the failure: post %d, note %d", bad[0].ID, bad[0].Notes[0].ID)
			}
			if err := posts.CreateGraph(ctx, post("third")); err != nil {
				t.Fatalf("after a failure: %v", err)
			}
			if got := count(t, db, "graph_posts"); got != 3 {
				t.Errorf("%d posts, want 3", got)
			}
		})
	}
}
