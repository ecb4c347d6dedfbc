package station

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"zerotouch/ca"
	"zerotouch/enroll"
)

// GroupService is the part of the DPS service API that EnsureGroup
// calls; *enroll.Client is one. Its errors are enroll's: ErrNotFound
// when there is no such group.
type GroupService interface {
	GetGroup(ctx context.Context, id string) (*enroll.EnrollmentGroup, error)
	GroupAttestationMechanism(ctx context.Context, id string) (*enroll.Attestation, error)
	CreateOrUpdateGroup(ctx context.Context, g *enroll.EnrollmentGroup, ifMatch string) (*enroll.EnrollmentGroup, error)
}

var _ GroupService = (*enroll.Client)(nil)

var (
	// ErrGroupMissing means DPS has no enrollment group of the line's
	// ID, and the line is told not to create it.
	ErrGroupMissing = errors.New("DPS has no such enrollment group")
	// ErrGroupMismatch means DPS holds the line's enrollment group but
	// it does not take the line's boards: another attestation type,
	// another key, another signing certificate, or disabled.
	ErrGroupMismatch = errors.New("the enrollment group in DPS does not take this line's boards")
)

// GroupCredential is what a line's boards prove themselves with, and so
// what their enrollment group must hold.
type GroupCredential struct {
	// Key is a symmetric-key group's primary key, decoded.
	Key []byte
	// Chain is an X.509 group's CA: the issuing intermediate first (the
	// group's signing certificate), the root last (ca.Issuer.Chain).
	Chain []*x509.Certificate
}

// GroupKeyBytes is the size of the keys DPS makes for symmetric-key
// enrollments, and of those NewGroup and zerotouch make.
const GroupKeyBytes = 64

// NewGroup returns the DPS enrollment group g for boards proving
// themselves with cred: a symmetric-key group whose primary key is
// cred.Key (sent with a fresh random secondary key, so that the group
// never depends on the service making one; no board uses it: the
// secondary is for rolling the key over in DPS), or an X.509 group whose
// signing certificate is cred.Chain[0].
func NewGroup(g LineGroup, cred GroupCredential) (*enroll.EnrollmentGroup, error) {
	eg := &enroll.EnrollmentGroup{EnrollmentGroupID: g.ID, Attestation: enroll.Attestation{Type: g.Attestation},
		CredentialPolicyName: g.CredentialPolicy}
	switch g.Attestation {
	case enroll.AttestationSymmetricKey:
		if len(cred.Key) == 0 {
			return nil, fmt.Errorf("enrollment group %s: no symmetric key", g.ID)
		}
		second := make([]byte, GroupKeyBytes)
		rand.Read(second)
		eg.Attestation.SymmetricKey = &enroll.SymmetricKeyAttestation{
			PrimaryKey:   base64.StdEncoding.EncodeToString(cred.Key),
			SecondaryKey: base64.StdEncoding.EncodeToString(second),
		}
	case enroll.AttestationX509:
		if len(cred.Chain) == 0 {
			return nil, fmt.Errorf("enrollment group %s: no CA certificate", g.ID)
		}
		eg.Attestation.X509 = &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{
			Primary: &enroll.X509Certificate{Certificate: string(ca.EncodePEM(cred.Chain[0]))}}}
	default:
		return nil, fmt.Errorf("enrollment group %s: attestation %q: want symmetricKey or x509", g.ID, g.Attestation)
	}
	if err := eg.Validate(); err != nil {
		return nil, err
	}
	return eg, nil
}

// EnsureGroup makes sure DPS holds the enrollment group g that takes
// boards proving themselves with cred. A group that is missing is
// created when g.Create (created is true), else the error wraps
// ErrGroupMissing. A group that is there is checked: of g's attestation
// type, enabled, and holding cred (a symmetric-key group: cred.Key as
// its primary or secondary key, read through the attestation mechanism
// call since a group's keys may be left out of what GET returns; an
// X.509 group: cred.Chain's intermediate, or its root, as a signing
// certificate); a group that fails the check is an error wrapping
// ErrGroupMismatch that says what differs. An X.509 group naming a CA
// reference instead of a certificate cannot be checked: it is logged,
// and passes. Errors from svc come back wrapped, as enroll returns
// them. It logs "enrollment group created" or "enrollment group
// checked".
func EnsureGroup(ctx context.Context, svc GroupService, g LineGroup, cred GroupCredential, log *slog.Logger) (created bool, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want, err := NewGroup(g, cred)
	if err != nil {
		return false, err
	}
	have, err := svc.GetGroup(ctx, g.ID)
	switch {
	case errors.Is(err, enroll.ErrNotFound):
		if !g.Create {
			return false, fmt.Errorf("%w: %s (%s is false)", ErrGroupMissing, g.ID, g.CreateSetting)
		}
		if _, err := svc.CreateOrUpdateGroup(ctx, want, ""); err != nil {
			return false, fmt.Errorf("create enrollment group %s: %w", g.ID, err)
		}
		log.Info("enrollment group created", "group", g.ID, "attestation", g.Attestation)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read enrollment group %s: %w", g.ID, err)
	}
	if err := checkGroup(ctx, svc, g, cred, have, log); err != nil {
		return false, err
	}
	log.Info("enrollment group checked", "group", g.ID, "attestation", g.Attestation)
	return false, nil
}

