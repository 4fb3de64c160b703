package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/seqrepo/seqrepo/models"
)

// env is what a strategy works with. Its handles all count through ctr.
type env struct {
	h       *history
	pgxCfg  *pgx.ConnConfig // with ctr as tracer
	plain   *gorm.DB        // GORM without the seqrepo plugin: the database assigns keys
	seq     *gorm.DB        // GORM with the seqrepo plugin
	batch   int
	writers int
	alloc   int
	// The graph strategies' requests per run, and the time of each.
	requests int
	lat      *latencies
	proxy    *rttProxy     // the --rtt proxy, nil without one
	rtt      time.Duration // the round trip measured with SELECT 1
}

// strategy is one way of ingesting the history. prepare runs untimed before each run
// (on empty tables); run is timed. run returns a fingerprint of the key it gave each
// commit when the strategy knows them without asking the database (nil otherwise), so
// verification can check them against the table.
type strategy struct {
	name    string
	about   string
	prepare func(ctx context.Context, e *env) error
	run     func(ctx context.Context, e *env) (*keyPrint, error)
}

// keyed lists the ids a strategy assigned to the small tables, by input index.
type keyed struct {
	repos   []int64
	authors []int64
}

func (k keyed) commit(c commitIn) models.Commit {
	return models.Commit{
		RepositoryID: k.repos[c.Repo], AuthorID: k.authors[c.Author],
		SHA: c.SHA, Message: c.Message, AuthoredAt: c.AuthoredAt, CommittedAt: c.CommittedAt,
	}
}

func repoModels(h *history) []models.Repository {
	out := make([]models.Repository, len(h.repos))
	for i, r := range h.repos {
		out[i] = models.Repository{Name: r.Name, URL: r.URL, CreatedAt: epoch}
	}
	return out
}

func authorModels(h *history) []models.Author {
	out := make([]models.Author, len(h.authors))
	for i, a := range h.authors {
		out[i] = models.Author{Email: a.Email, Name: a.Name}
	}
	return out
}

