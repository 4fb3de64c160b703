package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
)

// The graph strategies write what one request of a service writes: a repository with
// ten commits by ten authors, request after request (--requests of them, by --writers
// at once), and time each request. This is where a network round trip costs most.

const graphCommits = 10 // commits, and authors, per request

// Models with database-assigned keys, for graph-gorm: GORM as it is used before
// seqrepo, an IDENTITY key read back with RETURNING. Same tables as package models.
type gormRepository struct {
	ID        int64 `gorm:"primaryKey"`
	Name      string
	URL       string
	CreatedAt time.Time
	Commits   []gormCommit `gorm:"foreignKey:RepositoryID"`
}

func (gormRepository) TableName() string { return "repositories" }

type gormAuthor struct {
	ID    int64 `gorm:"primaryKey"`
	Email string
	Name  string
}

func (gormAuthor) TableName() string { return "authors" }

type gormCommit struct {
	ID           int64 `gorm:"primaryKey"`
	RepositoryID int64
	AuthorID     int64
	SHA          string `gorm:"column:sha"`
	Message      string
	AuthoredAt   time.Time
	CommittedAt  time.Time
	Author       *gormAuthor `gorm:"foreignKey:AuthorID"`
}

func (gormCommit) TableName() string { return "commits" }

// graphRequest is request i's graph, in the seqrepo models.
func graphRequest(i int) models.Repository {
	r := models.Repository{Name: fmt.Sprintf("graph-%06d", i), URL: fmt.Sprintf("https://git.example.com/graph/%06d.git", i), CreatedAt: epoch}
	for j := range graphCommits {
		at := epoch.Add(time.Duration(i*graphCommits+j) * time.Minute)
		r.Commits = append(r.Commits, models.Commit{
			SHA: graphSHA(i, j), Message: fmt.Sprintf("request %d change %d", i, j), AuthoredAt: at, CommittedAt: at,
			Author: &models.Author{Email: fmt.Sprintf("graph-%06d-%02d@example.com", i, j), Name: fmt.Sprintf("Author %d/%d", i, j)},
		})
	}
	return r
}

func graphSHA(i, j int) string { return fmt.Sprintf("%016x%024x", i, j) }

// gormRequest is graphRequest(i) in the models with database-assigned keys.
func gormRequest(i int) gormRepository {
	g := graphRequest(i)
	r := gormRepository{Name: g.Name, URL: g.URL, CreatedAt: g.CreatedAt}
	for _, c := range g.Commits {
		r.Commits = append(r.Commits, gormCommit{SHA: c.SHA, Message: c.Message, AuthoredAt: c.AuthoredAt, CommittedAt: c.CommittedAt,
			Author: &gormAuthor{Email: c.Author.Email, Name: c.Author.Name}})
	}
	return r
}

// latencies collects request times of a run. It is safe for concurrent use.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.d
	l.d = nil
	return d
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// graphStrategy runs e.requests requests, each written by write, timed one by one.
func graphStrategy(write func(ctx context.Context, e *env, i int, keys *keyPrint) error) func(ctx context.Context, e *env) (*keyPrint, error) {
	return func(ctx context.Context, e *env) (*keyPrint, error) {
		keys := &keyPrint{}
		err := parallel(ctx, e.writers, func(ctx context.Context, w int) error {
			for i := w; i < e.requests; i += e.writers {
				start := time.Now()
				if err := write(ctx, e, i, keys); err != nil {
					return fmt.Errorf("request %d: %w", i, err)
				}
				e.lat.add(time.Since(start))
				progressAdd(1)
			}
			return nil
		})
		return keys, err
	}
}

// graphGORM is GORM's db.Create of the graph with IDENTITY keys: a transaction, and an
// INSERT … RETURNING "id" per table.
var graphGORM = graphStrategy(func(ctx context.Context, e *env, i int, keys *keyPrint) error {
	r := gormRequest(i)
	if err := e.plain.WithContext(ctx).Create(&r).Error; err != nil {
		return err
	}
	for _, c := range r.Commits {
		keys.add(c.SHA, c.ID)
	}
	return nil
})

// graphPlugin is GORM's db.Create of the graph with the seqrepo plugin: keys first,
// then GORM's transaction and an INSERT per table.
var graphPlugin = graphStrategy(func(ctx context.Context, e *env, i int, keys *keyPrint) error {
	r := graphRequest(i)
	if err := e.seq.WithContext(ctx).Create(&r).Error; err != nil {
		return err
	}
	for _, c := range r.Commits {
		keys.add(c.SHA, c.ID)
	}
	return nil
})

// graphPipeline is Repository.CreateGraph: keys first, then BEGIN, an INSERT per table
// and COMMIT in one pipeline.
func graphPipeline(ctx context.Context, e *env) (*keyPrint, error) {
	repos, err := repo.New[models.Repository](e.seq)
	if err != nil {
		return nil, err
	}
	return graphStrategy(func(ctx context.Context, e *env, i int, keys *keyPrint) error {
		rows := []models.Repository{graphRequest(i)}
		if err := repos.CreateGraph(ctx, rows); err != nil {
			return err
		}
		for _, c := range rows[0].Commits {
			keys.add(c.SHA, c.ID)
		}
		return nil
	})(ctx, e)
}

// verifyGraph checks what a graph run left: every request's repository, authors and
// commits exactly once, every commit pointing at its own repository and author, and
// the commit keys the strategy reported.
func verifyGraph(ctx context.Context, conn *pgx.Conn, requests int, keys *keyPrint) error {
	var problems []string
	for table, want := range map[string]int{"repositories": requests, "authors": requests * graphCommits, "commits": requests * graphCommits} {
		var n, distinct int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n, &distinct); err != nil {
			return err
		}
		if n != want || distinct != n {
			problems = append(problems, fmt.Sprintf("%s: %d rows (%d keys), want %d", table, n, distinct, want))
		}
	}
	rows, err := conn.Query(ctx, `SELECT c.id, c.sha, r.name, a.email FROM commits c
JOIN repositories r ON r.id = c.repository_id JOIN authors a ON a.id = c.author_id`)
	if err != nil {
		return err
	}
	var (
		id               int64
		sha, name, email string
		joined, wrong    int
		inTable          keyPrint
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &sha, &name, &email}, func() error {
		joined++
		var i, j int
		if _, err := fmt.Sscanf(sha, "%016x%024x", &i, &j); err != nil || graphSHA(i, j) != sha ||
			name != fmt.Sprintf("graph-%06d", i) || email != fmt.Sprintf("graph-%06d-%02d@example.com", i, j) {
			wrong++
		}
		inTable.add(sha, id)
		return nil
	})
	if err != nil {
		return err
	}
	if joined != requests*graphCommits || wrong > 0 {
		problems = append(problems, fmt.Sprintf("commits: %d joined to their repository and author (%d wrong), want %d", joined, wrong, requests*graphCommits))
	}
	if keys != nil && !keys.equal(&inTable) {
		problems = append(problems, "commits: the keys in the table differ from the keys the strategy reported")
	}
	if len(problems) > 0 {
		return fmt.Errorf("verification failed: %v", problems)
	}
	return nil
}

// isGraph reports whether the strategy named name is a graph strategy.
func isGraph(name string) bool {
	return name == "graph-gorm" || name == "graph-plugin" || name == "graph"
}

// roundTrips returns the network round trips the proxy has carried, 0 without one.
func (e *env) roundTrips() int64 {
	if e.proxy == nil {
		return 0
	}
	return e.proxy.roundTrips()
}
