package records_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"zerotouch/station/records"
)

// TestContractNextSerial: a sequence counts from 1, each name on its own,
// and goes on where it was after the store is opened again; concurrent
// callers never get the same number; a sequence without a name is
// refused.
func TestContractNextSerial(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		for i, tt := range []struct {
			name string
			want int64
		}{{"ZT-", 1}, {"ZT-", 2}, {"line-b", 1}, {"ZT-", 3}} {
			if n, err := s.NextSerial(ctx, tt.name); err != nil || n != tt.want {
				t.Errorf("call %d: NextSerial(%q) = %d, %v; want %d", i, tt.name, n, err, tt.want)
			}
		}
		if _, err := s.NextSerial(ctx, " "); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("NextSerial(no name) = %v, want ErrInvalid", err)
		}
		s.Close()
		s = a.open(t)
		if n, err := s.NextSerial(ctx, "ZT-"); err != nil || n != 4 {
			t.Errorf("NextSerial after reopening = %d, %v; want 4", n, err)
		}
		var mu sync.Mutex
		got := map[int64]int{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					n, err := s.NextSerial(ctx, "par")
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got[n]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for n := int64(1); n <= 200; n++ {
			if got[n] != 1 {
				t.Errorf("number %d handed out %d times, want once", n, got[n])
			}
		}
	})
}

// TestContractStationKeyRecord: a board whose key the station made
// (x509-station-key) is recorded with its certificate and enrolled.
func TestContractStationKeyRecord(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		r := x509Record(t, "SK-1", "sk-1")
		r.Attestation = records.AttestationX509StationKey
		if res := csave(t, s, r); !res.Created || !res.Queued {
			t.Errorf("Save(x509-station-key board) = %+v, want created and queued", res)
		}
		got, err := s.Get(ctx, "SK-1")
		if err != nil || got.Attestation != records.AttestationX509StationKey || got.CertificateChain != r.CertificateChain {
			t.Errorf("Get = %+v, %v", got, err)
		}
		long := x509Record(t, "SK-2", "sk-"+strings.Repeat("0123456789", 6)+"abc")
		long.Attestation = records.AttestationX509StationKey
		if _, err := s.Save(ctx, long); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Save(x509-station-key board with a 66-character ID) = %v, want ErrInvalid (the CN limit)", err)
		}
	})
}

// TestBufferedNextSerial: a buffered station hands out the factory
// database's numbers while it answers, and none while it is cut off (an
// error wrapping ErrSequenceOffline, whether the cut is found by this call
// or known before); once it is back the sequence goes on.
func TestBufferedNextSerial(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	if n, err := b.NextSerial(ctx, "ZB-"); err != nil || n != 1 {
		t.Fatalf("NextSerial online = %d, %v; want 1", n, err)
	}
	f.proxy.cut()
	for i := range 2 {
		if n, err := b.NextSerial(ctx, "ZB-"); !errors.Is(err, records.ErrSequenceOffline) {
			t.Errorf("NextSerial %d with the database cut off = %d, %v; want ErrSequenceOffline", i, n, err)
		}
	}
	f.proxy.restore()
	forwardAll(t, b)
	if n, err := b.NextSerial(ctx, "ZB-"); err != nil || n < 2 {
		t.Errorf("NextSerial back online = %d, %v; want 2 or more", n, err)
	}
}
