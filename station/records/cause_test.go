package records_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zerotouch/station/records"
)

const testCause = "upload /lfs/zerotouch/config at offset 0 of 348: on D: fs.file: board error 10 of group 8"

// A failed run keeps the engineer's cause and the step beside the
// operator's words, in the record and its audit row; a pass clears them.
func TestSaveKeepsTheCause(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	failed := tpmRecord("SN-C1", 1)
	failed.Result, failed.Message = records.ResultFailed, "Board on slot 1 stopped answering: reseat it and press Retry"
	failed.Cause, failed.FailedStep = testCause, "config"
	save(t, s, failed)
	r := get(t, s, "SN-C1")
	if r.Cause != testCause || r.FailedStep != "config" || r.Message != failed.Message {
		t.Errorf("failed record: cause %q, step %q, message %q; want %q, config and the operator's words", r.Cause, r.FailedStep, r.Message, testCause)
	}
	as, err := s.Audit(ctx, "SN-C1")
	if err != nil {
		t.Fatal(err)
	}
	last := as[len(as)-1].Detail
	for _, want := range []string{failed.Message, "step: config", "cause: " + testCause} {
		if !strings.Contains(last, want) {
			t.Errorf("audit row of the failed save = %q, lacks %q", last, want)
		}
	}

	// Begin keeps the cause of the failed run before; a pass clears it.
	if err := s.Begin(ctx, &records.Record{Serial: "SN-C1", Attestation: records.AttestationTPM}); err != nil {
		t.Fatal(err)
	}
	if r := get(t, s, "SN-C1"); r.Cause != testCause {
		t.Errorf("in progress after a failure: cause %q, want the failed run's kept", r.Cause)
	}
	save(t, s, tpmRecord("SN-C1", 1))
	if r := get(t, s, "SN-C1"); r.Cause != "" || r.FailedStep != "" {
		t.Errorf("passed record: cause %q, step %q; want neither", r.Cause, r.FailedStep)
	}
	// A pass never stores one, even when given.
	p := tpmRecord("SN-C2", 2)
	p.Cause, p.FailedStep = "left over", "identity"
	save(t, s, p)
	if r := get(t, s, "SN-C2"); r.Cause != "" || r.FailedStep != "" {
		t.Errorf("passed record saved with a cause: cause %q, step %q; want neither", r.Cause, r.FailedStep)
	}
	// NULL in the columns when there is none.
	var n int
	if err := rawDB(t, path).QueryRow(`SELECT count(*) FROM records WHERE cause IS NULL AND failed_step IS NULL`).Scan(&n); err != nil || n != 2 {
		t.Errorf("records without a cause stored as NULL: %d, %v; want 2", n, err)
	}
}

func TestSetAside(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	failed := &records.Record{Serial: "SN-A1", Attestation: records.AttestationTPM, Result: records.ResultFailed, Message: "no answer"}
	save(t, s, failed)
	if err := s.SetAside(ctx, "SN-A1", "slot-2", "ana"); err != nil {
		t.Fatalf("SetAside: %v", err)
	}
	as, err := s.Audit(ctx, "SN-A1")
	if err != nil {
		t.Fatal(err)
	}
	last := as[len(as)-1]
	if last.Event != records.EventSetAside || !strings.Contains(last.Detail, "slot-2") || last.Operator != "ana" {
		t.Errorf("SetAside wrote %+v, want a %q row naming slot-2 by ana", last, records.EventSetAside)
	}
	if r := get(t, s, "SN-A1"); r.Result != records.ResultFailed || !r.UpdatedAt.Equal(failed.UpdatedAt) {
		t.Errorf("after SetAside the record is %s, updated %v; want it unchanged (failed, %v)", r.Result, r.UpdatedAt, failed.UpdatedAt)
	}
	if err := s.SetAside(ctx, "SN-NONE", "slot-1", "ana"); !errors.Is(err, records.ErrNotFound) {
		t.Errorf("SetAside(unknown board) = %v, want ErrNotFound", err)
	}
}

// Hashes are hex in JSON, as the text output shows them; DER and TPM2B
// blobs stay base64.
func TestRecordJSONHashesAreHex(t *testing.T) {
	s, _ := newTestStore(t)
	r := tpmRecord("SN-H1", 1)
	sum := [32]byte{0x9f, 0x86, 0xd0, 0x81}
	r.ConfigSHA256 = sum[:]
	save(t, s, r)
	got := get(t, s, "SN-H1")
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x", sum); m["configSha256"] != want {
		t.Errorf("configSha256 in JSON = %v, want %s", m["configSha256"], want)
	}
	if fp, _ := m["ekFingerprint"].(string); fp != got.EKFingerprint || len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("ekFingerprint in JSON = %q, want lower-case hex", fp)
	}
	var back records.Record
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.ConfigSHA256, got.ConfigSHA256) || !slices.Equal(back.EKPublic, got.EKPublic) {
		t.Errorf("Record read back from JSON: %x, %v; want %x", back.ConfigSHA256, err, got.ConfigSHA256)
	}
	for _, bad := range []string{`"xyz"`, `"abc"`, `12`} {
		var h records.HexBytes
		if err := json.Unmarshal([]byte(bad), &h); err == nil {
			t.Errorf("HexBytes.UnmarshalJSON(%s) = nil, want an error", bad)
		}
	}
}

