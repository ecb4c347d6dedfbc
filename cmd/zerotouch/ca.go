package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"zerotouch/ca"
	"zerotouch/internal/secret"
)

// envCAPassword holds the CA password when --password-file is not given:
// the local CA key's passphrase, the PKCS#11 PIN, or with --url the
// step-ca provisioner's password.
const envCAPassword = "ZEROTOUCH_CA_PASSWORD"

// caFlags are the flags every ca subcommand shares: where the CA is and
// how to unlock it.
type caFlags struct {
	dir          string
	passwordFile string
	url          string
	fingerprint  string
	provisioner  string
	template     string
	validity     string
	// pwSetting names where passwordFile came from in messages: the
	// flag (default "--password-file") or the configuration's setting.
	pwSetting string
}

func (f *caFlags) addFlags(fs *pflag.FlagSet) {
	f.addLocalFlags(fs)
	fs.StringVar(&f.url, "url", "", "use the factory's step-ca at this https URL instead of the local CA")
	fs.StringVar(&f.fingerprint, "fingerprint", "", "with --url: the SHA-256 fingerprint of the step-ca's root, pinned")
	fs.StringVar(&f.provisioner, "provisioner", "zerotouch", "with --url: the step-ca's JWK provisioner")
}

func (f *caFlags) addLocalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "dir", "./ca", "the local CA's folder")
	fs.StringVar(&f.passwordFile, "password-file", "", "file holding the CA password (key passphrase, PKCS#11 PIN, or with --url the provisioner's password); default $"+envCAPassword)
}

func (f *caFlags) password(log *slog.Logger) ([]byte, error) {
	pw, err := secret.Read(log, f.passwordSetting(), f.passwordFile, envCAPassword)
	if err != nil {
		// Missing or unreadable: the set-up cannot work until it is mended.
		return nil, setupError{fmt.Errorf("CA password: %w", err)}
	}
	return pw, nil
}

func (f *caFlags) passwordSetting() string {
	if f.pwSetting != "" {
		return f.pwSetting
	}
	return "--password-file"
}

// passwordSource names where the CA password was read, for a message.
func (f *caFlags) passwordSource() string {
	if f.passwordFile != "" {
		return fmt.Sprintf("in %s (%s)", f.passwordFile, f.passwordSetting())
	}
	return "in $" + envCAPassword
}

func (f *caFlags) checkRemote() error {
	if f.url == "" {
		if f.fingerprint != "" {
			return usageError{errors.New("--fingerprint goes with --url")}
		}
		return nil
	}
	if f.fingerprint == "" {
		return usageError{errors.New("--url needs --fingerprint, the step-ca root's SHA-256, so that the connection is trusted")}
	}
	if b, err := hex.DecodeString(f.fingerprint); err != nil || len(b) != sha256.Size {
		return usageError{fmt.Errorf("--fingerprint %q: want the 64 hex digits of the step-ca root's SHA-256 (step certificate fingerprint root_ca.crt)", f.fingerprint)}
	}
	return nil
}

