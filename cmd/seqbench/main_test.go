package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

type jsonReport struct {
	Meta    metaInfo  `json:"meta"`
	Results []*result `json:"results"`
}

// runJSON runs seqbench with --json against a fresh database and decodes the report.
func runJSON(t *testing.T, args ...string) (jsonReport, int, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), append([]string{"--dsn", dsn, "--json"}, args...), &stdout, &stderr)
	var rep jsonReport
	if code == 0 {
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "stdout: %s", stdout.String())
	}
	return rep, code, stderr.String()
}

func TestEveryStrategyVerifies(t *testing.T) {
	const rows, batch = 900, 200
	rep, code, stderr := runJSON(t, "--rows", "900", "--batch", "200", "--repeat", "1", "--writers", "2", "--requests", "20")
	require.Equal(t, 0, code, stderr)
	require.Len(t, rep.Results, len(allStrategies()))
	assert.Equal(t, rows, rep.Meta.Commits)
	byName := map[string]*result{}
	for _, r := range rep.Results {
		byName[r.Strategy] = r
		assert.True(t, r.Verified, "%s: %s", r.Strategy, r.Error)
		if isGraph(r.Strategy) {
			assert.Equal(t, 20*21, r.Rows, r.Strategy)
			assert.Positive(t, r.P99ms, r.Strategy)
		} else {
			assert.Equal(t, rows, r.Rows, r.Strategy)
		}
		assert.Len(t, r.Runs, 1, r.Strategy)
		assert.Positive(t, r.Median, r.Strategy)
	}
	// rowbyrow: at least an INSERT per row (GORM's default transaction adds BEGIN/COMMIT).
	assert.GreaterOrEqual(t, byName["rowbyrow"].Counts.Statements, int64(rows))
	// The database assigns keys for the baselines and references: no nextval sent.
	for _, name := range []string{"rowbyrow", "identity-batch", "raw-copy", "pivot-reference", "graph-gorm"} {
		assert.Zero(t, byName[name].Counts.Nextval, name)
	}
	// seqrepo's strategies: at most one nextval round trip per write batch: the
	// repositories (5) and authors (300) in batches of 200, and each writer's commits.
	batches := func(n int) int64 { return int64((n + batch - 1) / batch) }
	maxBatches := batches(generatedRepos) + batches(generatedAuthors) + 2*batches(rows/2)
	for _, name := range []string{"prealloc-batch", "copy"} {
		got := byName[name].Counts.Nextval
		assert.Positive(t, got, name)
		assert.LessOrEqual(t, got, maxBatches, name)
	}
}

func TestExitsNonZeroOnBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--rows", "-1"}, {"--alloc", "0"}, {"--batch", "0"}, {"--writers", "0"}, {"--repeat", "0"}, {"--rounds", "0"},
		{"--rtt", "-1ms"}, {"--rtt", "soon"}, {"--requests", "0"},
		{"--strategies", "rowbyrow,nope"}, {"extra"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		assert.Equal(t, 2, code, "%v", args)
		assert.NotEmpty(t, stderr.String(), "%v", args)
		assert.Empty(t, stdout.String(), "%v", args)
	}
}

func TestAllocFlagSetsTheIncrement(t *testing.T) {
	rep, code, stderr := runJSON(t, "--rows", "300", "--alloc", "20", "--batch", "100", "--repeat", "1", "--strategies", "prealloc-batch,copy")
	require.Equal(t, 0, code, stderr)
	for _, r := range rep.Results {
		assert.True(t, r.Verified, "%s: %s", r.Strategy, r.Error)
	}
	assert.Equal(t, 20, rep.Meta.Alloc)
}

