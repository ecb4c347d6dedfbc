package device_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
)

func TestSymmetricKeyIndividual(t *testing.T) {
	dps := newTestDPS(t, emulator.Options{})
	key := []byte("the key of sym-board-1, 32 bytes")
	en := symEnrollment("Sym-Board-1", key)
	en.DeviceID = "boiler-7"
	dps.put("/enrollments/Sym-Board-1", en)

	cfg := dps.config("Sym-Board-1")
	cfg.SymmetricKey = key
	res, err := device.Register(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	want := &device.Result{RegistrationID: "Sym-Board-1", Status: "assigned", Substatus: "initialAssignment",
		AssignedHub: emulator.DefaultIoTHub, DeviceID: "boiler-7"}
	if d := cmp.Diff(want, res, cmpopts.IgnoreFields(device.Result{}, "OperationID", "ETag", "CreatedAt", "LastUpdatedAt")); d != "" {
		t.Errorf("Register (-want +got):\n%s", d)
	}
	if res.OperationID == "" || res.ETag == "" || res.CreatedAt.IsZero() || res.LastUpdatedAt.Before(res.CreatedAt) {
		t.Errorf("Register: operation %q, etag %q, created %v, updated %v", res.OperationID, res.ETag, res.CreatedAt, res.LastUpdatedAt)
	}

	// The secondary key works too; registering again is a re-provisioning
	// to the same hub.
	cfg.SymmetricKey = append([]byte("secondary "), key...)
	again, err := device.Register(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Register with the secondary key: %v", err)
	}
	if again.Substatus != "reprovisionedToInitialAssignment" || again.AssignedHub != res.AssignedHub || !again.CreatedAt.Equal(res.CreatedAt) {
		t.Errorf("second Register = %+v; want reprovisionedToInitialAssignment to %s, created %v kept", again, res.AssignedHub, res.CreatedAt)
	}
	if n := dps.registrations("sym-board-1"); n != 2 {
		t.Errorf("Registrations = %d, want 2", n)
	}

	// A key the enrollment does not hold is refused with DPS's 401.
	cfg.SymmetricKey = []byte("a forged key")
	_, err = device.Register(testCtx(t), cfg)
	var de *device.Error
	if !errors.Is(err, device.ErrUnauthorized) || !errors.As(err, &de) || de.Code != enroll.CodeUnauthorized || de.TrackingID == "" {
		t.Errorf("Register with a forged key = %v, want ErrUnauthorized with errorCode %d and a trackingId", err, enroll.CodeUnauthorized)
	}
}

func TestSymmetricKeyExpired(t *testing.T) {
	// The service's clock is two hours ahead: the client's one-hour
	// tokens are past their expiry and the five minutes of skew.
	ahead := func() time.Time { return time.Now().Add(2 * time.Hour) }
	dps := newTestDPS(t, emulator.Options{Now: ahead})
	key := []byte("expiring key")
	dps.put("/enrollments/late-1", symEnrollment("late-1", key))
	cfg := dps.config("late-1")
	cfg.SymmetricKey = key
	_, err := device.Register(testCtx(t), cfg)
	var de *device.Error
	if !errors.Is(err, device.ErrUnauthorized) || !errors.As(err, &de) || !strings.Contains(de.Message, "expired") {
		t.Errorf("Register with an expired token = %v, want ErrUnauthorized saying expired", err)
	}
}

func TestSymmetricKeyGroup(t *testing.T) {
	dps := newTestDPS(t, emulator.Options{})
	groupKey := []byte("line 7 group key, 64 bytes would be usual")
	dps.put("/enrollmentGroups/line7", symGroup("line7", groupKey))
	dps.put("/enrollmentGroups/line8", symGroup("line8", []byte("another group's key")))

	for _, id := range []string{"line7-0001", "line7-0002"} {
		cfg := dps.config(id)
		cfg.SymmetricKey = device.DeriveKey(groupKey, id)
		res, err := device.Register(testCtx(t), cfg)
		if err != nil {
			t.Fatalf("Register(%s): %v", id, err)
		}
		if res.Status != "assigned" || res.DeviceID != id {
			t.Errorf("Register(%s) = %+v, want assigned with the registration ID as device ID", id, res)
		}
	}
	// The group's registrations are listed by the service API.
	status, b := dps.service(http.MethodPost, "/registrations/line7/query", nil)
	var states []enroll.RegistrationState
	if status != http.StatusOK || json.Unmarshal(b, &states) != nil || len(states) != 2 || states[0].RegistrationID != "line7-0001" {
		t.Errorf("POST /registrations/line7/query = %d %s, want the two devices", status, b)
	}
	if status, b := dps.service(http.MethodPost, "/registrations/line8/query", nil); status != http.StatusOK || string(b) != "[]" {
		t.Errorf("POST /registrations/line8/query = %d %s, want []", status, b)
	}

	// The group key itself, or another device's derived key, is not the
	// device's key.
	for name, key := range map[string][]byte{"the group key": groupKey, "another device's key": device.DeriveKey(groupKey, "line7-0001")} {
		cfg := dps.config("line7-0003")
		cfg.SymmetricKey = key
		if _, err := device.Register(testCtx(t), cfg); !errors.Is(err, device.ErrUnauthorized) {
			t.Errorf("Register with %s = %v, want ErrUnauthorized", name, err)
		}
	}
}

func TestX509(t *testing.T) {
	// The real server (emulator.Start), which asks TLS clients for a
	// certificate.
	s, err := emulator.Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), emulator.Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	pemBytes, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	cs, _ := enroll.ParseConnectionString(s.ConnectionString)
	svc, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: s.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)

	root := newCA(t, "Factory Root CA", nil)
	line := newCA(t, "Line 7 Intermediate CA", root)
	other := newCA(t, "Somebody Else's CA", nil)

	// Individual: the enrollment holds the device's certificate.
	single := root.leaf(t, "x509-single")
	if _, err := svc.CreateOrUpdate(ctx, ptr(x509Enrollment("x509-single", certPEM(single))), ""); err != nil {
		t.Fatal(err)
	}
	// Group: the root signs; devices send their leaf and the intermediate.
	if _, err := svc.CreateOrUpdateGroup(ctx, ptr(x509Group("factory-x509", root.pem())), ""); err != nil {
		t.Fatal(err)
	}

	cfg := func(c *tls.Certificate, regID string) device.Config {
		return device.Config{GlobalEndpoint: s.URL, IDScope: s.IDScope, RegistrationID: regID, X509: c,
			TLS: &tls.Config{RootCAs: roots}, MinWait: time.Millisecond, MaxWait: 20 * time.Millisecond}
	}
	tests := []struct {
		name    string
		cfg     device.Config
		wantErr error
	}{
		{"individual", cfg(single, ""), nil},
		{"group, through the intermediate", cfg(line.leaf(t, "x509-group-1", line), ""), nil},
		{"group, the root's own device", cfg(root.leaf(t, "x509-group-2"), "x509-group-2"), nil},
		{"individual, another certificate from the same CA", cfg(root.leaf(t, "x509-single"), ""), device.ErrUnauthorized},
		{"group, another CA", cfg(other.leaf(t, "x509-group-3"), ""), device.ErrUnauthorized},
		{"group, the intermediate not sent", cfg(line.leaf(t, "x509-group-4"), ""), device.ErrUnauthorized},
		{"CN is not the registration ID", cfg(line.leaf(t, "x509-group-5", line), "x509-group-6"), device.ErrUnauthorized},
	}
	for _, tt := range tests {
		res, err := device.Register(ctx, tt.cfg)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Register = %+v, %v; want %v", tt.name, res, err, tt.wantErr)
			continue
		}
		if tt.wantErr == nil && (res.Status != "assigned" || res.AssignedHub != emulator.DefaultIoTHub) {
			t.Errorf("%s: Register = %+v, want assigned", tt.name, res)
		}
		if tt.wantErr != nil {
			continue
		}
		// The result names the certificate presented, and the group's.
		sum := sha256.Sum256(tt.cfg.X509.Certificate[0])
		x := res.X509
		switch {
		case x == nil || x.CertificateInfo == nil:
			t.Errorf("%s: Register's X509 = %+v, want the certificate's info", tt.name, x)
		case x.CertificateInfo.SHA256Thumbprint != strings.ToUpper(hex.EncodeToString(sum[:])) || !strings.Contains(x.CertificateInfo.SubjectName, res.RegistrationID):
			t.Errorf("%s: certificateInfo %+v is not the device certificate's", tt.name, x.CertificateInfo)
		case strings.HasPrefix(tt.name, "group") && (x.EnrollmentGroupID != "factory-x509" || x.SigningCertificateInfo == nil || !strings.Contains(x.SigningCertificateInfo.SubjectName, "Factory Root CA")):
			t.Errorf("%s: X509 %+v, want group factory-x509 and its root's info", tt.name, x)
		case !strings.HasPrefix(tt.name, "group") && (x.EnrollmentGroupID != "" || x.SigningCertificateInfo != nil):
			t.Errorf("%s: X509 %+v names a group", tt.name, x)
		}
	}
	en, err := svc.Get(ctx, "x509-single")
	if err != nil || en.RegistrationState == nil || en.RegistrationState.Status != "assigned" {
		t.Errorf("GET /enrollments/x509-single: %v, registrationState %+v; want the assigned state", err, en.RegistrationState)
	}
}