// open returns the issuer the flags name. An issuer that cannot be opened
// (no CA in the folder, a wrong or missing password, a step-ca that cannot
// be trusted or reached) is a setupError; a mistake in the flags a
// usageError. On error the issuer is nil: never a nil *ca.Local or
// *ca.Remote in a non-nil ca.Issuer, which the caller would Close.
func (f *caFlags) open(ctx context.Context, g *globals) (ca.Issuer, error) {
	if err := f.checkRemote(); err != nil {
		return nil, err
	}
	var validity time.Duration
	if f.validity != "" {
		v, err := ca.ParseValidity(f.validity)
		if err != nil {
			return nil, usageError{fmt.Errorf("--validity: %w", err)}
		}
		validity = v
	}
	pw, pwErr := f.password(g.log)
	if pwErr != nil && (f.url != "" || !errors.Is(pwErr, secret.ErrMissing)) {
		return nil, setupError{pwErr}
	}
	if f.url != "" {
		if f.template != "" {
			return nil, usageError{errors.New("--template applies to the local CA; a step-ca's provisioner has its own")}
		}
		r, err := ca.NewRemote(ctx, ca.RemoteConfig{URL: f.url, Fingerprint: f.fingerprint, Provisioner: f.provisioner, Password: pw, Validity: validity, Logger: g.log})
		if errors.Is(err, ca.ErrPassword) {
			return nil, setupError{fmt.Errorf("the CA password %s is not the provisioner's: %w", f.passwordSource(), err)}
		}
		if err != nil {
			return nil, setupError{err}
		}
		return r, nil
	}
	// A CA whose key is in a TPM, or a token with a pin-source, needs no
	// password: only when the CA asks for one is its absence an error.
	l, err := ca.OpenLocal(ctx, f.dir, ca.LocalOptions{Password: pw, Template: f.template, Validity: validity, Logger: g.log})
	switch {
	case errors.Is(err, ca.ErrPassword) && pwErr != nil:
		return nil, setupError{pwErr}
	case errors.Is(err, ca.ErrPassword):
		return nil, setupError{fmt.Errorf("the CA password %s does not unlock the CA in %s: %w", f.passwordSource(), f.dir, err)}
	case err != nil:
		return nil, setupError{err}
	}
	return l, nil
}

func caCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The certificate authority for X.509 attestation: a local CA or the factory's step-ca",
	}
	cmd.AddCommand(caInitCmd(g), caShowCmd(g), caSignCmd(g), caTemplateCmd(g))
	return cmd
}

