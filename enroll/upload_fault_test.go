package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memQueue is a Queue in memory, with a hook on each Claim.
type memQueue struct {
	mu      sync.Mutex
	order   []string
	items   map[string]Enrollment
	state   map[string]State
	onClaim func(got int)
}

func newMemQueue(es []Enrollment) *memQueue {
	q := &memQueue{items: map[string]Enrollment{}, state: map[string]State{}}
	for _, e := range es {
		q.order = append(q.order, e.RegistrationID)
		q.items[e.RegistrationID] = e
		q.state[e.RegistrationID] = StatePending
	}
	return q
}

func (q *memQueue) Recover(context.Context) (int, error) { return 0, nil }

func (q *memQueue) Claim(_ context.Context, n int) ([]Enrollment, error) {
	q.mu.Lock()
	var out []Enrollment
	for _, id := range q.order {
		if len(out) < n && q.state[id] == StatePending {
			q.state[id] = StateInFlight
			out = append(out, q.items[id])
		}
	}
	hook := q.onClaim
	q.mu.Unlock()
	if hook != nil {
		hook(len(out))
	}
	return out, nil
}

func (q *memQueue) Settle(_ context.Context, outs []Outcome) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, o := range outs {
		q.state[o.RegistrationID] = o.State
	}
	return nil
}

func (q *memQueue) count(s State) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, st := range q.state {
		if st == s {
			n++
		}
	}
	return n
}

func bulkIDs(t *testing.T, r *http.Request) []string {
	var op BulkOperation
	if err := json.NewDecoder(r.Body).Decode(&op); err != nil {
		t.Errorf("bulk body: %v", err)
	}
	ids := make([]string, len(op.Enrollments))
	for i, e := range op.Enrollments {
		ids[i] = e.RegistrationID
	}
	return ids
}

func newTestUploader(t *testing.T, c *Client, q Queue) *Uploader {
	t.Helper()
	u, err := NewUploader(UploaderConfig{Client: c, Queue: q, Quota: 600_000, Workers: 2, Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A batch too large as a whole goes up one enrollment at a time.
func TestUploadSplitsOversizeBatch(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		ids := bulkIDs(t, r)
		mu.Lock()
		sizes = append(sizes, len(ids))
		mu.Unlock()
		fmt.Fprint(w, `{"isSuccessful":true,"errors":[]}`)
	})
	es := make([]Enrollment, 10)
	for i := range es {
		es[i] = tpmEnrollment(fmt.Sprintf("big-%d", i))
		es[i].InitialTwin = &InitialTwin{Tags: map[string]any{"blob": strings.Repeat("x", 12*1024)}}
	}
	q := newMemQueue(es)
	stats, err := newTestUploader(t, c, q).Run(context.Background())
	if err != nil || stats.Uploaded != 10 || q.count(StateUploaded) != 10 {
		t.Errorf("Run = %+v, %v; queue has %d uploaded, %d in flight; want all 10 uploaded",
			stats, err, q.count(StateUploaded), q.count(StateInFlight))
	}
	for _, n := range sizes {
		if n != 1 {
			t.Errorf("request sizes %v: want single enrollments only (the batch of 10 is over 96 KiB)", sizes)
			break
		}
	}
}

// An item DPS keeps answering 5xx for is tried Attempts times, with
// backoff, and then the run stops with it pending.
func TestUploadItemKeepsFailing(t *testing.T) {
	var bulks atomic.Int32
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		bulks.Add(1)
		ids := bulkIDs(t, r)
		fmt.Fprintf(w, `{"isSuccessful":false,"errors":[{"registrationId":%q,"errorCode":500000,"errorStatus":"Internal error"}]}`, ids[0])
	})
	q := newMemQueue([]Enrollment{tpmEnrollment("stuck"), tpmEnrollment("fine")})
	_, err := newTestUploader(t, c, q).Run(context.Background())
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("Run = %v, want ErrIncomplete naming stuck", err)
	}
	if n := bulks.Load(); n > 3 {
		t.Errorf("%d bulk requests for an item allowed 3 attempts", n)
	}
	if q.state["stuck"] != StatePending || q.state["fine"] != StateUploaded {
		t.Errorf("states = %v, want stuck pending and fine uploaded", q.state)
	}
}

// DPS says an item exists but the policy may not read it: stop, say so.
func TestUploadCannotReadBack(t *testing.T) {
	var reqs atomic.Int32
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		if r.Method == http.MethodGet {
			w.WriteHeader(403)
			fmt.Fprint(w, `{"errorCode":403001,"message":"Forbidden"}`)
			return
		}
		ids := bulkIDs(t, r)
		fmt.Fprintf(w, `{"isSuccessful":false,"errors":[{"registrationId":%q,"errorCode":409201,"errorStatus":"exists"}]}`, ids[0])
	})
	q := newMemQueue([]Enrollment{tpmEnrollment("exists")})
	_, err := newTestUploader(t, c, q).Run(context.Background())
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "EnrollmentRead") {
		t.Errorf("Run = %v, want ErrIncomplete with ErrForbidden and the hint", err)
	}
	if n := reqs.Load(); n > 4 {
		t.Errorf("%d requests, want the run stopped at once", n)
	}
	if q.state["exists"] != StatePending {
		t.Errorf("state = %v, want pending", q.state["exists"])
	}
}

