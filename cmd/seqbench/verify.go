package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// verify checks what a run left in the tables against the history: every row
// present exactly once, no duplicate keys, every commit pointing at its own author
// and repository with its own message, and, when the strategy reported keys, those
// keys are the ones in the table. It reads the commits as a stream, in constant memory.
func verify(ctx context.Context, conn *pgx.Conn, h *history, keys *keyPrint) error {
	var problems []string
	check := func(table string, want int) {
		var n, distinct int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n, &distinct); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", table, err))
			return
		}
		if n != want {
			problems = append(problems, fmt.Sprintf("%s: %d rows, want %d", table, n, want))
		}
		if distinct != n {
			problems = append(problems, fmt.Sprintf("%s: %d duplicate keys", table, n-distinct))
		}
	}
	check("repositories", len(h.repos))
	check("authors", len(h.authors))
	check("commits", h.n)

	rows, err := conn.Query(ctx, `SELECT c.id, c.sha, a.email, r.name, c.message
FROM commits c JOIN authors a ON a.id = c.author_id JOIN repositories r ON r.id = c.repository_id`)
	if err != nil {
		return err
	}
	var (
		id                        int64
		sha, email, repo, message string
		seen, wrong               int
		inTable                   keyPrint
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &sha, &email, &repo, &message}, func() error {
		seen++
		i, ok := h.index(sha)
		if !ok {
			wrong++
			return nil
		}
		c := h.commit(i)
		if h.authors[c.Author].Email != email || h.repos[c.Repo].Name != repo || checksum(c.Message) != checksum(message) {
			wrong++
		}
		inTable.add(sha, id)
		return nil
	})
	if err != nil {
		return err
	}
	if seen != h.n {
		problems = append(problems, fmt.Sprintf("commits: %d joined to their author and repository, want %d", seen, h.n))
	}
	if wrong > 0 {
		problems = append(problems, fmt.Sprintf("commits: %d with the wrong sha, author, repository or message", wrong))
	}
	if keys != nil && keys.n != h.n {
		problems = append(problems, fmt.Sprintf("strategy reported %d commit keys, want %d", keys.n, h.n))
	} else if keys != nil && !keys.equal(&inTable) {
		problems = append(problems, "commits: the keys in the table differ from the keys the strategy reported")
	}
	if len(problems) > 0 {
		return fmt.Errorf("verification failed: %v", problems)
	}
	return nil
}