func caInitCmd(g *globals) *cobra.Command {
	var f caFlags
	var o struct {
		name, kms, keyType, validity, rootValidity, interValidity string
		keyTypes                                                  []string
		minRSA                                                    int
		importCert, importKey, importRoot                         string
	}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a local CA: a root and an intermediate, or an imported intermediate",
		Long: `Make a local CA in --dir (default ./ca): a root and an intermediate, or,
with --import-cert, --import-key and --import-root, an intermediate issued
elsewhere.

The keys never lie on disk in plain text: they are encrypted (PKCS#8,
PBKDF2 and AES-256) with the CA password from --password-file or
$` + envCAPassword + `, or they are made and kept in a KMS:
  --kms 'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=zerotouch'
        (the password is the token's PIN)
  --kms 'tpmkms:device=/dev/tpmrm0'   (key blobs under DIR/tpm)
With --kms and --import-cert, --import-key is the key's URI in the KMS.

Exit status: 0 when the CA is made; 1 when it cannot be written; 2 when
the command line is wrong or --dir already holds a CA (nothing is
changed); 3 when the CA password (or the KMS) is missing or refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := ca.InitOptions{
				Name: o.name, KMS: o.kms, KeyType: ca.KeyType(o.keyType), Template: f.template,
				ImportCert: o.importCert, ImportKey: o.importKey, ImportRoot: o.importRoot,
				Policy: ca.Policy{MinRSABits: o.minRSA}, Logger: g.log,
			}
			for _, k := range o.keyTypes {
				opts.Policy.KeyTypes = append(opts.Policy.KeyTypes, ca.KeyType(k))
			}
			if err := opts.Policy.Validate(); err != nil {
				return usageError{err}
			}
			switch opts.KeyType {
			case ca.ECDSAP256, ca.ECDSAP384, ca.RSA:
			default:
				return usageError{fmt.Errorf("--key-type %q: want %s, %s or %s", o.keyType, ca.ECDSAP256, ca.ECDSAP384, ca.RSA)}
			}
			for _, v := range []struct {
				flag, s string
				d       *time.Duration
			}{{"--validity", o.validity, &opts.Validity}, {"--root-validity", o.rootValidity, &opts.RootValidity}, {"--intermediate-validity", o.interValidity, &opts.IntermediateValidity}} {
				if v.s == "" {
					continue
				}
				d, err := ca.ParseValidity(v.s)
				if err != nil {
					return usageError{fmt.Errorf("%s: %w", v.flag, err)}
				}
				*v.d = d
			}
			pw, pwErr := f.password(g.log)
			if pwErr != nil && !errors.Is(pwErr, secret.ErrMissing) {
				return pwErr
			}
			opts.Password = pw
			l, err := ca.Init(cmd.Context(), f.dir, opts)
			if errors.Is(err, ca.ErrExists) {
				return usageError{err}
			}
			if errors.Is(err, ca.ErrPassword) && pwErr != nil {
				return pwErr
			}
			if err != nil {
				return err
			}
			defer l.Close()
			chain, _ := l.Chain(cmd.Context())
			g.log.Info("CA ready", "dir", f.dir, "intermediate", chain[0].Subject.String(), "root_fingerprint", ca.Fingerprint(chain[len(chain)-1]))
			return printChain(g, chain)
		},
	}
	fs := cmd.Flags()
	f.addLocalFlags(fs)
	fs.StringVar(&f.template, "template", "", "device certificate template (x509util JSON) to keep with the CA instead of the built-in one")
	fs.StringVar(&o.name, "name", "zerotouch", `subject prefix: "NAME Root CA", "NAME Intermediate CA"`)
	fs.StringVar(&o.kms, "kms", "", "make the CA keys in a KMS: a pkcs11: or tpmkms: URI (no pin-value: the PIN is the CA password)")
	fs.StringVar(&o.keyType, "key-type", string(ca.ECDSAP256), "CA key: ecdsa-p256, ecdsa-p384 or rsa (3072 bits)")
	fs.StringVar(&o.validity, "validity", "", "device certificate validity, e.g. 10y, 365d, 8760h (default 10y)")
	fs.StringVar(&o.rootValidity, "root-validity", "", "root validity (default 30y)")
	fs.StringVar(&o.interValidity, "intermediate-validity", "", "intermediate validity (default 20y)")
	fs.StringSliceVar(&o.keyTypes, "allow-key", nil, "device key types to sign: ecdsa-p256, ecdsa-p384, rsa; repeatable (default all)")
	fs.IntVar(&o.minRSA, "min-rsa-bits", 0, "smallest RSA device key (default 2048, the least allowed)")
	fs.StringVar(&o.importCert, "import-cert", "", "import this intermediate certificate (PEM) instead of making a CA")
	fs.StringVar(&o.importKey, "import-key", "", "the imported intermediate's key: a PEM file, or a key URI with --kms")
	fs.StringVar(&o.importRoot, "import-root", "", "the root the imported intermediate chains to (PEM)")
	return cmd
}

func caShowCmd(g *globals) *cobra.Command {
	var f caFlags
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the CA chain and the certificate to register with DPS",
		Long: `Print the CA's certificates (the issuing intermediate first, the root last)
and then, as PEM, the certificate to register with DPS for an X.509
enrollment group: the issuing intermediate, whose PEM goes into the group's
signingCertificates (or is uploaded and verified as a DPS CA certificate).

Needs no password: only certificates are read. With --url and
--fingerprint, shows the factory step-ca's chain. --json prints one object.

Exit status: 0 shown; 2 for a wrong command line; 3 when there is no CA in
--dir, or the step-ca cannot be reached or does not have the pinned root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.checkRemote(); err != nil {
				return err
			}
			var chain []*x509.Certificate
			var err error
			if f.url != "" {
				chain, err = ca.FetchChain(cmd.Context(), f.url, f.fingerprint)
			} else {
				chain, err = ca.ReadChain(f.dir)
			}
			if err != nil {
				return setupError{err}
			}
			return printChain(g, chain)
		},
	}
	f.addFlags(cmd.Flags())
	return cmd
}

// certInfo is one certificate as `ca show --json` prints it.
type certInfo struct {
	Role        string    `json:"role"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"sha256"`
	PEM         string    `json:"pem"`
}

