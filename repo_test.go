package seqrepo_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// migrated is a template database with the migrations applied, built once.
var migrated = pgtest.WithTemplate("migrated", func(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return migrations.Up(ctx, db)
})

// stack is the whole stack on a fresh migrated database: GORM with the plugin, which
// validated every model at startup, and a repository per model.
type stack struct {
	db      *gorm.DB
	plugin  *repo.Plugin
	repos   *repo.Repository[models.Repository]
	authors *repo.Repository[models.Author]
	commits *repo.Repository[models.Commit]
	tenants *repo.Repository[models.Tenant]
}

func newStack(t *testing.T, maxConns int) *stack {
	t.Helper()
	dsn := pgtest.NewDatabase(t, migrated)
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	if maxConns > 0 {
		sqlDB.SetMaxOpenConns(maxConns)
	}
	if err := migrations.Validate(context.Background(), sqlDB, models.All()...); err != nil {
		t.Fatal(err)
	}
	p := repo.NewPluginWithConfig(repo.PluginConfig{Validate: models.All()})
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	s := &stack{db: db, plugin: p}
	s.repos = must(repo.New[models.Repository](db))
	s.authors = must(repo.New[models.Author](db))
	s.commits = must(repo.NewWithConfig[models.Commit](db, repo.Config{BatchSize: 4000}))
	s.tenants = must(repo.New[models.Tenant](db))
	return s
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func sha(i int) string { return fmt.Sprintf("%040x", i) }

// newCommits returns n commits of project by author, with SHAs from offset.
func newCommits(project, author int64, offset, n int) []models.Commit {
	now := time.Now()
	rows := make([]models.Commit, n)
	for i := range rows {
		rows[i] = models.Commit{RepositoryID: project, AuthorID: author, SHA: sha(offset + i),
			Message: fmt.Sprint("commit ", offset+i), AuthoredAt: now, CommittedAt: now}
	}
	return rows
}

// commitKeys returns sha → key of the commits of project in the database.
func commitKeys(t *testing.T, db *gorm.DB, project int64) map[string]int64 {
	t.Helper()
	var rows []models.Commit
	if err := db.Select("id", "sha").Where("repository_id = ?", project).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(rows))
	for _, c := range rows {
		out[c.SHA] = c.ID
	}
	return out
}

// checkCommits checks that every row is in the database under its key.
func checkCommits(t *testing.T, db *gorm.DB, project int64, rows []models.Commit) {
	t.Helper()
	inDB := commitKeys(t, db, project)
	for i, c := range rows {
		if c.ID == 0 || inDB[c.SHA] != c.ID {
			t.Fatalf("commit %d (%s): key %d, %d in the database", i, c.SHA, c.ID, inDB[c.SHA])
		}
	}
}

