package main

import (
	"context"
	"database/sql"
	"iter"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
)

// openSeqrepo opens GORM on sqlDB with the seqrepo plugin registered.
func openSeqrepo(sqlDB *sql.DB, alloc int) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, err
	}
	if err := db.Use(repo.NewPluginWithConfig(pluginConfig(alloc))); err != nil {
		return nil, err
	}
	return db, nil
}

// repositories are the seqrepo repositories of one run.
type repositories struct {
	repos   *repo.Repository[models.Repository]
	authors *repo.Repository[models.Author]
	commits *repo.Repository[models.Commit]
}

func openRepositories(e *env) (repositories, error) {
	var rs repositories
	var err error
	cfg := repo.Config{BatchSize: e.batch}
	if rs.repos, err = repo.NewWithConfig[models.Repository](e.seq, cfg); err != nil {
		return rs, err
	}
	if rs.authors, err = repo.NewWithConfig[models.Author](e.seq, cfg); err != nil {
		return rs, err
	}
	rs.commits, err = repo.NewWithConfig[models.Commit](e.seq, cfg)
	return rs, err
}

// writerCommits yields writer w's commits, made one at a time.
func writerCommits(e *env, k keyed, w int) iter.Seq2[models.Commit, error] {
	return func(yield func(models.Commit, error) bool) {
		for i := w; i < e.h.n; i += e.writers {
			if !yield(k.commit(e.h.commit(i)), nil) {
				return
			}
		}
	}
}

// seqCopy writes with Repository.Copy and CopySeq: keys assigned first, one
// allocation and one COPY per batch, the commits streamed so memory stays bounded.
func seqCopy(ctx context.Context, e *env) (*keyPrint, error) {
	rs, err := openRepositories(e)
	if err != nil {
		return nil, err
	}
	repos, authors := repoModels(e.h), authorModels(e.h)
	if err := rs.repos.Copy(ctx, repos); err != nil {
		return nil, err
	}
	if err := rs.authors.Copy(ctx, authors); err != nil {
		return nil, err
	}
	k := keyedFrom(repos, authors)
	keys := &keyPrint{}
	err = parallel(ctx, e.writers, func(ctx context.Context, w int) error {
		_, err := rs.commits.CopySeq(ctx, writerCommits(e, k, w), func(batch []models.Commit) error {
			for _, c := range batch {
				keys.add(c.SHA, c.ID)
			}
			progressAdd(len(batch))
			return nil
		})
		return err
	})
	return keys, err
}

// seqUpsert writes with Repository.Upsert, DO NOTHING on the natural keys, as the
// pivot reference does, and gets back every row's key, inserted or already there.
func seqUpsert(ctx context.Context, e *env) (*keyPrint, error) {
	rs, err := openRepositories(e)
	if err != nil {
		return nil, err
	}
	repos, authors := repoModels(e.h), authorModels(e.h)
	if _, err := rs.repos.Upsert(ctx, repos, repo.OnConflict{Columns: []string{"name"}}); err != nil {
		return nil, err
	}
	if _, err := rs.authors.Upsert(ctx, authors, repo.OnConflict{Columns: []string{"email"}}); err != nil {
		return nil, err
	}
	k := keyedFrom(repos, authors)
	keys := &keyPrint{}
	err = parallel(ctx, e.writers, func(ctx context.Context, w int) error {
		var commits []models.Commit
		for c := range writerCommits(e, k, w) {
			commits = append(commits, c)
		}
		if _, err := rs.commits.Upsert(ctx, commits, repo.OnConflict{Columns: []string{"repository_id", "sha"}}); err != nil {
			return err
		}
		for _, c := range commits {
			keys.add(c.SHA, c.ID)
		}
		progressAdd(len(commits))
		return nil
	})
	return keys, err
}

func keyedFrom(repos []models.Repository, authors []models.Author) keyed {
	var k keyed
	for _, r := range repos {
		k.repos = append(k.repos, r.ID)
	}
	for _, a := range authors {
		k.authors = append(k.authors, a.ID)
	}
	return k
}

// pluginConfig makes the plugin's allocation size match --alloc (the models' tags
// say 50; setIncrement has set every sequence to alloc).
func pluginConfig(alloc int) repo.PluginConfig {
	return repo.PluginConfig{AllocationSize: alloc}
}