// checkGroup checks that have, DPS's group g, takes boards proving
// themselves with cred.
func checkGroup(ctx context.Context, svc GroupService, g LineGroup, cred GroupCredential, have *enroll.EnrollmentGroup, log *slog.Logger) error {
	if t := have.Attestation.Type; t != g.Attestation {
		return fmt.Errorf("%w: group %s is %s, and this line's boards need %s: name another group in %s, or delete that one",
			ErrGroupMismatch, g.ID, groupKind(t), groupKind(g.Attestation), g.Setting)
	}
	if have.ProvisioningStatus == "disabled" {
		return fmt.Errorf("%w: group %s is disabled, so DPS would refuse every board: enable it in DPS", ErrGroupMismatch, g.ID)
	}
	if g.CredentialPolicy != "" && !strings.EqualFold(have.CredentialPolicyName, g.CredentialPolicy) {
		held := "no credential policy"
		if have.CredentialPolicyName != "" {
			held = "credential policy " + have.CredentialPolicyName
		}
		return fmt.Errorf("%w: group %s names %s, and this line's boards get their certificates under %s (operational_certificate.credential_policy): set the policy on the group in DPS, or name another group in %s",
			ErrGroupMismatch, g.ID, held, g.CredentialPolicy, g.Setting)
	}
	switch g.Attestation {
	case enroll.AttestationSymmetricKey:
		att, err := svc.GroupAttestationMechanism(ctx, g.ID)
		if err != nil {
			return fmt.Errorf("read the keys of enrollment group %s: %w", g.ID, err)
		}
		if att.SymmetricKey != nil {
			for _, k := range []string{att.SymmetricKey.PrimaryKey, att.SymmetricKey.SecondaryKey} {
				if b, err := base64.StdEncoding.DecodeString(k); err == nil && len(b) > 0 && subtle.ConstantTimeCompare(b, cred.Key) == 1 {
					return nil
				}
			}
		}
		return fmt.Errorf("%w: group %s holds other keys than the line's (symmetric_key.key_file): give the line the group's primary key, or name another group in %s",
			ErrGroupMismatch, g.ID, g.Setting)
	case enroll.AttestationX509:
		x := have.Attestation.X509
		if x != nil && x.SigningCertificates == nil && x.CAReferences != nil && x.CAReferences.Primary != "" {
			log.Warn("the enrollment group names a CA certificate registered in DPS, which cannot be checked against the line's CA: boards will fail to register unless it is the CA's",
				"group", g.ID, "ca_reference", x.CAReferences.Primary)
			return nil
		}
		var held []string
		if x != nil && x.SigningCertificates != nil {
			for _, c := range []*enroll.X509Certificate{x.SigningCertificates.Primary, x.SigningCertificates.Secondary} {
				if c == nil {
					continue
				}
				thumb := certThumbprint(c)
				for _, want := range cred.Chain {
					if thumb != "" && strings.EqualFold(thumb, ca.Fingerprint(want)) {
						return nil
					}
				}
				held = append(held, certName(c, thumb))
			}
		}
		inter := cred.Chain[0]
		return fmt.Errorf("%w: group %s's signing certificate is %s, not the CA's intermediate %q (sha256 %s): name another group in %s, or put the CA's intermediate in that group",
			ErrGroupMismatch, g.ID, orNone(held), inter.Subject.String(), ca.Fingerprint(inter), g.Setting)
	}
	return nil
}

// groupKind names a group's attestation type for messages.
func groupKind(attestation string) string {
	switch attestation {
	case enroll.AttestationSymmetricKey:
		return "a symmetric-key group"
	case enroll.AttestationX509:
		return "an X.509 group"
	}
	return fmt.Sprintf("a group of %q attestation", attestation)
}

// certThumbprint is a certificate's SHA-256 thumbprint, in hex, from what
// DPS returns: its info, or the certificate itself.
func certThumbprint(c *enroll.X509Certificate) string {
	if c.Info != nil && c.Info.SHA256Thumbprint != "" {
		return c.Info.SHA256Thumbprint
	}
	if c.Certificate != "" {
		if cert, err := enroll.ParseCertificate(c.Certificate); err == nil {
			sum := sha256.Sum256(cert.Raw)
			return hex.EncodeToString(sum[:])
		}
	}
	return ""
}

func certName(c *enroll.X509Certificate, thumb string) string {
	if c.Info != nil && c.Info.SubjectName != "" {
		return fmt.Sprintf("%q (sha256 %s)", c.Info.SubjectName, strings.ToLower(thumb))
	}
	return "sha256 " + strings.ToLower(thumb)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " and ")
}