func TestDisabledAndUnknown(t *testing.T) {
	dps := newTestDPS(t, emulator.Options{})
	key := []byte("key")
	off := symEnrollment("off-1", key)
	off.ProvisioningStatus = "disabled"
	dps.put("/enrollments/off-1", off)
	g := symGroup("off-group", key)
	g.ProvisioningStatus = "disabled"
	dps.put("/enrollmentGroups/off-group", g)

	for _, tt := range []struct {
		id  string
		key []byte
	}{{"off-1", key}, {"off-group-dev", device.DeriveKey(key, "off-group-dev")}} {
		cfg := dps.config(tt.id)
		cfg.SymmetricKey = tt.key
		res, err := device.Register(testCtx(t), cfg)
		if !errors.Is(err, device.ErrDisabled) || res == nil || res.Status != "disabled" || res.AssignedHub != "" {
			t.Errorf("Register(%s) = %+v, %v; want status disabled and ErrDisabled", tt.id, res, err)
		}
		if status, st := dps.registrationState(tt.id); status != http.StatusOK || st.Status != "disabled" {
			t.Errorf("GET /registrations/%s = %d %+v, want status disabled", tt.id, status, st)
		}
	}

	// No enrollment and no group of the device's kind: 404.
	dps2 := newTestDPS(t, emulator.Options{})
	cfg := dps2.config("nobody-1")
	cfg.SymmetricKey = key
	_, err := device.Register(testCtx(t), cfg)
	var de *device.Error
	if !errors.Is(err, device.ErrNotFound) || !errors.As(err, &de) || de.Code != enroll.CodeNotFound {
		t.Errorf("Register of an unknown device = %v, want ErrNotFound with errorCode %d", err, enroll.CodeNotFound)
	}
	// Another ID scope is 404 as well.
	dps2.put("/enrollments/nobody-1", symEnrollment("nobody-1", key))
	cfg.IDScope = "0ne00AAAAAA"
	if _, err := device.Register(testCtx(t), cfg); !errors.Is(err, device.ErrNotFound) {
		t.Errorf("Register in another ID scope = %v, want ErrNotFound", err)
	}
}