func printChain(g *globals, chain []*x509.Certificate) error {
	infos := make([]certInfo, len(chain))
	for i, c := range chain {
		role := "intermediate"
		switch {
		case i == len(chain)-1:
			role = "root"
		case i == 0:
			role = "issuing intermediate"
		}
		infos[i] = certInfo{role, c.Subject.String(), c.Issuer.String(), fmt.Sprintf("%x", c.SerialNumber.Bytes()), c.NotBefore.UTC(), c.NotAfter.UTC(), ca.Fingerprint(c), string(ca.EncodePEM(c))}
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(struct {
			Chain            []certInfo `json:"chain"`
			GroupCertificate string     `json:"enrollmentGroupCertificate"`
			RootFingerprint  string     `json:"rootFingerprint"`
		}{infos, infos[0].PEM, infos[len(infos)-1].Fingerprint})
	}
	w := g.stdout
	for _, in := range infos {
		fmt.Fprintf(w, "%s\n  subject    %s\n  issuer     %s\n  serial     %s\n  valid      %s to %s\n  sha256     %s\n",
			in.Role, in.Subject, in.Issuer, in.Serial, in.NotBefore.Format(time.DateOnly), in.NotAfter.Format(time.DateOnly), in.Fingerprint)
	}
	fmt.Fprintf(w, "\nFor an X.509 enrollment group in DPS, register this certificate (%s):\n%s", infos[0].Subject, infos[0].PEM)
	return nil
}

func caSignCmd(g *globals) *cobra.Command {
	var f caFlags
	var csrFile, regID string
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Sign one CSR and print the issued chain (PEM) on stdout",
		Long: `Sign one board's CSR (PEM or DER; - for stdin) for --registration-id and
write the issued chain, device certificate first, as PEM on stdout: for
one-off use outside the station. The signing policy is the station's: the
CSR's CN must be the registration ID, its signature valid, its key of an
allowed type, and it must ask for no SANs and no CA certificate.

With --url, --fingerprint and --provisioner the factory's step-ca signs;
otherwise the local CA in --dir.

Exit status: 0 signed; 1 if the CA refuses the CSR (its name, signature or
key); 2 for a wrong command line, or a CSR file that cannot be read or is
not a CSR; 3 when the CA cannot be used: no CA in --dir, a
wrong or missing password, a step-ca that cannot be trusted or reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var b []byte
			var err error
			if csrFile == "-" {
				b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
			} else {
				b, err = os.ReadFile(csrFile)
			}
			if err != nil {
				return usageError{fmt.Errorf("--csr: %w", err)}
			}
			csr, err := ca.ParseCSR(b)
			if err != nil {
				// Not a CSR at all: the command line names the wrong file.
				return usageError{fmt.Errorf("--csr %s: %w", csrFile, err)}
			}
			iss, err := f.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer iss.Close()
			c, err := iss.Issue(cmd.Context(), csr, regID)
			if err != nil {
				return err
			}
			g.log.Info("issued", "registration_id", regID, "serial", c.Serial, "not_after", c.NotAfter, "sha256", c.Fingerprint)
			_, err = g.stdout.Write(c.PEM())
			return err
		},
	}
	fs := cmd.Flags()
	f.addFlags(fs)
	fs.StringVar(&f.template, "template", "", "device certificate template (x509util JSON) instead of the CA's")
	fs.StringVar(&f.validity, "validity", "", "device certificate validity instead of the CA's, e.g. 365d")
	fs.StringVar(&csrFile, "csr", "", "the CSR file (PEM or DER), or - for stdin")
	fs.StringVar(&regID, "registration-id", "", "the board's registration ID: the certificate's CN")
	cmd.MarkFlagRequired("csr")
	cmd.MarkFlagRequired("registration-id")
	return cmd
}

func caTemplateCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Print the device certificate template (x509util JSON)",
		Long: `Print the device certificate template: the local CA's own if --dir holds a
CA with one, else the built-in one. Give it to the factory step-ca's JWK
provisioner (options.x509.template) so that its certificates match the
local CA's. With --json: one object, {"template": TEXT}.

Exit status: 0 when printed; 2 when the command line is wrong; 3 when
--dir holds no CA.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := ca.CATemplate(dir)
			if errors.Is(err, ca.ErrNoCA) {
				return setupError{err}
			}
			if err != nil {
				return err
			}
			if g.json {
				return printResult(g, map[string]string{"template": t.Text()})
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), t.Text())
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "a local CA's folder (default: the built-in template)")
	return cmd
}