// parallel runs fn for each writer w in [0, writers) at once and returns the first
// error. Writer w ingests the commits i with i % writers == w.
func parallel(ctx context.Context, writers int, fn func(ctx context.Context, w int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, w); err != nil {
				cancel(fmt.Errorf("writer %d: %w", w, err))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != ctx.Err() {
		return err
	}
	return nil
}

// ---- baselines and references: no seqrepo code ----

// maxParams is PostgreSQL's limit on bind parameters in one statement.
const maxParams = 65535

// identity makes GORM write the way it does for a model with a default integer key,
// before an application adopts seqrepo: the id column is left to its IDENTITY default
// and read back with RETURNING "id". (seqrepo's models say autoIncrement:false, since
// the plugin assigns their keys.)
func identity(db *gorm.DB) *gorm.DB {
	return db.Omit("id").Clauses(clause.Returning{Columns: []clause.Column{{Name: "id"}}})
}

// rowByRow is GORM's Create one row at a time with default settings: a transaction
// and an INSERT … RETURNING "id" per row.
func rowByRow(ctx context.Context, e *env) (*keyPrint, error) {
	create := func(ctx context.Context, v any) error { return identity(e.plain.WithContext(ctx)).Create(v).Error }
	var k keyed
	for _, r := range repoModels(e.h) {
		if err := create(ctx, &r); err != nil {
			return nil, err
		}
		k.repos = append(k.repos, r.ID)
	}
	for _, a := range authorModels(e.h) {
		if err := create(ctx, &a); err != nil {
			return nil, err
		}
		k.authors = append(k.authors, a.ID)
	}
	return nil, parallel(ctx, e.writers, func(ctx context.Context, w int) error {
		for i := w; i < e.h.n; i += e.writers {
			c := k.commit(e.h.commit(i))
			if err := create(ctx, &c); err != nil {
				return err
			}
			progressAdd(1)
		}
		return nil
	})
}

// batched writes with GORM's CreateInBatches on db: with the plain handle the
// database assigns IDENTITY keys and GORM reads them back with RETURNING; with the
// seqrepo handle the plugin assigns them first.
func batched(useSeq bool) func(ctx context.Context, e *env) (*keyPrint, error) {
	return func(ctx context.Context, e *env) (*keyPrint, error) {
		// GORM's CreateInBatches does not split a batch that has more bind
		// parameters than PostgreSQL's 65,535; none of these models has more than 8
		// columns, so at most 8,191 rows go in one INSERT.
		batch := min(e.batch, maxParams/8)
		write := func(ctx context.Context, v any) error {
			if useSeq {
				return e.seq.WithContext(ctx).CreateInBatches(v, batch).Error
			}
			return identity(e.plain.WithContext(ctx)).CreateInBatches(v, batch).Error
		}
		repos, authors := repoModels(e.h), authorModels(e.h)
		if err := write(ctx, &repos); err != nil {
			return nil, err
		}
		if err := write(ctx, &authors); err != nil {
			return nil, err
		}
		k := keyedFrom(repos, authors)
		keys := &keyPrint{}
		err := parallel(ctx, e.writers, func(ctx context.Context, w int) error {
			buf := make([]models.Commit, 0, batch)
			flush := func() error {
				if len(buf) == 0 {
					return nil
				}
				if err := write(ctx, &buf); err != nil {
					return err
				}
				for _, c := range buf {
					keys.add(c.SHA, c.ID)
				}
				progressAdd(len(buf))
				buf = buf[:0]
				return nil
			}
			for i := w; i < e.h.n; i += e.writers {
				buf = append(buf, k.commit(e.h.commit(i)))
				if len(buf) == batch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return flush()
		})
		return keys, err
	}
}

// rawCopy is pgx CopyFrom written directly, keys from the column DEFAULT: the speed
// limit for getting these rows into these tables.
func rawCopy(ctx context.Context, e *env) (*keyPrint, error) {
	conn, err := pgx.ConnectConfig(ctx, e.pgxCfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	k, err := rawCopySmallTables(ctx, conn, e.h, nil)
	if err != nil {
		return nil, err
	}
	return nil, parallel(ctx, e.writers, func(ctx context.Context, w int) error {
		conn, err := pgx.ConnectConfig(ctx, e.pgxCfg)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.CopyFrom(ctx, pgx.Identifier{"commits"},
			[]string{"repository_id", "author_id", "sha", "message", "authored_at", "committed_at"},
			commitSource(e.h, k, w, e.writers, nil))
		return err
	})
}

// rawCopySmallTables COPYs the repositories and authors for which keep is true (all
// when keep is nil) and reads back every id by name and e-mail.
func rawCopySmallTables(ctx context.Context, conn *pgx.Conn, h *history, keep func(i int) bool) (keyed, error) {
	var repoRows, authorRows [][]any
	for i, r := range h.repos {
		if keep == nil || keep(i) {
			repoRows = append(repoRows, []any{r.Name, r.URL, epoch})
		}
	}
	for i, a := range h.authors {
		if keep == nil || keep(i) {
			authorRows = append(authorRows, []any{a.Email, a.Name})
		}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"repositories"}, []string{"name", "url", "created_at"}, pgx.CopyFromRows(repoRows)); err != nil {
		return keyed{}, err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"authors"}, []string{"email", "name"}, pgx.CopyFromRows(authorRows)); err != nil {
		return keyed{}, err
	}
	return readKeys(ctx, conn, h)
}

// readKeys maps the history's repositories and authors to their ids in the database
// (0 where absent).
func readKeys(ctx context.Context, conn *pgx.Conn, h *history) (keyed, error) {
	k := keyed{repos: make([]int64, len(h.repos)), authors: make([]int64, len(h.authors))}
	byName := map[string]int64{}
	rows, _ := conn.Query(ctx, `SELECT name, id FROM repositories`)
	var name string
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &id}, func() error { byName[name] = id; return nil }); err != nil {
		return k, err
	}
	for i, r := range h.repos {
		k.repos[i] = byName[r.Name]
	}
	byEmail := map[string]int64{}
	rows, _ = conn.Query(ctx, `SELECT email, id FROM authors`)
	if _, err := pgx.ForEachRow(rows, []any{&name, &id}, func() error { byEmail[name] = id; return nil }); err != nil {
		return k, err
	}
	for i, a := range h.authors {
		k.authors[i] = byEmail[a.Email]
	}
	return k, nil
}

