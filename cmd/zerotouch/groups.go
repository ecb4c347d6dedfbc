package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/secret"
	"zerotouch/station"
)

// groupCheckTimeout bounds the enrollment group's check at start: a DPS
// that does not answer by then is warned of, and the station starts.
const groupCheckTimeout = 20 * time.Second

// lineCredential is what the line's boards prove themselves with: the
// symmetric-key group's key, or the CA's chain (intermediate first).
func lineCredential(ctx context.Context, lg station.LineGroup, deps *station.Deps) (station.GroupCredential, error) {
	if lg.Attestation != enroll.AttestationX509 {
		return station.GroupCredential{Key: deps.GroupKey}, nil
	}
	chain, err := deps.Issuer.Chain(ctx)
	if err != nil {
		return station.GroupCredential{}, fmt.Errorf("the CA's certificates: %w", err)
	}
	return station.GroupCredential{Chain: chain}, nil
}

// checkLineGroup creates or checks, in DPS, the enrollment group the
// line of cfg (read from file) enrolls through, with station.EnsureGroup.
// client is the station's DPS client; nil when it uploads nothing
// (dps.upload: false), then the connection string is looked for all the
// same. With none, the group cannot be checked: a warning, and nil.
//
// A group that is missing and not to be created, or that does not take
// the line's boards, is a setupError (exit 3) naming the group, the DPS
// host and what to do; so is a DPS that refuses the station's
// credentials or certificate. A DPS that does not answer in time is
// warned of: the station starts, and the boards' registration will tell.
func checkLineGroup(ctx context.Context, g *globals, file string, cfg *station.Config, deps *station.Deps, client *enroll.Client) error {
	lg, ok := cfg.EnrollmentGroup()
	if !ok {
		return nil
	}
	if client == nil {
		dcfg, err := dpsConfig(g, "dps.connection_string_file", cfg.DPS.ConnectionStringFile, cfg.DPS.CAFile)
		if errors.Is(err, secret.ErrMissing) {
			g.log.Warn("no DPS connection string: the line's enrollment group cannot be checked or created; boards will fail to register if DPS lacks it",
				"group", lg.ID, "setting", lg.Setting)
			return nil
		}
		if err == nil {
			client, err = enroll.NewClient(dcfg)
		}
		if err != nil {
			return usageError{fmt.Errorf("%s: dps: %w", file, err)}
		}
	}
	cred, err := lineCredential(ctx, lg, deps)
	if err != nil {
		return setupError{fmt.Errorf("%s: %s: %w", file, lg.Setting, err)}
	}
	cctx, cancel := context.WithTimeout(ctx, groupCheckTimeout)
	defer cancel()
	_, err = station.EnsureGroup(cctx, client, lg, cred, g.log.With("dps", client.HostName()))
	host := client.HostName()
	settings := dpsSettings{caSetting: "dps.ca_file", connSetting: "dps.connection_string_file", connFile: cfg.DPS.ConnectionStringFile, host: host}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, station.ErrGroupMissing):
		return setupError{fmt.Errorf("%s: %s: DPS %s has no enrollment group %s, and %s is false: create it with %s, or set %s: true",
			file, lg.Setting, host, lg.ID, lg.CreateSetting, groupCreateCommand(cfg, lg), lg.CreateSetting)}
	case errors.Is(err, station.ErrGroupMismatch):
		return setupError{fmt.Errorf("%s: %s: DPS %s: %w", file, lg.Setting, host, err)}
	case settings.advice(err) != "":
		return setupError{fmt.Errorf("%s: enrollment group %s: %s: %w", file, lg.ID, settings.advice(err), err)}
	case errors.Is(err, enroll.ErrInvalid) || errors.Is(err, enroll.ErrBadRequest):
		return setupError{fmt.Errorf("%s: %s: DPS %s would not take the enrollment group: %w", file, lg.Setting, host, err)}
	case ctx.Err() != nil:
		return ctx.Err()
	}
	g.log.Warn("the line's enrollment group could not be checked: DPS did not answer; the station starts, and boards will fail to register if DPS lacks the group",
		"group", lg.ID, "dps", host, "err", err)
	return nil
}

// groupCreateCommand is the zerotouch dps group create command that
// makes the line's group by hand.
func groupCreateCommand(cfg *station.Config, lg station.LineGroup) string {
	cmd := "zerotouch dps group create --id " + lg.ID
	if lg.Attestation == enroll.AttestationX509 {
		if cfg.CA.Dir != "" {
			cmd += " --ca-dir " + cfg.CA.Dir
		} else {
			cmd += " --certificate INTERMEDIATE.pem (the step-ca's intermediate certificate)"
		}
	} else if cfg.Group.KeyFile != "" {
		cmd += " --symmetric-key-file " + cfg.Group.KeyFile
	} else {
		cmd += " --symmetric-key-file KEYFILE (a file holding $" + envGroupKey + ")"
	}
	if cfg.DPS.ConnectionStringFile != "" {
		cmd += " --connection-string-file " + cfg.DPS.ConnectionStringFile
	}
	if cfg.DPS.CAFile != "" {
		cmd += " --ca-file " + cfg.DPS.CAFile
	}
	if lg.CredentialPolicy != "" {
		cmd += " (it leaves out the credential policy " + lg.CredentialPolicy + " the line's group must name: let the station create the group, " + lg.CreateSetting + ": true)"
	}
	return cmd
}

// ensureGroup is station.EnsureGroup for the line of cfg, when it
// enrolls by group (the demo's lines).
func ensureGroup(ctx context.Context, log *slog.Logger, client *enroll.Client, cfg *station.Config, deps *station.Deps) error {
	lg, ok := cfg.EnrollmentGroup()
	if !ok {
		return nil
	}
	cred, err := lineCredential(ctx, lg, deps)
	if err != nil {
		return err
	}
	_, err = station.EnsureGroup(ctx, client, lg, cred, log)
	return err
}