// "isSuccessful": false naming no item of the batch says nothing about
// any: each is read back, and a 404 means it goes again.
func TestUploadUnclearAnswer(t *testing.T) {
	var bulks atomic.Int32
	created := map[string]bool{}
	var mu sync.Mutex
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodGet {
			id := strings.TrimPrefix(r.URL.Path, "/enrollments/")
			if !created[id] {
				w.WriteHeader(404)
				fmt.Fprint(w, `{"errorCode":404201,"message":"not found"}`)
				return
			}
			json.NewEncoder(w).Encode(tpmEnrollment(id))
			return
		}
		ids := bulkIDs(t, r)
		if bulks.Add(1) == 1 {
			created[ids[0]] = true // the first was done, the answer says nothing
			fmt.Fprint(w, `{}`)
			return
		}
		for _, id := range ids {
			created[id] = true
		}
		fmt.Fprint(w, `{"isSuccessful":true}`)
	})
	q := newMemQueue([]Enrollment{tpmEnrollment("a"), tpmEnrollment("b")})
	stats, err := newTestUploader(t, c, q).Run(context.Background())
	if err != nil || q.count(StateUploaded) != 2 || stats.Already != 1 {
		t.Errorf("Run = %+v, %v; states %v; want both uploaded, one found already there", stats, err, q.state)
	}
}

// A batch settled back to pending after a Claim found nothing is still
// sent: Run does not return while anything is pending.
func TestUploadNoLostWakeup(t *testing.T) {
	var bulks atomic.Int32
	release := make(chan struct{})
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		ids := bulkIDs(t, r)
		if bulks.Add(1) == 1 {
			<-release // answer only once the dispatcher has found the queue empty
			fmt.Fprintf(w, `{"isSuccessful":false,"errors":[{"registrationId":%q,"errorCode":503000,"errorStatus":"busy"}]}`, ids[0])
			return
		}
		fmt.Fprint(w, `{"isSuccessful":true}`)
	})
	q := newMemQueue([]Enrollment{tpmEnrollment("only")})
	var once sync.Once
	q.onClaim = func(got int) {
		if got == 0 {
			once.Do(func() {
				close(release)
				// Let the worker settle the item back to pending and
				// finish, before this Claim returns its empty answer.
				for q.count(StatePending) == 0 {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
			})
		}
	}
	stats, err := newTestUploader(t, c, q).Run(context.Background())
	if err != nil || q.state["only"] != StateUploaded || bulks.Load() != 2 {
		t.Errorf("Run = %+v, %v; state %v after %d requests; want uploaded on the second", stats, err, q.state["only"], bulks.Load())
	}
}

// A disabled enrollment in DPS is not the enabled one asked for.
func TestDifferencesStatus(t *testing.T) {
	want := tpmEnrollment("a")
	got := tpmEnrollment("a")
	got.ProvisioningStatus = "disabled"
	if d := Differences(&want, &got); len(d) != 1 || d[0] != "provisioningStatus" {
		t.Errorf("Differences(unset, disabled) = %v, want provisioningStatus", d)
	}
	got.ProvisioningStatus = "enabled"
	if d := Differences(&want, &got); len(d) != 0 {
		t.Errorf("Differences(unset, enabled) = %v, want none", d)
	}
}

// Enrollments claimed with an ETag replace what DPS holds (mode update);
// the others are created.
func TestUploadReplaces(t *testing.T) {
	var mu sync.Mutex
	modes := map[string][]string{}
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		var op BulkOperation
		json.NewDecoder(r.Body).Decode(&op)
		mu.Lock()
		for _, e := range op.Enrollments {
			if e.ETag != "" {
				t.Errorf("%s sent with etag %q", e.RegistrationID, e.ETag)
			}
			modes[op.Mode] = append(modes[op.Mode], e.RegistrationID)
		}
		mu.Unlock()
		fmt.Fprint(w, `{"isSuccessful":true}`)
	})
	renewed := tpmEnrollment("renewed")
	renewed.ETag = "*"
	q := newMemQueue([]Enrollment{tpmEnrollment("new"), renewed})
	up := newTestUploader(t, c, q)
	if _, err := up.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A second Run counts only its own work: none.
	if st, err := up.Run(context.Background()); err != nil || st.Requests != 0 || st.Uploaded != 0 {
		t.Errorf("second Run = %+v, %v; want nothing done", st, err)
	}
	if fmt.Sprint(modes[ModeCreate]) != "[new]" || fmt.Sprint(modes[ModeUpdate]) != "[renewed]" {
		t.Errorf("modes = %v, want new created and renewed updated", modes)
	}
	if q.count(StateUploaded) != 2 {
		t.Errorf("states = %v", q.state)
	}
}
