// Command report compares runs of one Go test package recorded with `go test -json`, for
// scripts/gormsuite/run.sh: the first run is the baseline (GORM's suite as GORM ships it), the others are the
// same suite with seqrepo's plugin registered.
//
//	report [-allow FILE] [-tail N] plain=plain.json plugin=plugin.json keyed=keyed.json
//
// It prints a summary line per run, then every test that passed in the baseline and did not pass in another
// run (failed, skipped, or never finished because the test binary died), with that test's output. It exits
// 1 when such a test is not on the allow-list, or when a run recorded no test at all (a build failure or a
// crash before the first test), and 0 otherwise.
//
// The allow-list has one entry per line: the run's name (or * for every run), the test's name as go test
// prints it (an entry covers the test's subtests too), and the reason, which is required:
//
//	keyed  TestCreateFromSubQuery  the DryRun INSERT names "id": GORM's expected SQL text does not
//
// -flaky names tests, in the same format, that fail now and then with and without seqrepo (timing tests
// that need no database): they are reported when they fail and never fail the report.
//
// A test whose subtests regressed is reported through them: it is a regression of its own only when none of
// its subtests is.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// status is the outcome of one test in one run.
type status string

const (
	passed     status = "pass"
	failed     status = "fail"
	skipped    status = "skip"
	unfinished status = "unfinished" // started, no result: the test binary died or timed out in it
	absent     status = "absent"     // never started: the test binary died before it, or did not build
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action string
	Test   string
	Output string
}

// result is one run: every test's status and output, and the output that belongs to no test.
type result struct {
	name     string
	status   map[string]status
	output   map[string][]string
	pkg      []string // output outside any test: build errors, init's log, the final FAIL line
	pkgState string   // the package's final action: pass, fail, or "" when the stream ends without one
}

// allowEntry is one line of the allow-list.
type allowEntry struct {
	run, test, reason string
	line              int
	used              bool
	flaky             bool // from the known-flaky list: fails with and without seqrepo
}

func main() {
	allowFile := flag.String("allow", "", "allow-list file: `run test reason` per line")
	flakyFile := flag.String("flaky", "", "known-flaky list, same format: reported, never a failure")
	tail := flag.Int("tail", 60, "print at most this many of a regressed test's last output lines")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: report [-allow FILE] [-tail N] BASELINE=FILE.json RUN=FILE.json...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 2 {
		flag.Usage()
		os.Exit(2)
	}
	var runs []*result
	for _, arg := range flag.Args() {
		name, file, ok := strings.Cut(arg, "=")
		if !ok || name == "" || file == "" {
			fmt.Fprintf(os.Stderr, "report: argument %q: want NAME=FILE.json\n", arg)
			os.Exit(2)
		}
		r, err := readRun(name, file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(2)
		}
		runs = append(runs, r)
	}
	var allow []*allowEntry
	if *allowFile != "" {
		var err error
		if allow, err = readAllow(*allowFile); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(2)
		}
	}
	var flaky []*allowEntry
	if *flakyFile != "" {
		var err error
		if flaky, err = readAllow(*flakyFile); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(2)
		}
		for _, f := range flaky {
			f.flaky = true
		}
		allow = append(allow, flaky...)
	}
	if !compare(os.Stdout, runs, allow, *tail) {
		os.Exit(1)
	}
}

// readRun reads a `go test -json` stream of one package.
func readRun(name, file string) (*result, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &result{name: name, status: map[string]status{}, output: map[string][]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			r.pkg = append(r.pkg, string(line)) // go test's own messages when the build fails before test2json
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", file, n, err)
		}
		switch {
		case e.Test == "" && (e.Action == "output" || e.Action == "build-output"):
			r.pkg = append(r.pkg, strings.TrimRight(e.Output, "\n"))
		case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			r.pkgState = e.Action
		case e.Test == "":
		case e.Action == "run":
			r.status[e.Test] = unfinished
		case e.Action == "output":
			r.output[e.Test] = append(r.output[e.Test], strings.TrimRight(e.Output, "\n"))
		case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
			r.status[e.Test] = status(e.Action)
		}
	}
	return r, sc.Err()
}

