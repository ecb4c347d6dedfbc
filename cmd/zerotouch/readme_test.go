package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// readmeBlock is one fenced block of README.md.
type readmeBlock struct {
	line int    // the line of its first content line, 1-based
	lang string // the fence's info string: sh, text, yaml
	text string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &readmeBlock{line: i + 2, lang: strings.TrimPrefix(l, "```")}
		case cur != nil && l == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("README.md: the block at line %d is not closed", cur.line-1)
	}
	return blocks
}

// readmeNotRun are the shell blocks TestReadmeCommands does not run, by
// their first line's beginning, and why.
var readmeNotRun = []struct{ prefix, why string }{
	{"bash .ci/install", "the set-up itself: CI runs the install step, and TestDemo runs the demo"},
	{"go vet ./... && go test ./...", "the test command itself, which CI runs"},
	{"go test -run '^$' -bench", "a benchmark, run by bench/run (and here with ZEROTOUCH_README_BENCH=1): minutes of CPU"},
	{"sha256sum -c SHA256SUMS", "installs a release on a Linux station (sudo, the user's groups): release/build's test checks the files and their sums"},
	{"shasum -a 256 -c SHA256SUMS", "installs a release on a Mac"},
	{"MIR=", "builds Zephyr from repository snapshots fetched once per machine, which CI cannot fetch: firmware/zephyr/test skips without its build"},
}

func readmeSkip(b readmeBlock) string {
	for _, s := range readmeNotRun {
		if strings.HasPrefix(b.text, s.prefix) {
			return s.why
		}
	}
	return ""
}

var (
	heredoc   = regexp.MustCompile(`<<-?'?([A-Za-z_]+)'?`)
	wantsExit = regexp.MustCompile(`\s#\s*exit ([0-9]+)`)
)

// readmeScript turns the shell blocks into one bash script that stops at
// the first command whose exit status is not the one README.md gives it:
// 0, or the "# exit N" its comment says. A command put in the background
// (a trailing &) is not checked. Each command is announced on stderr with
// its README.md line.
func readmeScript(blocks []readmeBlock) string {
	var s strings.Builder
	s.WriteString("trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n")
	for _, b := range blocks {
		lines := strings.Split(strings.TrimRight(b.text, "\n"), "\n")
		for i := 0; i < len(lines); i++ {
			start := b.line + i
			first := lines[i]
			if t := strings.TrimSpace(first); t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			cmd := first
			for strings.HasSuffix(lines[i], "\\") && i+1 < len(lines) {
				i++
				cmd += "\n" + lines[i]
			}
			if m := heredoc.FindStringSubmatch(first); m != nil {
				for i+1 < len(lines) {
					i++
					cmd += "\n" + lines[i]
					if lines[i] == m[1] {
						break
					}
				}
			}
			want := 0
			if m := wantsExit.FindStringSubmatch(first); m != nil {
				want, _ = strconv.Atoi(m[1])
			}
			fmt.Fprintf(&s, "echo '+ README.md:%d' >&2\n%s\n", start, cmd)
			bare := first
			if j := strings.Index(bare, " #"); j >= 0 {
				bare = bare[:j]
			}
			if strings.HasSuffix(strings.TrimSpace(bare), "&") {
				continue
			}
			fmt.Fprintf(&s, "rc=$?; if [ \"$rc\" != %d ]; then echo \"README.md:%d: exit $rc, want %d\" >&2; exit 1; fi\n", want, start, want)
		}
	}
	return s.String()
}

