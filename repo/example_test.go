package repo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// openExample opens the examples database with the plugin registered, as a service does
// at startup.
func openExample() *gorm.DB {
	db, err := gorm.Open(postgres.Open(exampleDSN), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Use(repo.NewPlugin()); err != nil {
		log.Fatal(err)
	}
	return db
}

func ExamplePlugin() {
	db, err := gorm.Open(postgres.Open(exampleDSN), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	// Check every model's sequence now, then assign keys before every create.
	if err := db.Use(repo.NewPluginWithConfig(repo.PluginConfig{Validate: models.All()})); err != nil {
		log.Fatal(err)
	}

	ada := models.Author{Email: "ada@plugin.example", Name: "Ada"}
	project := models.Repository{Name: "plugin-example", URL: "https://example.com/p.git", Commits: []models.Commit{
		{SHA: "3f786850e387550fdab836ed7e6dc881de23001b", Message: "first", Author: &ada},
		{SHA: "89e6c98d92887913cadf06b2adb97f26cde4849b", Message: "second", Author: &ada},
	}}
	// One INSERT per table, every key known before it: no RETURNING.
	if err := db.Create(&project).Error; err != nil {
		log.Fatal(err)
	}
	c := project.Commits[1]
	fmt.Println(c.ID > 0, c.RepositoryID == project.ID, c.AuthorID == ada.ID)
	// Output: true true true
}

func ExampleRepository_CreateAll() {
	ctx := context.Background()
	db := openExample()
	authors, err := repo.New[models.Author](db)
	if err != nil {
		log.Fatal(err)
	}
	rows := []models.Author{
		{Email: "grace@createall.example", Name: "Grace"},
		{Email: "linus@createall.example", Name: "Linus"},
	}
	// Batched INSERTs in one transaction; the keys are in rows afterwards.
	if err := authors.CreateAll(ctx, rows); err != nil {
		log.Fatal(err)
	}
	got, err := authors.Get(ctx, rows[1].ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Name)
	// Output: Linus
}

func ExampleRepository_Copy() {
	ctx := context.Background()
	db := openExample()
	project := models.Repository{Name: "copy-example", URL: "https://example.com/c.git"}
	author := models.Author{Email: "ken@copy.example", Name: "Ken"}
	if err := db.Create(&project).Error; err != nil {
		log.Fatal(err)
	}
	if err := db.Create(&author).Error; err != nil {
		log.Fatal(err)
	}

	// repo.New uses the defaults; NewWithConfig sets the rows per COPY or INSERT.
	commits, err := repo.NewWithConfig[models.Commit](db, repo.Config{BatchSize: 5000})
	if err != nil {
		log.Fatal(err)
	}
	rows := make([]models.Commit, 10_000)
	for i := range rows {
		rows[i] = models.Commit{RepositoryID: project.ID, AuthorID: author.ID,
			SHA: fmt.Sprintf("%040x", i), Message: "change", AuthoredAt: time.Now(), CommittedAt: time.Now()}
	}
	// Keys first, then one COPY.
	if err := commits.Copy(ctx, rows); err != nil {
		log.Fatal(err)
	}
	last, err := commits.Get(ctx, rows[9_999].ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(last.SHA == rows[9_999].SHA)
	// Output: true
}

func ExampleRepository_Upsert() {
	ctx := context.Background()
	db := openExample()
	authors, err := repo.New[models.Author](db)
	if err != nil {
		log.Fatal(err)
	}
	if err := authors.Create(ctx, &models.Author{Email: "barbara@upsert.example", Name: "Barbara"}); err != nil {
		log.Fatal(err)
	}

	rows := []models.Author{
		{Email: "barbara@upsert.example", Name: "Barbara Liskov"}, // already there
		{Email: "edsger@upsert.example", Name: "Edsger"},
		{Email: "edsger@upsert.example", Name: "Edsger W. Dijkstra"}, // twice in the input
	}
	res, err := authors.Upsert(ctx, rows, repo.OnConflict{Columns: []string{"email"}, Update: []string{"name"}})
	if err != nil {
		log.Fatal(err)
	}
	edsger, err := authors.Get(ctx, rows[1].ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Inserted, rows[1].ID == rows[2].ID, edsger.Name)
	all, err := authors.GetMany(ctx, []int64{rows[0].ID, rows[1].ID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(slices.IndexFunc(all, func(a models.Author) bool { return a.Name == "Barbara Liskov" }))
	// Output:
	// [false true false] true Edsger W. Dijkstra
	// 0
}

// Model is a gorm.Model-style base struct: its tag names no sequence, so every model
// that embeds it draws keys from its own key column's sequence.
type Model struct {
	ID        uint `gorm:"primaryKey" idgen:"allocationSize:50"`
	CreatedAt time.Time
}

type Invoice struct {
	Model
	Number string
	Lines  []InvoiceLine
}

type InvoiceLine struct {
	Model
	InvoiceID uint
	Item      string
}

func ExampleAutoMigrate() {
	ctx := context.Background()
	db := openExample()
	// GORM's AutoMigrate, then every keyed model's sequence at INCREMENT 50 and past its
	// table's keys. Safe at every start, from many instances at once.
	if err := repo.AutoMigrate(ctx, db, &Invoice{}, &InvoiceLine{}); err != nil {
		log.Fatal(err)
	}
	inv := Invoice{Number: "2026-001", Lines: []InvoiceLine{{Item: "tea"}, {Item: "cake"}}}
	if err := db.Create(&inv).Error; err != nil {
		log.Fatal(err)
	}
	fmt.Println(inv.ID, inv.Lines[0].ID, inv.Lines[1].ID, inv.Lines[1].InvoiceID == inv.ID)
	// Output: 1 1 2 true
}

func ExampleInTx() {
	ctx := context.Background()
	db := openExample()
	repos, err := repo.New[models.Repository](db)
	if err != nil {
		log.Fatal(err)
	}
	authors, err := repo.New[models.Author](db)
	if err != nil {
		log.Fatal(err)
	}
	commits, err := repo.New[models.Commit](db)
	if err != nil {
		log.Fatal(err)
	}
	project := models.Repository{Name: "intx-example", URL: "https://example.com/t.git"}
	author := models.Author{Email: "barbara@intx.example", Name: "Barbara"}
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

	// One transaction on one held connection; WithTx binds each Repository to it.
	err = repo.InTx(ctx, db, func(tx *gorm.DB) error {
		if err := repos.WithTx(tx).Create(ctx, &project); err != nil {
			return err
		}
		if err := authors.WithTx(tx).Create(ctx, &author); err != nil {
			return err
		}
		rows := []models.Commit{
			{RepositoryID: project.ID, AuthorID: author.ID, SHA: fmt.Sprintf("%040x", 1), Message: "first", AuthoredAt: at, CommittedAt: at},
			{RepositoryID: project.ID, AuthorID: author.ID, SHA: fmt.Sprintf("%040x", 2), Message: "second", AuthoredAt: at, CommittedAt: at},
		}
		return commits.WithTx(tx).Copy(ctx, rows) // COPY inside the same transaction
	})
	if err != nil {
		log.Fatal(err)
	}
	var n int64
	if err := db.Model(&models.Commit{}).Where("repository_id = ?", project.ID).Count(&n).Error; err != nil {
		log.Fatal(err)
	}
	fmt.Println("committed:", n, "commits")

	// An error from fn rolls everything back, the rows written before it included.
	failed := models.Repository{Name: "intx-rolled-back", URL: "https://example.com/r.git"}
	err = repo.InTx(ctx, db, func(tx *gorm.DB) error {
		if err := repos.WithTx(tx).Create(ctx, &failed); err != nil {
			return err
		}
		return errors.New("changed my mind")
	})
	_, getErr := repos.Get(ctx, failed.ID)
	fmt.Println("rolled back:", err, errors.Is(getErr, repo.ErrNotFound))
	// Output:
	// committed: 2 commits
	// rolled back: changed my mind true
}

func ExampleRepository_CopySeq() {
	ctx := context.Background()
	db := openExample()
	project := models.Repository{Name: "copyseq-example", URL: "https://example.com/s.git"}
	author := models.Author{Email: "ken@copyseq.example", Name: "Ken"}
	if err := db.Create(&project).Error; err != nil {
		log.Fatal(err)
	}
	if err := db.Create(&author).Error; err != nil {
		log.Fatal(err)
	}
	commits, err := repo.NewWithConfig[models.Commit](db, repo.Config{BatchSize: 1000})
	if err != nil {
		log.Fatal(err)
	}
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	// Rows made one at a time, say while reading a file: memory holds one batch.
	seq := func(yield func(models.Commit, error) bool) {
		for i := range 2500 {
			c := models.Commit{RepositoryID: project.ID, AuthorID: author.ID,
				SHA: fmt.Sprintf("%040x", i), Message: "change", AuthoredAt: at, CommittedAt: at}
			if !yield(c, nil) {
				return
			}
		}
	}
	var batches []int
	n, err := commits.CopySeq(ctx, seq, func(batch []models.Commit) error {
		batches = append(batches, len(batch)) // keys are set; the slice is reused
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, batches)
	// Output: 2500 [1000 1000 500]
}

// Sprocket's sequence was made with INCREMENT 10, but its tag says allocationSize 50.
type Sprocket struct {
	ID   int64 `gorm:"primaryKey" idgen:"sequence:sprockets_id_seq;allocationSize:50"`
	Name string
}

func ExamplePluginConfig() {
	db, err := gorm.Open(postgres.Open(exampleDSN), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Exec(`CREATE SEQUENCE IF NOT EXISTS sprockets_id_seq INCREMENT 10;
		CREATE TABLE IF NOT EXISTS sprockets (id bigint PRIMARY KEY, name text)`).Error; err != nil {
		log.Fatal(err)
	}

	// At startup: check every model's sequence before the plugin is registered.
	err = db.Use(repo.NewPluginWithConfig(repo.PluginConfig{Validate: []any{&models.Commit{}, &Sprocket{}}}))

	// One error type lists every problem: *idgen.CheckError, with one *idgen.KeyError
	// per model, as migrations.Validate and idgen.Check return.
	var check *idgen.CheckError
	var key *idgen.KeyError
	fmt.Println(errors.As(err, &check), len(check.Problems))
	fmt.Println(errors.As(err, &key), key.Model, key.Table, key.Sequence)
	fmt.Println(errors.Is(err, idgen.ErrIncrementMismatch))
	// Output:
	// true 1
	// true repo_test.Sprocket sprockets sprockets_id_seq
	// true
}

func ExampleDuplicateKeyError() {
	ctx := context.Background()
	db := openExample()
	authors, err := repo.New[models.Author](db)
	if err != nil {
		log.Fatal(err)
	}
	rows := []models.Author{
		{Email: "alan@errors.example", Name: "Alan"},
		{Email: "alan@errors.example", Name: "Alan Turing"},
	}
	// The batch violates authors_email_key: nothing is written, and the keys it took
	// are taken back out of rows.
	err = authors.CreateAll(ctx, rows)
	var dup *repo.DuplicateKeyError
	if errors.As(err, &dup) {
		fmt.Println(dup.Table, dup.Constraint, rows[0].ID)
	}
	fmt.Println(errors.Is(err, gorm.ErrDuplicatedKey))
	// Output:
	// authors authors_email_key 0
	// true
}

func ExampleErrNotFound() {
	ctx := context.Background()
	db := openExample()
	authors, err := repo.New[models.Author](db)
	if err != nil {
		log.Fatal(err)
	}
	_, err = authors.Get(ctx, -1)
	// It matches GORM's sentinel too, so code written against GORM keeps working.
	fmt.Println(errors.Is(err, repo.ErrNotFound), errors.Is(err, gorm.ErrRecordNotFound))
	// Output: true true
}
