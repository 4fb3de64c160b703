package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// history is the input every strategy ingests: a few repositories, a few hundred
// authors, and n commits. Commits are produced on demand by commit(i), so a
// generated history of a million commits is never held in memory.
type history struct {
	repos   []repoIn
	authors []authorIn
	n       int
	commit  func(i int) commitIn
	// index returns the position of the commit with the given sha, for verification.
	index func(sha string) (int, bool)
}

type repoIn struct{ Name, URL string }

type authorIn struct{ Email, Name string }

type commitIn struct {
	Repo, Author int // indexes into history.repos and history.authors
	SHA          string
	Message      string
	AuthoredAt   time.Time
	CommittedAt  time.Time
}

const (
	generatedRepos   = 5
	generatedAuthors = 300
	messageBytes     = 200
)

var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

var words = strings.Fields(`fix add remove refactor update parser allocator sequence batch insert copy
	upsert conflict handler test docs readme index cache commit author repository migrate schema
	query plan lock retry timeout context cancel error wrap client server pool connection key block`)

// generatedHistory is deterministic: the same n gives the same commits on every
// machine. A commit's sha starts with its index in 16 hex digits, so verification can
// regenerate the expected commit from the row alone, in constant memory.
func generatedHistory(n int) *history {
	h := &history{n: n}
	for r := 0; r < generatedRepos; r++ {
		h.repos = append(h.repos, repoIn{Name: fmt.Sprintf("repo-%d", r), URL: fmt.Sprintf("https://git.example.com/seqrepo/repo-%d.git", r)})
	}
	for a := 0; a < generatedAuthors; a++ {
		h.authors = append(h.authors, authorIn{Email: fmt.Sprintf("author-%03d@example.com", a), Name: fmt.Sprintf("Author %03d", a)})
	}
	h.commit = func(i int) commitIn {
		rng := rand.New(rand.NewPCG(uint64(i), 0x5e9e90))
		var msg strings.Builder
		msg.Grow(messageBytes + 16)
		for msg.Len() < messageBytes {
			if msg.Len() > 0 {
				msg.WriteByte(' ')
			}
			msg.WriteString(words[rng.IntN(len(words))])
		}
		authored := epoch.Add(time.Duration(i) * time.Minute)
		return commitIn{
			Repo:        rng.IntN(generatedRepos),
			Author:      rng.IntN(generatedAuthors),
			SHA:         fmt.Sprintf("%016x%024x", i, rng.Uint64()&(1<<63-1)),
			Message:     msg.String(),
			AuthoredAt:  authored,
			CommittedAt: authored.Add(time.Duration(rng.IntN(3600)) * time.Second),
		}
	}
	h.index = func(sha string) (int, bool) {
		if len(sha) != 40 {
			return 0, false
		}
		i, err := strconv.ParseInt(sha[:16], 16, 64)
		if err != nil || i < 0 || int(i) >= n {
			return 0, false
		}
		return int(i), h.commit(int(i)).SHA == sha
	}
	return h
}

// gitHistory reads the history of the git repository at path with git log. Real
// histories fit in memory; the commits are kept in a slice.
func gitHistory(ctx context.Context, path string, limit int) (*history, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	args := []string{"-C", abs, "log", "--no-color", "--format=%H%x00%an%x00%ae%x00%at%x00%ct%x00%B%x1e"}
	if limit > 0 {
		args = append(args, fmt.Sprintf("--max-count=%d", limit))
	}
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("git log in %s: %v: %s", abs, err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("git log in %s: %w", abs, err)
	}
	h := &history{repos: []repoIn{{Name: filepath.Base(abs), URL: "file://" + abs}}}
	authorIdx := map[string]int{}
	var commits []commitIn
	shaIdx := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, 0x1e); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(bytes.TrimSpace(data)) > 0 {
			return len(data), data, nil
		}
		if atEOF {
			return len(data), nil, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		rec := strings.TrimLeft(sc.Text(), "\n")
		f := strings.SplitN(rec, "\x00", 6)
		if len(f) != 6 {
			continue
		}
		email := strings.ToLower(strings.TrimSpace(f[2]))
		if email == "" {
			email = "unknown@invalid"
		}
		a, ok := authorIdx[email]
		if !ok {
			a = len(h.authors)
			authorIdx[email] = a
			h.authors = append(h.authors, authorIn{Email: email, Name: f[1]})
		}
		at, _ := strconv.ParseInt(f[3], 10, 64)
		ct, _ := strconv.ParseInt(f[4], 10, 64)
		if _, dup := shaIdx[f[0]]; dup {
			continue
		}
		shaIdx[f[0]] = len(commits)
		commits = append(commits, commitIn{
			SHA: f[0], Author: a, Message: sanitizeText(strings.TrimSpace(f[5])),
			AuthoredAt: time.Unix(at, 0).UTC(), CommittedAt: time.Unix(ct, 0).UTC(),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(commits) == 0 {
		return nil, fmt.Errorf("git log in %s: no commits", abs)
	}
	h.n = len(commits)
	h.commit = func(i int) commitIn { return commits[i] }
	h.index = func(sha string) (int, bool) { i, ok := shaIdx[sha]; return i, ok }
	return h, nil
}

// sanitizeText makes a commit message storable in a PostgreSQL text column: git
// allows bytes PostgreSQL rejects (NUL, invalid UTF-8).
func sanitizeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// checksum is a cheap fingerprint of a message, for verification.
func checksum(s string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(s))
	return f.Sum64()
}