// readAllow reads the allow-list: `run test reason...` per line, # comments and blank lines ignored.
func readAllow(file string) ([]*allowEntry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var entries []*allowEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			return nil, fmt.Errorf("%s line %d: want `run test reason`, the reason required: %q", file, n, line)
		}
		reason := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, fields[0])), fields[1]))
		entries = append(entries, &allowEntry{run: fields[0], test: fields[1], reason: reason, line: n})
	}
	return entries, sc.Err()
}

// allowed returns the allow-list entry covering test in run, or nil.
func allowed(allow []*allowEntry, run, test string) *allowEntry {
	for _, a := range allow {
		if (a.run == "*" || a.run == run) && (test == a.test || strings.HasPrefix(test, a.test+"/")) {
			return a
		}
	}
	return nil
}

// compare prints the report and says whether every run passed every test the baseline passed, allow-list
// aside.
func compare(w io.Writer, runs []*result, allow []*allowEntry, tail int) bool {
	ok := true
	base := runs[0]
	fmt.Fprintln(w, "== summary (top-level tests; subtests in parentheses)")
	for _, r := range runs {
		fmt.Fprintf(w, "%-8s %s\n", r.name, summary(r))
		if len(r.status) == 0 {
			ok = false
			fmt.Fprintf(w, "%-8s recorded no test: the package did not build or died before its first test:\n", r.name)
			printLines(w, r.pkg, tail)
		}
	}
	if len(base.status) == 0 {
		return false
	}
	if bad := notPassed(base); len(bad) > 0 {
		fmt.Fprintf(w, "\n== %d tests do not pass in the baseline %s (not compared): %s\n", len(bad), base.name, strings.Join(bad, ", "))
	}

	for _, r := range runs[1:] {
		regressed := map[string]bool{}
		for test, st := range base.status {
			if st == passed && r.status[test] != passed {
				regressed[test] = true
			}
		}
		var blocking, excused []string
		// Tests that never started are grouped under their top-level test, one line each, not thousands:
		// neverRan when the top-level test did not start either (the binary died before it), missing when it
		// ran but did not reach them or named its subtests differently.
		neverRan, missing := map[string]bool{}, map[string][]string{}
		for test := range regressed {
			if _, ran := r.status[test]; !ran && allowed(allow, r.name, test) == nil {
				top, _, _ := strings.Cut(test, "/")
				if _, topRan := r.status[top]; topRan {
					missing[top] = append(missing[top], test)
				} else {
					neverRan[top] = true
				}
				ok = false
				continue
			}
			if hasRegressedSubtest(test, regressed) {
				continue // reported through its subtests
			}
			if a := allowed(allow, r.name, test); a != nil {
				a.used = true
				excused = append(excused, test)
			} else {
				blocking = append(blocking, test)
			}
		}
		sort.Strings(blocking)
		sort.Strings(excused)
		fmt.Fprintf(w, "\n== %s: %d tests pass in %s and not in %s (%d of them allow-listed)\n",
			r.name, len(blocking)+len(excused)+len(neverRan)+len(missing), base.name, r.name, len(excused))
		for _, test := range blocking {
			ok = false
			fmt.Fprintf(w, "\n--- REGRESSION %s: %s (%s)\n", r.name, test, describe(r.status[test]))
			printLines(w, r.output[test], tail)
		}
		for _, top := range sortedKeys(missing) {
			subs := missing[top]
			sort.Strings(subs)
			more := ""
			if len(subs) > 5 {
				subs, more = subs[:5], fmt.Sprintf(" and %d more", len(subs)-5)
			}
			fmt.Fprintf(w, "\n--- REGRESSION %s: %s (%s) ran without %d of its subtests: %s%s\n",
				r.name, top, describe(r.status[top]), len(missing[top]), strings.Join(subs, ", "), more)
		}
		if len(neverRan) > 0 {
			never := make([]string, 0, len(neverRan))
			for test := range neverRan {
				never = append(never, test)
			}
			sort.Strings(never)
			fmt.Fprintf(w, "\n--- REGRESSION %s: %d top-level tests never ran (the test binary died or did not build): %s\n",
				r.name, len(never), strings.Join(never, ", "))
		}
		for _, test := range excused {
			a := allowed(allow, r.name, test)
			kind := "allowed"
			if a.flaky {
				kind = "flaky  "
			}
			fmt.Fprintf(w, "--- %s    %s: %s (%s): %s\n", kind, r.name, test, describe(r.status[test]), a.reason)
		}
		if r.pkgState != "pass" && len(blocking)+len(neverRan)+len(missing) > 0 {
			if died := diedOutput(r); len(died) > 0 {
				fmt.Fprintf(w, "\n%s: the test binary's own output (a panic or an exit ends the run):\n", r.name)
				printLines(w, died, tail)
			}
		}
		var fixed []string
		for test, st := range r.status {
			if st == passed && base.status[test] == failed {
				fixed = append(fixed, test)
			}
		}
		if len(fixed) > 0 {
			sort.Strings(fixed)
			fmt.Fprintf(w, "(%s passes %d tests the baseline fails: %s)\n", r.name, len(fixed), strings.Join(fixed, ", "))
		}
	}
	for _, a := range allow {
		if !a.used && !a.flaky {
			fmt.Fprintf(w, "(allow-list line %d, %s %s, matched no regression: remove it once it stays unneeded)\n", a.line, a.run, a.test)
		}
	}
	if ok {
		fmt.Fprintln(w, "\nOK: every test that passes in", base.name, "passes in every other run, allow-list aside")
	} else {
		fmt.Fprintln(w, "\nFAIL: see the regressions above")
	}
	return ok
}