func TestIngest(t *testing.T) {
	ctx := context.Background()
	s := newStack(t, 0)

	// GORM's create with associations: the plugin assigns every key before the INSERTs.
	ada := models.Author{Email: "ada@example.com", Name: "Ada"}
	project := models.Repository{Name: "seqrepo", URL: "https://example.com/seqrepo.git", Commits: []models.Commit{
		{SHA: sha(1), Message: "init", Author: &ada},
		{SHA: sha(2), Message: "second", Author: &ada},
	}}
	if err := s.db.Create(&project).Error; err != nil {
		t.Fatal(err)
	}
	for _, c := range project.Commits {
		if c.ID == 0 || c.RepositoryID != project.ID || c.AuthorID != ada.ID || ada.ID == 0 {
			t.Fatalf("commit %+v of repository %d by author %d", c, project.ID, ada.ID)
		}
	}
	checkCommits(t, s.db, project.ID, project.Commits)

	// Authors arrive with every commit: upsert on the e-mail, duplicates included.
	authors := []models.Author{
		{Email: "ada@example.com", Name: "Ada Lovelace"},
		{Email: "grace@example.com", Name: "Grace"},
		{Email: "grace@example.com", Name: "Grace Hopper"},
	}
	res, err := s.authors.Upsert(ctx, authors, repo.OnConflict{Columns: []string{"email"}, Update: []string{"name"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.InsertedCount() != 1 || !res.Inserted[1] || authors[0].ID != ada.ID || authors[1].ID != authors[2].ID {
		t.Fatalf("Upsert: %v, keys %d %d %d (ada %d)", res.Inserted, authors[0].ID, authors[1].ID, authors[2].ID, ada.ID)
	}
	grace, err := s.authors.Get(ctx, authors[2].ID)
	if err != nil || grace.Name != "Grace Hopper" {
		t.Fatalf("Get: %+v, %v", grace, err)
	}

	// 20,000 commits with COPY, then the same history again with half of it new:
	// Upsert DO NOTHING on (repository_id, sha) returns every commit's key.
	first := newCommits(project.ID, ada.ID, 100, 20_000)
	if err := s.commits.Copy(ctx, first); err != nil {
		t.Fatal(err)
	}
	checkCommits(t, s.db, project.ID, first)
	again := newCommits(project.ID, grace.ID, 10_100, 20_000)
	res, err = s.commits.Upsert(ctx, again, repo.OnConflict{Columns: []string{"repository_id", "sha"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.InsertedCount() != 10_000 {
		t.Errorf("%d commits inserted, want 10000", res.InsertedCount())
	}
	for i := range 10_000 {
		if again[i].ID != first[10_000+i].ID || res.Inserted[i] || !res.Inserted[10_000+i] {
			t.Fatalf("commit %s: key %d, %d before; inserted %v", again[i].SHA, again[i].ID, first[10_000+i].ID, res.Inserted[i])
		}
	}
	checkCommits(t, s.db, project.ID, again)
	if n, err := s.commits.Count(ctx); err != nil || n != 30_002 {
		t.Errorf("Count: %d, %v", n, err)
	}

	// A streamed history: memory bounded by the batch size.
	var streamed []models.Commit
	n, err := s.commits.CopySeq(ctx, commitSeq(project.ID, ada.ID, 50_000, 9_000), func(batch []models.Commit) error {
		streamed = append(streamed, batch...)
		return nil
	})
	if err != nil || n != 9_000 {
		t.Fatalf("CopySeq: %d, %v", n, err)
	}
	checkCommits(t, s.db, project.ID, streamed)

	// Keyset pagination over everything.
	var listed, after int64
	for {
		page, err := s.commits.List(ctx, after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		listed += int64(len(page))
		if len(page) < 5000 {
			break
		}
		after = page[len(page)-1].ID
	}
	if listed != 39_002 {
		t.Errorf("listed %d commits, want 39002", listed)
	}
}

func commitSeq(project, author int64, offset, n int) iter.Seq2[models.Commit, error] {
	return func(yield func(models.Commit, error) bool) {
		for i := range n {
			if !yield(newCommits(project, author, offset+i, 1)[0], nil) {
				return
			}
		}
	}
}

func TestTenantsMetadata(t *testing.T) {
	// Metadata is a driver.Valuer map: COPY, unnest arrays and GORM must all store it
	// the same way, a nil Metadata as {}.
	ctx := context.Background()
	s := newStack(t, 0)
	tenants := []models.Tenant{
		{Slug: "acme", Name: "Acme", Metadata: models.Metadata{"plan": "pro"}},
		{Slug: "nil", Name: "Nil"},
	}
	if err := s.tenants.Copy(ctx, tenants); err != nil {
		t.Fatal(err)
	}
	more := []models.Tenant{{Slug: "acme", Name: "Acme Inc", Metadata: models.Metadata{"plan": "enterprise"}}, {Slug: "new", Name: "New"}}
	if _, err := s.tenants.Upsert(ctx, more, repo.OnConflict{Columns: []string{"slug"}, UpdateAll: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.tenants.CreateAll(ctx, []models.Tenant{{Slug: "gorm", Name: "Gorm"}}); err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Slug     string
		Metadata string
	}
	if err := s.db.Raw(`SELECT slug, metadata::text AS metadata FROM tenants ORDER BY slug`).Scan(&got).Error; err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"acme": `{"plan": "enterprise"}`, "gorm": `{}`, "new": `{}`, "nil": `{}`}
	if len(got) != len(want) {
		t.Fatalf("tenants: %+v", got)
	}
	for _, g := range got {
		if want[g.Slug] != g.Metadata {
			t.Errorf("tenant %s: metadata %s, want %s", g.Slug, g.Metadata, want[g.Slug])
		}
	}
	if more[0].ID != tenants[0].ID {
		t.Errorf("upserted acme has key %d, %d in the table", more[0].ID, tenants[0].ID)
	}
}

func TestTransactions(t *testing.T) {
	// A repository, its commits by COPY and an author upsert in one transaction, on a
	// pool of one connection that the transaction holds.
	ctx := context.Background()
	s := newStack(t, 1)
	boom := errors.New("boom")
	write := func(tx *gorm.DB, name string) (models.Repository, []models.Commit, error) {
		project := models.Repository{Name: name, URL: "https://example.com/" + name}
		if err := s.repos.WithTx(tx).Create(ctx, &project); err != nil {
			return project, nil, err
		}
		author := []models.Author{{Email: name + "@example.com", Name: name}}
		if _, err := s.authors.WithTx(tx).Upsert(ctx, author, repo.OnConflict{Columns: []string{"email"}}); err != nil {
			return project, nil, err
		}
		commits := newCommits(project.ID, author[0].ID, 0, 5000)
		if err := s.commits.WithTx(tx).Copy(ctx, commits); err != nil {
			return project, nil, err
		}
		return project, commits, nil
	}

	var kept models.Repository
	var keptCommits []models.Commit
	err := repo.InTx(ctx, s.db, func(tx *gorm.DB) (err error) {
		kept, keptCommits, err = write(tx, "kept")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = repo.InTx(ctx, s.db, func(tx *gorm.DB) error {
		if _, _, err := write(tx, "dropped"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	err = s.db.Transaction(func(tx *gorm.DB) error {
		if _, _, err := write(tx, "gorm-dropped"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	checkCommits(t, s.db, kept.ID, keptCommits)
	for table, want := range map[string]int64{"repositories": 1, "authors": 1, "commits": 5000} {
		var n int64
		if err := s.db.Table(table).Count(&n).Error; err != nil || n != want {
			t.Errorf("%s: %d rows, want %d (%v)", table, n, want, err)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	ctx := context.Background()
	s := newStack(t, 0)
	project := models.Repository{Name: "p", URL: "u"}
	author := models.Author{Email: "e@example.com", Name: "e"}
	if err := s.db.Create(&project).Error; err != nil {
		t.Fatal(err)
	}
	if err := s.db.Create(&author).Error; err != nil {
		t.Fatal(err)
	}
	if err := s.commits.Copy(ctx, newCommits(project.ID, author.ID, 0, 100)); err != nil {
		t.Fatal(err)
	}

	// A duplicate (repository_id, sha) in the last batch of a CreateAll.
	rows := newCommits(project.ID, author.ID, 1000, 20_000)
	rows[19_000].SHA = sha(5)
	var dup *repo.DuplicateKeyError
	if err := s.commits.CreateAll(ctx, rows); !errors.As(err, &dup) || dup.Constraint != "commits_repository_id_sha_key" {
		t.Fatalf("CreateAll with a duplicate: %v", err)
	}
	if n, _ := s.commits.Count(ctx); n != 100 {
		t.Errorf("%d commits after a failed CreateAll, want 100", n)
	}

	// The sequence changed under the running allocator: writes fail with idgen's error
	// and write nothing.
	if err := s.db.Exec(`ALTER SEQUENCE commits_id_seq INCREMENT 10`).Error; err != nil {
		t.Fatal(err)
	}
	rows = newCommits(project.ID, author.ID, 1000, 20_000)
	for name, write := range map[string]func() error{
		"CreateAll": func() error { return s.commits.CreateAll(ctx, rows) },
		"Copy":      func() error { return s.commits.Copy(ctx, rows) },
		"Upsert": func() error {
			_, err := s.commits.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"repository_id", "sha"}})
			return err
		},
	} {
		var mismatch *idgen.IncrementMismatchError
		if err := write(); !errors.Is(err, idgen.ErrIncrementMismatch) || !errors.As(err, &mismatch) || mismatch.Increment != 10 {
			t.Errorf("%s after ALTER SEQUENCE: %v", name, err)
		}
	}
	if n, _ := s.commits.Count(ctx); n != 100 {
		t.Errorf("%d commits, want 100", n)
	}
	if err := s.plugin.Validate(ctx, models.All()...); !errors.Is(err, idgen.ErrIncrementMismatch) {
		t.Errorf("Validate: %v", err)
	}
}

func TestConcurrentIngest(t *testing.T) {
	// Eight writers ingest overlapping histories at once: shared authors by Upsert,
	// their own commits by Copy and CreateAll. Every key is unique and in the table.
	ctx := context.Background()
	s := newStack(t, 0)
	project := models.Repository{Name: "busy", URL: "u"}
	if err := s.db.Create(&project).Error; err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	commits := make([][]models.Commit, writers)
	authorKeys := make([]map[string]int64, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			authors := make([]models.Author, 300)
			for i := range authors {
				authors[i] = models.Author{Email: fmt.Sprintf("a%d@example.com", (i*7+w*13)%400), Name: "a"}
			}
			if _, errs[w] = s.authors.Upsert(ctx, authors, repo.OnConflict{Columns: []string{"email"}}); errs[w] != nil {
				return
			}
			authorKeys[w] = map[string]int64{}
			for _, a := range authors {
				authorKeys[w][a.Email] = a.ID
			}
			a := newCommits(project.ID, authors[0].ID, w*100_000, 3000)
			if errs[w] = s.commits.Copy(ctx, a); errs[w] != nil {
				return
			}
			b := newCommits(project.ID, authors[1].ID, w*100_000+50_000, 3000)
			if errs[w] = s.commits.CreateAll(ctx, b); errs[w] != nil {
				return
			}
			commits[w] = append(a, b...)
		}()
	}
	wg.Wait()
	var all []models.Commit
	for w := range writers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		all = append(all, commits[w]...)
	}
	checkCommits(t, s.db, project.ID, all)
	if n, _ := s.commits.Count(ctx); n != int64(len(all)) {
		t.Errorf("%d commits, want %d", n, len(all))
	}
	var inDB []models.Author
	if err := s.db.Find(&inDB).Error; err != nil {
		t.Fatal(err)
	}
	for _, a := range inDB {
		for w := range writers {
			if k, ok := authorKeys[w][a.Email]; ok && k != a.ID {
				t.Fatalf("writer %d got key %d for %s, %d in the table", w, k, a.Email, a.ID)
			}
		}
	}
}