func TestAllocation(t *testing.T) {
	hubs := []string{"hub-a.azure-devices.net", "hub-b.azure-devices.net"}
	key := []byte("allocation group key")
	assign := func(dps *testDPS, ids []string) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, id := range ids {
			cfg := dps.config(id)
			cfg.SymmetricKey = device.DeriveKey(key, id)
			res, err := device.Register(testCtx(t), cfg)
			if err != nil {
				t.Fatalf("Register(%s): %v", id, err)
			}
			out[id] = res.AssignedHub
		}
		return out
	}
	var ids []string
	for i := range 24 {
		ids = append(ids, fmt.Sprintf("hash-%02d", i))
	}

	// Hashed: spread over both hubs, the same way by two services.
	first := newTestDPS(t, emulator.Options{IoTHubs: hubs})
	first.put("/enrollmentGroups/hashed", symGroup("hashed", key))
	got := assign(first, ids)
	second := newTestDPS(t, emulator.Options{IoTHubs: hubs})
	second.put("/enrollmentGroups/hashed", symGroup("hashed", key))
	if d := cmp.Diff(got, assign(second, ids)); d != "" {
		t.Errorf("hashed allocation differs between two services (-first +second):\n%s", d)
	}
	count := map[string]int{}
	for _, h := range got {
		count[h]++
	}
	if count[hubs[0]] == 0 || count[hubs[1]] == 0 || count[hubs[0]]+count[hubs[1]] != len(ids) {
		t.Errorf("hashed allocation of %d devices: %v, want both hubs used", len(ids), count)
	}

	// Per enrollment: static, restriction, an unlinked hub.
	dps := newTestDPS(t, emulator.Options{IoTHubs: hubs})
	enrollment := func(id, policy string, iotHubs ...string) {
		en := symEnrollment(id, key)
		en.AllocationPolicy, en.IoTHubs = policy, iotHubs
		dps.put("/enrollments/"+id, en)
	}
	enrollment("static-b", "static", hubs[1])
	enrollment("only-a", "hashed", hubs[0])
	enrollment("unlinked", "hashed", "hub-z.azure-devices.net")
	enrollment("static-two", "static", hubs...)
	for _, tt := range []struct {
		id, hub string
		wantErr error
	}{
		{"static-b", hubs[1], nil},
		{"only-a", hubs[0], nil},
		{"unlinked", "", device.ErrFailed},
		{"static-two", "", device.ErrFailed},
	} {
		cfg := dps.config(tt.id)
		cfg.SymmetricKey = key
		res, err := device.Register(testCtx(t), cfg)
		if !errors.Is(err, tt.wantErr) || res == nil || res.AssignedHub != tt.hub {
			t.Errorf("Register(%s) = %+v, %v; want hub %q, error %v", tt.id, res, err, tt.hub, tt.wantErr)
		}
		if tt.wantErr != nil && res != nil && (res.Status != "failed" || res.ErrorCode != 400208 || res.ErrorMessage == "") {
			t.Errorf("Register(%s) = %+v, want failed with errorCode 400208 and a message", tt.id, res)
		}
	}

	// An enrollment moved to the other hub: the device's data follows it.
	enrollment("static-b", "static", hubs[0])
	cfg := dps.config("static-b")
	cfg.SymmetricKey = key
	res, err := device.Register(testCtx(t), cfg)
	if err != nil || res.AssignedHub != hubs[0] || res.Substatus != "deviceDataMigrated" {
		t.Errorf("Register after moving the enrollment = %+v, %v; want %s, deviceDataMigrated", res, err, hubs[0])
	}
}