// TestReadmeCommands runs README.md's shell blocks as a reader would, in
// an empty folder with zerotouch on PATH (this test binary, standing in
// for it) and SoftHSM's tokens in a folder of its own, and checks each
// command's exit status against the one README.md gives.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the README's walkthrough: virtual boards, the emulator and a CA")
	}
	var run []readmeBlock
	for _, b := range readmeBlocks(t) {
		if b.lang != "sh" {
			continue
		}
		if why := readmeSkip(b); why != "" {
			t.Logf("README.md:%d not run: %s", b.line, why)
			continue
		}
		run = append(run, b)
	}
	if len(run) < 4 {
		t.Fatalf("README.md has %d shell blocks to run; its walkthrough is gone?", len(run))
	}
	for _, tool := range []string{"bash", "swtpm", "softhsm2-util"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (bash .ci/install installs it)", tool, err)
		}
	}

	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	bin := filepath.Join(dir, "bin")
	tokens := filepath.Join(dir, "softhsm-tokens")
	runtime := filepath.Join(dir, "run")
	for _, d := range []string{work, bin, tokens, runtime} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nZEROTOUCH_TEST_AS_MAIN=1 exec '%s' \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(bin, "zerotouch"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	hsm := filepath.Join(dir, "softhsm2.conf")
	os.WriteFile(hsm, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\n"), 0o600)
	script := filepath.Join(dir, "readme.sh")
	os.WriteFile(script, []byte(readmeScript(run)), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", script)
	cmd.Dir = work
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ZEROTOUCH_") || k == "DISPLAY" || k == "WAYLAND_DISPLAY" || k == "PATH" || k == "XDG_RUNTIME_DIR" || k == "SOFTHSM2_CONF" {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "PATH="+bin+":"+os.Getenv("PATH"), "XDG_RUNTIME_DIR="+runtime, "SOFTHSM2_CONF="+hsm, "LANG=C.UTF-8")
	out, err := cmd.CombinedOutput()
	// The process group, background jobs included, goes with the script;
	// so do daemons it started that left their pid file behind (swtpm).
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	filepath.WalkDir(work, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "pid" {
			if b, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("README.md's commands: %v\n%s\nthe script:\n%s", err, tail(string(out), 60), readmeScript(run))
	}

	// What the walkthrough made is what it says.
	events, err := os.ReadFile(filepath.Join(work, "events.json"))
	if err != nil {
		t.Fatal(err)
	}
	passed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(events)))
	for sc.Scan() {
		var e struct{ Serial, Result string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("events.json: %q: %v", sc.Text(), err)
		}
		if e.Result == "passed" {
			passed[e.Serial] = true
		}
	}
	if !passed["ZTV000001"] || !passed["ZTV000002"] || len(passed) != 2 {
		t.Errorf("events.json: boards passed %v, want ZTV000001 and ZTV000002", passed)
	}
	if f, err := os.Open(filepath.Join(work, "enrollments.csv")); err != nil {
		t.Error(err)
	} else {
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil || len(rows) != 3 {
			t.Errorf("enrollments.csv: %v, %d rows; want a header and two boards", err, len(rows))
		}
	}
	var conf map[string]any
	if b, err := os.ReadFile(filepath.Join(work, "config.json")); err != nil || json.Unmarshal(b, &conf) != nil {
		t.Errorf("config.json, downloaded from a board: %v, %q", err, b)
	}
	if fi, err := os.Stat(filepath.Join(work, "ca-password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca-password: %v, mode %v; want the user's alone", err, fi.Mode())
	}
}

// TestReadmeBenchmarks runs the README's benchmark commands when
// ZEROTOUCH_README_BENCH=1 (minutes of CPU; bench/run runs them too).
func TestReadmeBenchmarks(t *testing.T) {
	if os.Getenv("ZEROTOUCH_README_BENCH") != "1" {
		t.Skip("set ZEROTOUCH_README_BENCH=1 to run the README's benchmark commands")
	}
	for _, b := range readmeBlocks(t) {
		if b.lang != "sh" || !strings.HasPrefix(b.text, "go test -run '^$' -bench") {
			continue
		}
		cmd := exec.Command("bash", "-c", b.text)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("README.md:%d: %v\n%s", b.line, err, tail(string(out), 20))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestReadmeSynopses checks the command synopses (the text blocks whose
// lines begin "zerotouch") against the commands: each names commands that
// exist and flags those commands take.
func TestReadmeSynopses(t *testing.T) {
	root := rootForHelp()
	flag := regexp.MustCompile(`--[a-z][a-z0-9-]*`)
	n := 0
	for _, b := range readmeBlocks(t) {
		if b.lang != "text" {
			continue
		}
		var cmds []*cobra.Command
		for i, l := range strings.Split(strings.TrimRight(b.text, "\n"), "\n") {
			where := fmt.Sprintf("README.md:%d", b.line+i)
			if strings.HasPrefix(l, "zerotouch ") {
				n++
				var err error
				if cmds, err = synopsisCommands(root, strings.Fields(l)[1:]); err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
			} else if !strings.HasPrefix(l, " ") || cmds == nil {
				continue // not a synopsis block, or its command was wrong
			}
			for _, f := range flag.FindAllString(l, -1) {
				for _, c := range cmds {
					if c.Flags().Lookup(f[2:]) == nil && c.InheritedFlags().Lookup(f[2:]) == nil {
						t.Errorf("%s: %s has no flag %s", where, c.CommandPath(), f)
					}
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("README.md has %d synopsis lines; the Commands section's text blocks are gone?", n)
	}
}

// synopsisCommands follows a synopsis's words from root: plain words name
// subcommands; "a|b|c" names several, all of which must exist; flags and
// their values are skipped. It returns the commands the line is about.
func synopsisCommands(root *cobra.Command, words []string) ([]*cobra.Command, error) {
	cur := []*cobra.Command{root}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			if i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") && !strings.HasPrefix(words[i+1], "[") &&
				cur[0].Flags().Lookup(strings.TrimLeft(w, "-")) != nil && cur[0].Flags().Lookup(strings.TrimLeft(w, "-")).Value.Type() != "bool" {
				i++ // the flag's value
			}
			continue
		}
		if strings.HasPrefix(w, "[") || !cur[0].HasSubCommands() {
			continue
		}
		var next []*cobra.Command
		for _, name := range strings.Split(w, "|") {
			c, _, err := cur[0].Find([]string{name})
			if err != nil || c == cur[0] {
				return nil, fmt.Errorf("%s has no command %q", cur[0].CommandPath(), name)
			}
			next = append(next, c)
		}
		cur = next
	}
	if len(cur) == 1 && cur[0] == root {
		return nil, errors.New("names no command")
	}
	return cur, nil
}
