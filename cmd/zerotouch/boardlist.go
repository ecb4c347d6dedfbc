package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"zerotouch/flasher"
	"zerotouch/internal/atomicfile"
)

// Virtual boards are pseudo-terminals, which no USB listing shows: a
// running `zerotouch board` lists its boards in a folder of this user's,
// one file each, which `link ports` reads. A file whose process is gone is
// ignored and removed.

// boardsDir is the folder where running virtual boards are listed.
func boardsDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "zerotouch", "boards")
	}
	return filepath.Join(os.TempDir(), "zerotouch-"+strconv.Itoa(os.Getuid()), "boards")
}

// listedBoard is a running virtual board as `link ports` shows it.
type listedBoard struct {
	boardInfo
	PID int `json:"pid"`
}

// listBoards lists infos as running in this process, and returns what
// takes them off the list again.
func listBoards(infos []boardInfo) (unlist func(), err error) {
	dir := boardsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}, fmt.Errorf("list the virtual boards: %w", err)
	}
	pid := os.Getpid()
	var files []string
	for _, info := range infos {
		b, _ := json.Marshal(listedBoard{boardInfo: info, PID: pid})
		name := filepath.Join(dir, fmt.Sprintf("%d-%s.json", pid, strings.Map(safeRune, info.Serial)))
		if err := atomicfile.Write(name, b, 0o600); err != nil {
			return func() {}, fmt.Errorf("list the virtual boards: %w", err)
		}
		files = append(files, name)
	}
	return func() {
		for _, f := range files {
			os.Remove(f)
		}
	}, nil
}

func safeRune(r rune) rune {
	if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
		return r
	}
	return '_'
}

// runningBoards reads the list of running virtual boards, sorted by port.
// Files of processes that are gone, or of boards whose port is gone, are
// removed.
func runningBoards() ([]listedBoard, error) {
	dir := boardsDir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the virtual boards' list: %w", err)
	}
	var out []listedBoard
	for _, e := range entries {
		name := filepath.Join(dir, e.Name())
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		var lb listedBoard
		if json.Unmarshal(b, &lb) != nil || lb.PID <= 0 || !alive(lb.PID) {
			os.Remove(name)
			continue
		}
		if _, err := os.Stat(lb.Port); err != nil && !flasher.IsNetPort(lb.Port) {
			continue
		}
		out = append(out, lb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out, nil
}