// summary counts a run's outcomes: top-level tests, then subtests in parentheses.
func summary(r *result) string {
	var top, sub [4]int
	idx := map[status]int{passed: 0, failed: 1, skipped: 2, unfinished: 3}
	for test, st := range r.status {
		if strings.Contains(test, "/") {
			sub[idx[st]]++
		} else {
			top[idx[st]]++
		}
	}
	s := fmt.Sprintf("%d passed, %d failed, %d skipped", top[0], top[1], top[2])
	if top[3] > 0 {
		s += fmt.Sprintf(", %d unfinished", top[3])
	}
	s += fmt.Sprintf(" (%d passed, %d failed, %d skipped)", sub[0], sub[1], sub[2])
	if r.pkgState == "" {
		s += "; the run did not finish"
	}
	return s
}

func describe(st status) string {
	switch st {
	case "":
		return string(absent)
	case unfinished:
		return "unfinished: the test binary died while it ran"
	}
	return string(st)
}

// notPassed lists the top-level tests that did not pass or skip in r.
func notPassed(r *result) []string {
	var bad []string
	for test, st := range r.status {
		if !strings.Contains(test, "/") && st != passed && st != skipped {
			bad = append(bad, test)
		}
	}
	sort.Strings(bad)
	return bad
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hasRegressedSubtest(test string, regressed map[string]bool) bool {
	for other := range regressed {
		if strings.HasPrefix(other, test+"/") {
			return true
		}
	}
	return false
}

// diedOutput returns the package-level output after the last test's, minus go test's closing lines: where a
// panic's trace or init's last log line ends up.
func diedOutput(r *result) []string {
	var out []string
	for _, l := range r.pkg {
		if l == "FAIL" || strings.HasPrefix(l, "FAIL\t") || strings.HasPrefix(l, "ok  \t") || strings.TrimSpace(l) == "" {
			continue
		}
		out = append(out, l)
	}
	return out
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// printLines prints the last tail of lines, indented, without terminal colours and blank lines.
func printLines(w io.Writer, lines []string, tail int) {
	var kept []string
	for _, l := range lines {
		l = ansi.ReplaceAllString(l, "")
		if strings.TrimSpace(l) != "" {
			kept = append(kept, l)
		}
	}
	if len(kept) > tail {
		fmt.Fprintf(w, "    ... %d earlier lines\n", len(kept)-tail)
		kept = kept[len(kept)-tail:]
	}
	for _, l := range kept {
		fmt.Fprintln(w, "    "+strings.TrimLeft(l, " "))
	}
}
