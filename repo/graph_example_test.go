package repo_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/seqrepo/seqrepo/models"
	"github.com/seqrepo/seqrepo/repo"
)

func ExampleRepository_CreateGraph() {
	ctx := context.Background()
	db := openExample()
	repos, err := repo.New[models.Repository](db)
	if err != nil {
		log.Fatal(err)
	}
	ada := &models.Author{Email: "ada@graph.example", Name: "Ada"}
	alan := &models.Author{Email: "alan@graph.example", Name: "Alan"}
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := []models.Repository{{Name: "graph-example", URL: "https://example.com/g.git", Commits: []models.Commit{
		{SHA: "1111111111111111111111111111111111111111", Message: "first", Author: ada, AuthoredAt: at, CommittedAt: at},
		{SHA: "2222222222222222222222222222222222222222", Message: "second", Author: alan, AuthoredAt: at, CommittedAt: at},
		{SHA: "3333333333333333333333333333333333333333", Message: "third", Author: ada, AuthoredAt: at, CommittedAt: at},
	}}}
	// Keys from memory, then BEGIN, INSERT repositories, INSERT authors, INSERT
	// commits, COMMIT: one round trip.
	if err := repos.CreateGraph(ctx, rows); err != nil {
		log.Fatal(err)
	}
	c := rows[0].Commits[2]
	fmt.Println(c.RepositoryID == rows[0].ID, c.AuthorID == ada.ID, ada.ID != alan.ID)

	var n int64
	db.Model(&models.Commit{}).Where("author_id = ?", ada.ID).Count(&n)
	fmt.Println(n)
	// Output:
	// true true true
	// 2
}