func TestRegistrationState(t *testing.T) {
	dps := newTestDPS(t, emulator.Options{})
	key := []byte("state key")
	dps.put("/enrollments/state-1", symEnrollment("state-1", key))
	if status, _ := dps.registrationState("state-1"); status != http.StatusNotFound {
		t.Errorf("GET /registrations/state-1 before registering: %d, want 404", status)
	}
	cfg := dps.config("state-1")
	cfg.SymmetricKey = key
	res, err := device.Register(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	status, st := dps.registrationState("STATE-1")
	want := enroll.RegistrationState{RegistrationID: "state-1", AssignedHub: res.AssignedHub, DeviceID: "state-1",
		Status: "assigned", Substatus: "initialAssignment", ETag: res.ETag}
	if d := cmp.Diff(want, st, cmpopts.IgnoreFields(enroll.RegistrationState{}, "CreatedDateTimeUTC", "LastUpdatedDateTimeUTC")); status != http.StatusOK || d != "" {
		t.Errorf("GET /registrations/state-1: %d (-want +got):\n%s", status, d)
	}
	_, b := dps.service(http.MethodGet, "/enrollments/state-1", nil)
	var en enroll.Enrollment
	json.Unmarshal(b, &en)
	if en.RegistrationState == nil || en.RegistrationState.AssignedHub != res.AssignedHub {
		t.Errorf("GET /enrollments/state-1 registrationState %+v, want the assignment", en.RegistrationState)
	}

	// A restart keeps it.
	dps.restart()
	if status, again := dps.registrationState("state-1"); status != http.StatusOK || again.ETag != st.ETag || again.Status != "assigned" {
		t.Errorf("GET /registrations/state-1 after a restart: %d %+v, want %+v", status, again, st)
	}
	cfg = dps.config("state-1")
	cfg.SymmetricKey = key
	if again, err := device.Register(testCtx(t), cfg); err != nil || again.Substatus != "reprovisionedToInitialAssignment" {
		t.Errorf("Register after a restart = %+v, %v; want reprovisionedToInitialAssignment", again, err)
	}

	// DELETE removes it, and it is gone from the enrollment.
	if status, b := dps.service(http.MethodDelete, "/registrations/state-1", nil); status != http.StatusNoContent {
		t.Fatalf("DELETE /registrations/state-1: %d %s", status, b)
	}
	if status, _ := dps.registrationState("state-1"); status != http.StatusNotFound {
		t.Errorf("GET /registrations/state-1 after DELETE: %d, want 404", status)
	}
	if status, _ := dps.service(http.MethodDelete, "/registrations/state-1", nil); status != http.StatusNotFound {
		t.Errorf("DELETE /registrations/state-1 again: %d, want 404", status)
	}
	_, b = dps.service(http.MethodGet, "/enrollments/state-1", nil)
	if strings.Contains(string(b), "registrationState") {
		t.Errorf("GET /enrollments/state-1 after DELETE still has a registrationState: %s", b)
	}
	if n := dps.registrations("state-1"); n != 0 {
		t.Errorf("Registrations after DELETE = %d, want 0", n)
	}
	// Registering again starts a new record.
	if again, err := device.Register(testCtx(t), cfg); err != nil || again.Substatus != "initialAssignment" {
		t.Errorf("Register after DELETE = %+v, %v; want initialAssignment", again, err)
	}
}

func TestPolling(t *testing.T) {
	// Assigned after a second; the client polls every 10 ms, so DPS's
	// limit of 5 polls per 10 s per device answers 429 until the bucket
	// has a poll again (one every 2 s).
	dps := newTestDPS(t, emulator.Options{AssignDelay: time.Second})
	key := []byte("poll key")
	dps.put("/enrollments/poll-1", symEnrollment("poll-1", key))
	cfg := dps.config("poll-1")
	cfg.SymmetricKey = key
	cfg.MaxWait = 10 * time.Millisecond
	res, err := device.Register(testCtx(t), cfg)
	if err != nil || res.Status != "assigned" {
		t.Fatalf("Register = %+v, %v", res, err)
	}
	if st := dps.e.Stats(); st.Throttled == 0 || st.Polls >= st.Throttled {
		t.Errorf("stats %+v: want most polls throttled", st)
	}

	// Cancelling the context stops the polls.
	dps.put("/enrollments/poll-2", symEnrollment("poll-2", key))
	slow := newTestDPS(t, emulator.Options{AssignDelay: time.Hour, DB: dps.opts.DB + "-slow"})
	slow.put("/enrollments/poll-2", symEnrollment("poll-2", key))
	cfg = slow.config("poll-2")
	cfg.SymmetricKey = key
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := device.Register(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Register under a 200 ms deadline, assignment in an hour = %v, want context.DeadlineExceeded", err)
	}
}

func TestFaults(t *testing.T) {
	// Polls are not limited here: the client's waits are cut to 20 ms,
	// and a poll answered with a fault counts against the limit.
	dps := newTestDPS(t, emulator.Options{PollQuota: -1})
	key := []byte("fault key")
	for i := range 10 {
		id := fmt.Sprintf("fault-%d", i)
		dps.put("/enrollments/"+id, symEnrollment(id, key))
	}
	dps.e.SetFaults(emulator.Faults{ErrorRate: 0.3, DropRate: 0.2, DropAfterRate: 0.1, Seed: 7})
	for i := range 10 {
		id := fmt.Sprintf("fault-%d", i)
		cfg := dps.config(id)
		cfg.SymmetricKey = key
		cfg.Attempts = 30
		if res, err := device.Register(testCtx(t), cfg); err != nil || res.Status != "assigned" {
			t.Errorf("Register(%s) under faults = %+v, %v", id, res, err)
		}
	}
	st := dps.e.Stats()
	if st.Errors == 0 || st.Drops == 0 {
		t.Errorf("stats %+v: want injected errors and drops", st)
	}

	// Every answer a 500: the client gives up after Attempts.
	dps.e.SetFaults(emulator.Faults{ErrorRate: 1})
	cfg := dps.config("fault-0")
	cfg.SymmetricKey = key
	cfg.Attempts = 3
	if _, err := device.Register(testCtx(t), cfg); !errors.Is(err, device.ErrServer) || !strings.Contains(err.Error(), "3 failures") {
		t.Errorf("Register when every answer is 5xx = %v, want ErrServer after 3 failures", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cert := newCA(t, "ca", nil).leaf(t, "cn-board")
	ok := device.Config{IDScope: "0ne00000001", RegistrationID: "board-1", SymmetricKey: []byte("k")}
	tests := []struct {
		name string
		edit func(*device.Config)
		want string
	}{
		{"no attestation", func(c *device.Config) { c.SymmetricKey = nil }, "exactly one"},
		{"two attestations", func(c *device.Config) { c.X509 = cert }, "exactly one"},
		{"no ID scope", func(c *device.Config) { c.IDScope = "" }, "IDScope"},
		{"bad ID scope", func(c *device.Config) { c.IDScope = "a/b" }, "IDScope"},
		{"http endpoint", func(c *device.Config) { c.GlobalEndpoint = "http://dps.example" }, "https"},
		{"bad registration ID", func(c *device.Config) { c.RegistrationID = "bad id" }, "registration ID"},
		{"X.509 ID over 64", func(c *device.Config) {
			c.SymmetricKey, c.X509, c.RegistrationID = nil, cert, strings.Repeat("a", 65)
		}, "at most 64"},
		{"short token", func(c *device.Config) { c.TokenLifetime = time.Second }, "TokenLifetime"},
		{"waits upside down", func(c *device.Config) { c.MinWait, c.MaxWait = time.Minute, time.Second }, "MinWait"},
		{"payload not JSON", func(c *device.Config) { c.Payload = json.RawMessage("{") }, "Payload"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	for _, tt := range tests {
		c := ok
		tt.edit(&c)
		err := c.Validate()
		if !errors.Is(err, device.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%s) = %v, want ErrConfig naming %s", tt.name, err, tt.want)
		}
		if _, err := device.Register(context.Background(), c); !errors.Is(err, device.ErrConfig) {
			t.Errorf("Register(%s) = %v, want ErrConfig", tt.name, err)
		}
	}
}

func TestDeriveKey(t *testing.T) {
	// The docs' recipe: base64(HMAC-SHA256(base64decode(groupKey), regID)),
	// computed here with openssl for the key below.
	groupKey := []byte("0123456789abcdef0123456789abcdef")
	got := b64(device.DeriveKey(groupKey, "sn-000123"))
	const want = "ULgJgSfd3cH8fGbTgFSHpFb/E+jIYiO6KQ9O7/MxNzA="
	if got != want {
		t.Errorf("DeriveKey = %s, want %s", got, want)
	}
}

func ptr[T any](v T) *T { return &v }
