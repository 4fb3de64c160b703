package seqrepo_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMECodeIsTested keeps README.md honest: every ```go block in it must appear,
// line for line (indentation aside), in the module's Go code: an example_test.go (or
// example_*_test.go) file,
// whose Example functions run against a real database and check their output, or
// (for a type's definition) the package source those examples use.
func TestREADMECodeIsTested(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := goBlocks(string(readme))
	require.NotEmpty(t, blocks, "README.md has no ```go blocks")

	examples, err := filepath.Glob("*/*example_test.go") // example_test.go, graph_example_test.go, …
	require.NoError(t, err)
	require.NotEmpty(t, examples)
	more, err := filepath.Glob("*/example_*_test.go") // examples in files of their own
	require.NoError(t, err)
	examples = append(examples, more...)
	sourcesOf, err := filepath.Glob("models/*.go")
	require.NoError(t, err)
	examples = append(examples, sourcesOf...)
	var sources [][]string
	for _, f := range examples {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		sources = append(sources, codeLines(string(b)))
	}
	for i, block := range blocks {
		want := codeLines(block)
		found := false
		for _, src := range sources {
			if containsRun(src, want) {
				found = true
				break
			}
		}
		require.True(t, found, "README.md go block %d is not in the module's examples (%v):\n%s", i+1, examples, block)
	}
}

// goBlocks returns the bodies of the ```go fenced blocks of a Markdown text.
func goBlocks(md string) []string {
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(strings.NewReader(md))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```go":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// codeLines returns the non-blank lines of src with surrounding white space removed.
func codeLines(src string) []string {
	var out []string
	for _, l := range strings.Split(src, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// containsRun reports whether want occurs in src as a contiguous run of lines.
func containsRun(src, want []string) bool {
	for i := 0; i+len(want) <= len(src); i++ {
		match := true
		for j := range want {
			if src[i+j] != want[j] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
