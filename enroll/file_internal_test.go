package enroll

import (
	"errors"
	"strings"
	"testing"
)

func TestReadFileSizeLimit(t *testing.T) {
	const ek = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEA"
	csvRows := "registrationId,attestation,endorsementKey\n" + strings.Repeat("board-1,tpm,"+ek+"\n", 1)
	jsonRows := `[{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"` + ek + `"}}}]`
	tests := []struct {
		name, data string
		limit      int64
		ok         bool
	}{
		{"f.csv", csvRows, int64(len(csvRows)), true},
		{"f.csv", csvRows, int64(len(csvRows)) - 1, false},
		{"f.csv", csvRows + strings.Repeat(" ", 100<<10), 100, false},
		{"f.json", jsonRows, int64(len(jsonRows)), true},
		{"f.json", jsonRows, int64(len(jsonRows)) - 1, false},
		{"f.json", strings.Repeat(" ", 100<<10) + jsonRows, 100, false},
		{"f.txt", jsonRows + strings.Repeat("\n", 10), int64(len(jsonRows)) + 9, false},
	}
	for _, tt := range tests {
		got, err := readFile(strings.NewReader(tt.data), tt.name, tt.limit)
		if tt.ok {
			if err != nil || len(got) != 1 {
				t.Errorf("readFile(%s, %d bytes, limit %d) = %d, %v; want 1 enrollment", tt.name, len(tt.data), tt.limit, len(got), err)
			}
			continue
		}
		if got != nil || !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "larger than 1 GiB") {
			t.Errorf("readFile(%s, %d bytes, limit %d) = %d, %v; want a FileError saying it is too large", tt.name, len(tt.data), tt.limit, len(got), err)
		}
	}
}

// A CSV header cell that names no column is shown escaped: the file's
// own text cannot forge a line of the error report.
func TestFileErrorEscapesFileText(t *testing.T) {
	_, err := ReadFile(strings.NewReader("registrationId,\"\x1b[31mevil\nFAKE: all good\"\nx,y\n"), "bad.csv")
	if err == nil || strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("ReadFile with a hostile header = %q, want the cell escaped", err)
	}
	for _, l := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(l, "bad.csv:") {
			t.Errorf("ReadFile error line %q does not start with the file's name: a line was forged", l)
		}
	}
	if !strings.Contains(err.Error(), `\x1b[31mevil`) {
		t.Errorf("ReadFile error %q does not show the cell escaped", err)
	}
}
