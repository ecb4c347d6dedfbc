package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/enroll/emulator"
)

type emulatorFlags struct {
	addr          string
	data          string
	quota         int
	burst         int
	errorRate     float64
	dropRate      float64
	dropAfterRate float64
	itemErrorRate float64
	latency       time.Duration
	seed          int64
	hosts         []string
	idScope       string
	iotHubs       []string
	regQuota      int
}

// emulatorInfo is what dps-emulator prints once it serves.
type emulatorInfo struct {
	URL              string `json:"url"`
	ConnectionString string `json:"connectionString"`
	CAFile           string `json:"caFile"`
	IDScope          string `json:"idScope"`
}

func dpsEmulatorCmd(g *globals) *cobra.Command {
	var f emulatorFlags
	cmd := &cobra.Command{
		Use:   "dps-emulator",
		Short: "Serve the DPS service and device APIs over HTTPS, for tests and rehearsals",
		Long: `Serve the Azure IoT Hub Device Provisioning Service's service API
(individual enrollments, bulk operations, queries, enrollment groups,
registration states) and its device API (registration by symmetric key,
X.509 client certificate or TPM) over HTTPS, with SAS authentication, the
DPS quotas and injected faults. State is kept in --data: the emulator's CA
(ca.pem, which clients must trust), the shared access key
(connection-string), the ID scope (id-scope) and the enrollments and
registrations (emulator.db), all reused on the next start.

Prints the connection string to give to zerotouch upload or an Azure SDK,
the CA file to trust and the ID scope devices register in (--json: one
object with url, connectionString, caFile and idScope), then serves until
interrupted. Devices use the URL as their global endpoint. --log-level
debug logs each request.

The Azure SDKs cannot take a port in the host name: for them, serve on
127.0.0.1:443 with --host localhost, use HostName=localhost and trust the
CA (Node: NODE_EXTRA_CA_CERTS=DIR/ca.pem).

Exit status: 0 when interrupted; 1 when it cannot serve (the address in
use, --data not writable); 2 when the command line is wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEmulator(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8443", "address to serve HTTPS on (port 0 picks a free one)")
	fl.StringVar(&f.data, "data", "", "folder for the CA, the shared access key and the enrollments (required; made if absent)")
	fl.IntVar(&f.quota, "quota", 1000, "service operations a minute (DPS: 1000); 0 for no limit")
	fl.IntVar(&f.burst, "burst", 0, "operations that may come at once (default: the quota's per-second share, at least 1)")
	fl.Float64Var(&f.errorRate, "error-rate", 0, "share of requests answered 500 or 503, in [0, 1]")
	fl.Float64Var(&f.dropRate, "drop-rate", 0, "share of requests whose connection is cut before anything is done, in [0, 1]")
	fl.Float64Var(&f.dropAfterRate, "drop-after-rate", 0, "share of requests carried out and then cut without an answer, in [0, 1]")
	fl.Float64Var(&f.itemErrorRate, "item-error-rate", 0, "share of the items of bulk requests that fail on their own with a 5xx errorCode, in [0, 1]")
	fl.DurationVar(&f.latency, "latency", 0, "delay added to every request")
	fl.Int64Var(&f.seed, "seed", 0, "seed for the choice of faults (0: random)")
	fl.StringArrayVar(&f.hosts, "host", nil, "another host name the emulator answers to, for its certificate and SAS tokens (repeatable)")
	fl.StringVar(&f.idScope, "id-scope", "", "the ID scope devices register in (default: the one kept in --data, else "+emulator.DefaultIDScope+")")
	fl.StringArrayVar(&f.iotHubs, "iot-hub", nil, "host name of a linked IoT hub that devices are assigned to (repeatable; default "+emulator.DefaultIoTHub+")")
	fl.IntVar(&f.regQuota, "registration-quota", 1000, "device registrations a minute (DPS: 1000); 0 for no limit")
	return cmd
}

func (f emulatorFlags) validate() error {
	if f.data == "" {
		return usageError{errors.New("--data DIR is required: the emulator keeps its CA, key and enrollments there")}
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--error-rate", f.errorRate}, {"--drop-rate", f.dropRate}, {"--drop-after-rate", f.dropAfterRate}, {"--item-error-rate", f.itemErrorRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return usageError{fmt.Errorf("%s %v: want a share in [0, 1]", r.flag, r.v)}
		}
	}
	switch {
	case f.quota < 0:
		return usageError{fmt.Errorf("--quota %d: want 0 (no limit) or more", f.quota)}
	case f.regQuota < 0:
		return usageError{fmt.Errorf("--registration-quota %d: want 0 (no limit) or more", f.regQuota)}
	case f.burst < 0:
		return usageError{fmt.Errorf("--burst %d: want 0 (the default) or more", f.burst)}
	case f.latency < 0:
		return usageError{fmt.Errorf("--latency %v is negative", f.latency)}
	}
	if f.idScope != "" {
		if err := emulator.CheckIDScope(f.idScope); err != nil {
			return usageError{fmt.Errorf("--id-scope: %w", err)}
		}
	}
	return nil
}

func runEmulator(ctx context.Context, g *globals, f emulatorFlags) error {
	if err := f.validate(); err != nil {
		return err
	}
	s, err := emulator.Start(ctx, f.addr, f.data, emulator.Options{
		HostNames:         f.hosts,
		Quota:             f.quota,
		Burst:             f.burst,
		IDScope:           f.idScope,
		IoTHubs:           f.iotHubs,
		RegistrationQuota: f.regQuota,
		Faults: emulator.Faults{
			ErrorRate:     f.errorRate,
			DropRate:      f.dropRate,
			DropAfterRate: f.dropAfterRate,
			ItemErrorRate: f.itemErrorRate,
			Latency:       f.latency,
			Seed:          f.seed,
		},
		Logger: g.log,
	})
	if err != nil {
		return err
	}
	info := emulatorInfo{URL: s.URL, ConnectionString: s.ConnectionString, CAFile: s.CAFile, IDScope: s.IDScope}
	if g.json {
		err = json.NewEncoder(g.stdout).Encode(info)
	} else {
		_, err = fmt.Fprintf(g.stdout, "DPS emulator serving %s\nconnection string: %s\nCA certificate:    %s\nID scope:          %s\n", info.URL, info.ConnectionString, info.CAFile, info.IDScope)
	}
	if err != nil {
		s.Close()
		return fmt.Errorf("print the connection string: %w", err)
	}
	<-ctx.Done()
	st := s.Emulator.Stats()
	g.log.Info("DPS emulator stopping", "requests", st.Requests, "operations", st.Operations, "throttled", st.Throttled,
		"unauthorized", st.Unauthorized, "errors", st.Errors, "drops", st.Drops, "drops_after", st.DropsAfter,
		"registrations", st.Registrations, "polls", st.Polls, "tpm_challenges", st.Challenges)
	return s.Close()
}