// Page walks every record once, newest first, however they are split;
// a bad cursor or size is refused.
func TestPage(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	var want []string
	for i := range 7 {
		r := groupRecord(fmt.Sprintf("SN-P%d", i), fmt.Sprintf("grp-p%d", i))
		save(t, s, r)
		want = append([]string{r.Serial}, want...)
	}
	for _, f := range []records.Filter{{}, {Search: "sn-p"}, {Result: records.ResultPassed}} {
		for _, size := range []int{1, 3, 7, 50} {
			var got []string
			cursor, pages := "", 0
			for {
				p, err := s.Page(ctx, f, cursor, size)
				if err != nil {
					t.Fatalf("Page(%+v, %q, %d): %v", f, cursor, size, err)
				}
				pages++
				for _, r := range p.Records {
					got = append(got, r.Serial)
				}
				if p.Next == "" {
					break
				}
				if len(p.Records) != size {
					t.Errorf("Page(%+v, %d) gave %d records and a next page", f, size, len(p.Records))
				}
				cursor = p.Next
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages of %d (%+v) = %q, want %q", size, f, got, want)
			}
			if wantPages := (len(want) + size - 1) / size; pages != wantPages {
				t.Errorf("pages of %d: %d, want %d", size, pages, wantPages)
			}
		}
	}
	// A record saved again while paging moves to the front and is not
	// seen again further on.
	p, err := s.Page(ctx, records.Filter{}, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	save(t, s, groupRecord("SN-P0", "grp-p0"))
	p2, err := s.Page(ctx, records.Filter{}, p.Next, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range p2.Records {
		got = append(got, r.Serial)
	}
	if want := []string{"SN-P3", "SN-P2", "SN-P1"}; !slices.Equal(got, want) || p2.Next != "" {
		t.Errorf("second page after a save = %q (next %q), want %q and the end", got, p2.Next, want)
	}
	for _, c := range []string{"nonsense", "r1.", "r1.!!!", "r1.MjAyNi0wMS0wMiA1", cursorOf("2026-01-02T03:04:05.000000000Z x"),
		cursorOf("yesterday 5"), cursorOf("2026-01-02T03:04:05.000000000Z 0"), strings.TrimPrefix(p.Next, "r1.")} {
		if _, err := s.Page(ctx, records.Filter{}, c, 3); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Page(cursor %q) = %v, want ErrInvalid", c, err)
		}
	}
	for _, size := range []int{0, -1} {
		if _, err := s.Page(ctx, records.Filter{}, "", size); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Page(size %d) = %v, want ErrInvalid", size, err)
		}
	}
	if _, err := s.Page(ctx, records.Filter{Result: "ok"}, "", 3); !errors.Is(err, records.ErrInvalid) {
		t.Errorf("Page(result ok) = %v, want ErrInvalid", err)
	}
}

// cursorOf makes a cursor of Page's form around text.
func cursorOf(text string) string { return "r1." + base64.RawURLEncoding.EncodeToString([]byte(text)) }

// A records file of schema version 4 with records is brought to version
// 5: its serial numbers are in the search index, and the index follows
// the records saved after.
func TestMigrateToCauseAndSearch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v4.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"0001_records.sql", "0002_replaces.sql", "0003_registration.sql", "0004_in_progress.sql"} {
		b, err := os.ReadFile(filepath.Join("migrations", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	for i := range 3 {
		if _, err := db.Exec(`INSERT INTO records (serial, attestation, registration_id, result, message, created_at, updated_at)
			VALUES (?, 'symmetric-key', ?, 'failed', 'no answer', ?, ?)`, fmt.Sprintf("OLD-%04d", i), fmt.Sprintf("old-id-%d", i),
			"2026-01-02T03:04:05.000000000Z", fmt.Sprintf("2026-01-02T03:04:0%d.000000000Z", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`PRAGMA user_version = 4`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := records.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(a version 4 file) = %v", err)
	}
	defer s.Close()
	r := get(t, s, "OLD-0001")
	if r.Result != records.ResultFailed || r.Message != "no answer" || r.Cause != "" || r.FailedStep != "" {
		t.Errorf("migrated record = %+v, want it kept, with no cause", r)
	}
	save(t, s, groupRecord("NEW-0001", "new-id-1"))
	serials := func(q string) []string {
		t.Helper()
		rs, err := s.List(ctx, records.Filter{Search: q})
		if err != nil {
			t.Fatalf("List(search %q): %v", q, err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Serial)
		}
		return out
	}
	for _, tt := range []struct {
		q    string
		want []string
	}{
		{"0001", []string{"NEW-0001", "OLD-0001"}},
		{"old-", []string{"OLD-0002", "OLD-0001", "OLD-0000"}},
		{"old-id-2", []string{"OLD-0002"}},
	} {
		if got := serials(tt.q); !slices.Equal(got, tt.want) {
			t.Errorf("search %q after the migration = %q, want %q", tt.q, got, tt.want)
		}
	}
	// The index and the table agree (FTS5's own check).
	if _, err := rawDB(t, path).Exec(`INSERT INTO records_serial_fts (records_serial_fts) VALUES ('integrity-check')`); err != nil {
		t.Errorf("search index integrity check: %v", err)
	}
}
