package models_test

import (
	"context"
	"database/sql"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/pgtest"
	"github.com/seqrepo/seqrepo/migrations"
	"github.com/seqrepo/seqrepo/models"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestSchemas(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"Repository": "repositories", "Author": "authors", "Commit": "commits", "Tenant": "tenants",
	}
	all := models.All()
	require.Len(t, all, len(want))
	for _, m := range all {
		s, err := schema.Parse(m, &sync.Map{}, schema.NamingStrategy{})
		require.NoError(t, err)
		assert.Equal(t, want[s.Name], s.Table, s.Name)

		pk := s.PrioritizedPrimaryField
		require.NotNil(t, pk, s.Name)
		assert.Equal(t, "id", pk.DBName)
		cfg, err := idgen.ParseTag(pk.Tag.Get(idgen.TagKey))
		require.NoError(t, err, s.Name)
		assert.Equal(t, idgen.Config{Sequence: s.Table + "_id_seq", AllocationSize: 50}, cfg, s.Name)

		// The key is the client's: GORM neither reads it back (RETURNING) nor leaves it out.
		assert.False(t, pk.AutoIncrement, "%s: key is not auto-increment", s.Name)
		assert.False(t, pk.HasDefaultValue, "%s: key has no database default", s.Name)
		assert.Empty(t, s.FieldsWithDefaultDBValue, "%s: nothing for RETURNING", s.Name)
	}
	for i, m := range models.All() {
		assert.NotSame(t, all[i], m, "All returns new values")
	}
}

func TestAssociations(t *testing.T) {
	t.Parallel()
	cache := &sync.Map{}
	commit, err := schema.Parse(&models.Commit{}, cache, schema.NamingStrategy{})
	require.NoError(t, err)
	for name, fk := range map[string]string{"Repository": "repository_id", "Author": "author_id"} {
		rel := commit.Relationships.Relations[name]
		require.NotNil(t, rel, name)
		assert.Equal(t, schema.BelongsTo, rel.Type, name)
		require.Len(t, rel.References, 1)
		assert.Equal(t, fk, rel.References[0].ForeignKey.DBName)
	}
	repo, err := schema.Parse(&models.Repository{}, cache, schema.NamingStrategy{})
	require.NoError(t, err)
	rel := repo.Relationships.Relations["Commits"]
	require.NotNil(t, rel)
	assert.Equal(t, schema.HasMany, rel.Type)
	assert.Equal(t, "repository_id", rel.References[0].ForeignKey.DBName)
}

// migrated returns a GORM handle on a database with seqrepo's migrations applied.
func migrated(t *testing.T) (*gorm.DB, *sql.DB) {
	t.Helper()
	dsn := pgtest.NewDatabase(t, pgtest.WithTemplate("migrated", func(ctx context.Context, dsn string) error {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		return migrations.Up(ctx, db)
	}))
	sqlDB, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { sqlDB.Close() })
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	return gdb, sqlDB
}

// TestNoReturning shows why the keys say autoIncrement:false: without it GORM adds
// RETURNING "id" to every INSERT of an int64 primary key.
func TestNoReturning(t *testing.T) {
	t.Parallel()
	gdb, _ := migrated(t)
	dry := gdb.Session(&gorm.Session{DryRun: true})
	for _, m := range []any{
		&models.Repository{ID: 1}, &models.Author{ID: 1}, &models.Commit{ID: 1}, &models.Tenant{ID: 1},
		&[]models.Commit{{ID: 1}, {ID: 2}},
	} {
		stmt := dry.Create(m).Statement
		assert.NotContains(t, stmt.SQL.String(), "RETURNING", stmt.SQL.String())
		assert.Contains(t, stmt.SQL.String(), `("id",`, "the key is always written")
	}

	type withoutTag struct {
		ID   int64 `gorm:"primaryKey"`
		Name string
	}
	sqlText := dry.Table("authors").Create(&withoutTag{ID: 1}).Statement.SQL.String()
	assert.Contains(t, sqlText, `RETURNING "id"`, "GORM's default for an int64 primary key")
}