func TestGeneratedHistoryIsDeterministicAndIndexed(t *testing.T) {
	a, b := generatedHistory(1000), generatedHistory(1000)
	for _, i := range []int{0, 1, 499, 999} {
		assert.Equal(t, a.commit(i), b.commit(i))
		c := a.commit(i)
		assert.Len(t, c.SHA, 40)
		assert.GreaterOrEqual(t, len(c.Message), messageBytes)
		got, ok := a.index(c.SHA)
		assert.True(t, ok)
		assert.Equal(t, i, got)
	}
	_, ok := a.index(strings.Repeat("f", 40))
	assert.False(t, ok, "a sha that is not in the history")
	_, ok = a.index(generatedHistory(2000).commit(1500).SHA)
	assert.False(t, ok, "a commit past the history's end")
}

// TestVerifyCatchesDamage changes one thing at a time in an ingested history and
// expects verify to notice each.
func TestVerifyCatchesDamage(t *testing.T) {
	damage := map[string]string{
		"missing commit":  `DELETE FROM commits WHERE id = (SELECT min(id) FROM commits)`,
		"wrong author":    `UPDATE commits SET author_id = (SELECT max(id) FROM authors WHERE id <> commits.author_id) WHERE id = (SELECT min(id) FROM commits)`,
		"wrong message":   `UPDATE commits SET message = message || '!' WHERE id = (SELECT min(id) FROM commits)`,
		"extra author":    `INSERT INTO authors (email, name) VALUES ('intruder@example.com', 'x')`,
		"key not the one": `UPDATE commits SET id = id + 1000000 WHERE id = (SELECT min(id) FROM commits)`,
	}
	for name, sql := range damage {
		t.Run(name, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			ctx := t.Context()
			h := generatedHistory(300)
			e, conn := setupEnv(t, ctx, dsn, h)
			keys, err := seqCopy(ctx, e)
			require.NoError(t, err)
			require.NoError(t, verify(ctx, conn, h, keys), "before the damage")
			_, err = conn.Exec(ctx, sql)
			require.NoError(t, err)
			assert.Error(t, verify(ctx, conn, h, keys))
		})
	}
}

// setupEnv migrates dsn and opens what a strategy needs, as bench does.
func setupEnv(t *testing.T, ctx context.Context, dsn string, h *history) (*env, *pgx.Conn) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	e, closeEnv, err := openEnv(ctx, cfg, conn, h, options{alloc: 50, batch: 100, writers: 1}, &counter{})
	require.NoError(t, err)
	t.Cleanup(closeEnv)
	return e, conn
}

func TestGitHistory(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed for --git: %v", err)
	}
	dir := t.TempDir()
	gitRun := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE=2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2024-01-01T00:00:00Z")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	gitRun("init", "-q")
	for i, who := range []string{"ada@example.com", "grace@example.com", "ada@example.com"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte{byte(i)}, 0o644))
		gitRun("add", "f")
		gitRun("-c", "user.name=N", "-c", "user.email="+who, "commit", "-q", "-m", "change\n\nbody with ; and 'quotes'")
	}
	h, err := gitHistory(t.Context(), dir, 0)
	require.NoError(t, err)
	assert.Equal(t, 3, h.n)
	assert.Len(t, h.authors, 2)
	assert.Len(t, h.repos, 1)

	rep, code, stderr := runJSON(t, "--git", dir, "--repeat", "1", "--strategies", "copy,upsert,identity-batch")
	require.Equal(t, 0, code, stderr)
	for _, r := range rep.Results {
		assert.True(t, r.Verified, "%s: %s", r.Strategy, r.Error)
		assert.Equal(t, 3, r.Rows)
	}
}

// TestBatchAboveTheParameterLimit: a --batch whose INSERT would need more than
// 65,535 bind parameters is split, not failed.
func TestBatchAboveTheParameterLimit(t *testing.T) {
	rep, code, stderr := runJSON(t, "--rows", "9500", "--batch", "9500", "--repeat", "1", "--strategies", "identity-batch,prealloc-batch")
	require.Equal(t, 0, code, stderr)
	for _, r := range rep.Results {
		assert.True(t, r.Verified, "%s: %s", r.Strategy, r.Error)
	}
}
