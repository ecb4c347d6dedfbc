package main

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/spf13/cobra"

	"zerotouch/internal/tpmdev"
	"zerotouch/tpm"
)

type tpmFlags struct {
	link     linkFlags
	tpm      string
	noCreate bool
	ekRoots  []string
}

// ekResult is what `tpm ek` prints: the fields the Azure C SDK's
// tpm_device_provision tool prints, as JSON, and the EK certificate's
// check.
type ekResult struct {
	RegistrationID      string           `json:"registrationId"`
	EndorsementKey      string           `json:"endorsementKey"`
	EKCertificate       *string          `json:"ekCertificate"` // base64 DER; null when there is none
	EKCertificateStatus tpm.EKCertStatus `json:"ekCertificateStatus"`
	EKCertificateError  string           `json:"ekCertificateError,omitempty"`
	EKCertificateForTCG bool             `json:"ekCertificateForTcgEk,omitempty"`
	EKFingerprint       string           `json:"ekFingerprint"`
	Created             bool             `json:"created"`
	Board               string           `json:"board,omitempty"`
}

func tpmCmd(g *globals) *cobra.Command {
	var f tpmFlags
	cmd := &cobra.Command{
		Use:   "tpm",
		Short: "Read a TPM's DPS identity, through a board or directly",
	}
	pf := cmd.PersistentFlags()
	f.link.addFlags(pf)
	pf.StringVar(&f.tpm, "tpm", "", "reach a TPM directly instead of through a board: tcp:HOST:PORT (swtpm), a device such as /dev/tpmrm0, or sim")
	pf.BoolVar(&f.noCreate, "no-create", false, "never create the EK: a TPM without a persisted EK is an error (for vendor-provisioned TPMs)")
	pf.StringArrayVar(&f.ekRoots, "ek-roots", nil, "TPM vendor certificates (PEM or DER file, or a folder of them) to check the EK certificate against; repeatable")

	ek := &cobra.Command{
		Use:   "ek",
		Short: "Print the registration ID, endorsement key and EK certificate as JSON",
		Long: `Print a TPM's DPS identity as one JSON object: registrationId, endorsementKey
(base64 of the EK's TPM2B_PUBLIC, as DPS takes it), ekCertificate (base64 DER,
or null), the certificate check's outcome (verified, absent, untrusted,
mismatch or unreadable) and the EK's fingerprint.

The EK is read from 0x81010001. If that handle is empty, the EK is created
with the Azure device SDK's template and persisted there (and the SRK at
0x81000001), so that the SDK on the board presents the same key on first
boot; --no-create forbids that.

Through a board: --port RULE (or $ZEROTOUCH_PORT). Directly: --tpm.
Exit status: 0 when the identity was printed; 1 when the TPM cannot be
reached or the EK cannot be read, or --ek-roots is given and the EK
certificate does not verify; 2 when the command line is wrong or an
--ek-roots file cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTPMEK(cmd.Context(), g, &f, cmd.Flags().Changed("port"))
		},
	}
	cmd.AddCommand(ek)
	return cmd
}

func runTPMEK(ctx context.Context, g *globals, f *tpmFlags, portGiven bool) error {
	if f.tpm != "" && portGiven {
		return usageError{fmt.Errorf("give --port (through a board) or --tpm (directly), not both")}
	}
	var vendors *tpm.Vendors
	if len(f.ekRoots) > 0 {
		var err error
		if vendors, err = tpm.LoadVendors(f.ekRoots...); err != nil {
			return usageError{err}
		}
	}
	var (
		tr    transport.TPM
		board string
	)
	if f.tpm != "" {
		if f.tpm == tpmdev.None {
			return usageError{fmt.Errorf("--tpm none: name a TPM")}
		}
		if err := tpmdev.Check(f.tpm); err != nil {
			return usageError{err}
		}
		t, err := tpmdev.Open(f.tpm, 0)
		if err != nil {
			return err
		}
		defer t.Close()
		tr = t
	} else {
		c, err := f.link.open(ctx, g)
		if err != nil {
			return err
		}
		defer c.Close()
		id, err := c.Identity(ctx)
		if err != nil {
			return fmt.Errorf("read the board's identity: %w", err)
		}
		board = id.Serial
		tr = c.TPM(ctx)
	}

	d := tpm.New(tr, tpm.Options{Board: board, NoCreate: f.noCreate, Logger: g.log})
	ek, err := d.EK(ctx)
	if err != nil {
		return err
	}
	// The device SDK imports its DPS key under the SRK on first boot.
	if _, err := d.SRK(ctx); err != nil {
		return err
	}
	cert, err := d.EKCertificate(ctx, ek, vendors)
	if err != nil {
		return err
	}
	res := ekResult{
		RegistrationID:      ek.RegistrationID(),
		EndorsementKey:      ek.EndorsementKey(),
		EKCertificateStatus: cert.Status,
		EKCertificateForTCG: cert.ForTCGEK,
		EKFingerprint:       ek.Fingerprint(),
		Created:             ek.Created,
		Board:               board,
	}
	if cert.DER != nil {
		s := base64.StdEncoding.EncodeToString(cert.DER)
		res.EKCertificate = &s
	}
	if cert.Err != nil {
		res.EKCertificateError = cert.Err.Error()
	}
	if err := printResult(g, res); err != nil {
		return err
	}
	if vendors != nil && cert.Status != tpm.EKCertVerified {
		return fmt.Errorf("EK certificate %s: %w", cert.Status, cert.Err)
	}
	return nil
}