func TestCreateAndPreload(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	gdb, sqlDB := migrated(t)
	alloc := func(seq string) *idgen.Allocator {
		a, err := idgen.New(ctx, sqlDB, idgen.Config{Sequence: seq, AllocationSize: 50})
		require.NoError(t, err)
		return a
	}
	next := func(a *idgen.Allocator) int64 {
		k, err := a.Next(ctx)
		require.NoError(t, err)
		return k
	}
	repos, authors, commits, tenants := alloc("repositories_id_seq"), alloc("authors_id_seq"), alloc("commits_id_seq"), alloc("tenants_id_seq")

	ada := &models.Author{ID: next(authors), Email: "ada@example.com", Name: "Ada"}
	when := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	repo := &models.Repository{ID: next(repos), Name: "seqrepo", URL: "https://example.com/seqrepo.git"}
	for i, sha := range []string{"0123456789abcdef0123456789abcdef01234567", "89abcdef0123456789abcdef0123456789abcdef"} {
		repo.Commits = append(repo.Commits, models.Commit{
			ID: next(commits), AuthorID: ada.ID, Author: ada, SHA: sha, Message: "commit " + sha[:2],
			AuthoredAt: when.Add(time.Duration(i) * time.Hour), CommittedAt: when.Add(time.Duration(i) * time.Hour),
		})
	}
	// One Create writes the repository, then the author (belongs-to), then both commits.
	require.NoError(t, gdb.WithContext(ctx).Create(repo).Error)

	var got models.Repository
	require.NoError(t, gdb.WithContext(ctx).Preload("Commits.Author").Preload("Commits.Repository").First(&got, repo.ID).Error)
	assert.Equal(t, "seqrepo", got.Name)
	require.Len(t, got.Commits, 2)
	for _, c := range got.Commits {
		assert.Equal(t, repo.ID, c.RepositoryID)
		require.NotNil(t, c.Author)
		assert.Equal(t, "ada@example.com", c.Author.Email)
		require.NotNil(t, c.Repository)
		assert.Equal(t, repo.ID, c.Repository.ID)
	}
	assert.False(t, got.CreatedAt.IsZero())

	// A SHA must be 40 lowercase hex characters; a repository's SHAs are unique.
	bad := models.Commit{ID: next(commits), RepositoryID: repo.ID, AuthorID: ada.ID, SHA: "XYZ", AuthoredAt: when, CommittedAt: when}
	assert.Error(t, gdb.WithContext(ctx).Create(&bad).Error)
	dup := models.Commit{ID: next(commits), RepositoryID: repo.ID, AuthorID: ada.ID, SHA: repo.Commits[0].SHA, AuthoredAt: when, CommittedAt: when}
	assert.Error(t, gdb.WithContext(ctx).Create(&dup).Error)

	// Metadata round-trips through jsonb; nil is stored as {}.
	t1 := &models.Tenant{ID: next(tenants), Slug: "acme", Name: "Acme", Metadata: map[string]any{"plan": "pro", "seats": 5.0}}
	t2 := &models.Tenant{ID: next(tenants), Slug: "empty", Name: "Empty"}
	require.NoError(t, gdb.WithContext(ctx).Create([]*models.Tenant{t1, t2}).Error)
	var back []models.Tenant
	require.NoError(t, gdb.WithContext(ctx).Order("slug").Find(&back).Error)
	require.Len(t, back, 2)
	assert.Equal(t, models.Metadata{"plan": "pro", "seats": 5.0}, back[0].Metadata)
	assert.Equal(t, models.Metadata{}, back[1].Metadata)
	var raw string
	require.NoError(t, sqlDB.QueryRowContext(ctx, `SELECT metadata::text FROM tenants WHERE slug = 'empty'`).Scan(&raw))
	assert.Equal(t, "{}", raw)
}

func TestMetadataValueScan(t *testing.T) {
	t.Parallel()
	v, err := models.Metadata(nil).Value()
	require.NoError(t, err)
	assert.Equal(t, "{}", v)
	v, err = models.Metadata{"a": []any{1, "x"}}.Value()
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":[1,"x"]}`, v.(string))
	_, err = models.Metadata{"f": func() {}}.Value()
	assert.Error(t, err)

	var m models.Metadata
	require.NoError(t, m.Scan([]byte(`{"k":"v"}`)))
	assert.Equal(t, models.Metadata{"k": "v"}, m)
	require.NoError(t, m.Scan(`{"n":1}`))
	assert.Equal(t, models.Metadata{"n": 1.0}, m)
	require.NoError(t, m.Scan(nil))
	assert.Nil(t, m)
	require.NoError(t, m.Scan("null"))
	assert.Nil(t, m)
	assert.Error(t, m.Scan(`[1,2]`), "not an object")
	assert.Error(t, m.Scan(42))
}