// commitSource streams writer w's commits (those keep accepts, all when nil) as COPY
// rows without holding them in memory.
func commitSource(h *history, k keyed, w, writers int, keep func(i int) bool) pgx.CopyFromSource {
	i := w - writers
	return pgx.CopyFromFunc(func() ([]any, error) {
		for {
			i += writers
			if i >= h.n {
				return nil, nil
			}
			if keep != nil && !keep(i) {
				continue
			}
			c := h.commit(i)
			progressAdd(1)
			return []any{k.repos[c.Repo], k.authors[c.Author], c.SHA, c.Message, c.AuthoredAt, c.CommittedAt}, nil
		}
	})
}

// preloadThird writes a third of the input (every third repository, author and
// commit) before an upsert-style run, untimed, so a third of the input conflicts.
func preloadThird(ctx context.Context, e *env) error {
	conn, err := pgx.ConnectConfig(ctx, e.pgxCfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	third := func(i int) bool { return i%3 == 0 }
	k, err := rawCopySmallTables(ctx, conn, e.h, third)
	if err != nil {
		return err
	}
	// Commits of the preloaded third whose repository and author were preloaded too
	// reference them; the rest reference rows the run will create, so the preload
	// writes only commits whose parents exist.
	keep := func(i int) bool {
		if i%3 != 0 {
			return false
		}
		c := e.h.commit(i)
		return k.repos[c.Repo] != 0 && k.authors[c.Author] != 0
	}
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"commits"},
		[]string{"repository_id", "author_id", "sha", "message", "authored_at", "committed_at"},
		commitSourceQuiet(e.h, k, keep))
	return err
}

func commitSourceQuiet(h *history, k keyed, keep func(i int) bool) pgx.CopyFromSource {
	i := -1
	return pgx.CopyFromFunc(func() ([]any, error) {
		for {
			i++
			if i >= h.n {
				return nil, nil
			}
			if !keep(i) {
				continue
			}
			c := h.commit(i)
			return []any{k.repos[c.Repo], k.authors[c.Author], c.SHA, c.Message, c.AuthoredAt, c.CommittedAt}, nil
		}
	})
}

// pivotReference is the classic bulk upsert written by hand: COPY into a temporary
// table, then INSERT … SELECT … ON CONFLICT DO NOTHING, in one transaction per writer.
// It does not report keys.
func pivotReference(ctx context.Context, e *env) (*keyPrint, error) {
	conn, err := pgx.ConnectConfig(ctx, e.pgxCfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var repoRows, authorRows [][]any
		for _, r := range e.h.repos {
			repoRows = append(repoRows, []any{r.Name, r.URL, epoch})
		}
		for _, a := range e.h.authors {
			authorRows = append(authorRows, []any{a.Email, a.Name})
		}
		for _, s := range []string{
			`CREATE TEMP TABLE pivot_repositories (name text, url text, created_at timestamptz) ON COMMIT DROP`,
			`CREATE TEMP TABLE pivot_authors (email text, name text) ON COMMIT DROP`,
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pivot_repositories"}, []string{"name", "url", "created_at"}, pgx.CopyFromRows(repoRows)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pivot_authors"}, []string{"email", "name"}, pgx.CopyFromRows(authorRows)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO repositories (name, url, created_at) SELECT name, url, created_at FROM pivot_repositories ON CONFLICT (name) DO NOTHING`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO authors (email, name) SELECT email, name FROM pivot_authors ON CONFLICT (email) DO NOTHING`)
		return err
	})
	if err != nil {
		return nil, err
	}
	k, err := readKeys(ctx, conn, e.h)
	if err != nil {
		return nil, err
	}
	return nil, parallel(ctx, e.writers, func(ctx context.Context, w int) error {
		conn, err := pgx.ConnectConfig(ctx, e.pgxCfg)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE pivot_commits (repository_id bigint, author_id bigint, sha text, message text, authored_at timestamptz, committed_at timestamptz) ON COMMIT DROP`); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pivot_commits"},
				[]string{"repository_id", "author_id", "sha", "message", "authored_at", "committed_at"},
				commitSource(e.h, k, w, e.writers, nil)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO commits (repository_id, author_id, sha, message, authored_at, committed_at)
SELECT repository_id, author_id, sha, message, authored_at, committed_at FROM pivot_commits
ON CONFLICT (repository_id, sha) DO NOTHING`)
			return err
		})
	})
}
