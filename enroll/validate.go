package enroll

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	"zerotouch/internal/regid"
)

// Allocation policies (service.json AllocationPolicy), spelled as the
// specification spells them: DPS takes no other case.
const (
	AllocationHashed     = "hashed"
	AllocationGeoLatency = "geoLatency"
	AllocationStatic     = "static"
	AllocationCustom     = "custom"
)

// Provisioning statuses (service.json ProvisioningStatus).
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// CheckID reports whether id can be the registration ID of a new record,
// at most max characters long: regid.Check, the specification's rule
// (service.json, IndividualEnrollment.registrationId: alphanumerics and
// : . _ -, no special character at start or end). Errors wrap
// regid.ErrInvalid and say which character is at fault. What the client
// reads or deletes is checked by regid.CheckExisting instead, which
// leaves the ends alone.
func CheckID(id string, max int) error { return regid.Check(id, max) }

// existingID checks the ID of a record the client reads or deletes
// (regid's CheckExisting): ErrInvalid, nothing sent, for one no DPS
// record can have.
func existingID(k regid.Kind, id string) error {
	if err := k.CheckExisting(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Validate checks an individual enrollment before it is sent: a valid
// registration ID (CheckID; at most 64 characters for X.509, whose CN it
// is), an attestation of a known type with what that type needs, and the
// provisioning status and allocation policy as the specification spells
// them (a custom policy with its webhook). Errors wrap ErrInvalid and name
// the registration ID and the field.
func (e *Enrollment) Validate() error {
	max := regid.MaxLen
	if e.Attestation.Type == AttestationX509 {
		max = regid.MaxLenX509
	}
	if err := CheckID(e.RegistrationID, max); err != nil {
		return fmt.Errorf("%w: registrationId: %w", ErrInvalid, err)
	}
	if err := e.Attestation.validate(false); err != nil {
		return fmt.Errorf("%w: enrollment %s: %v", ErrInvalid, e.RegistrationID, err)
	}
	if err := validStatus(e.ProvisioningStatus); err != nil {
		return fmt.Errorf("%w: enrollment %s: %v", ErrInvalid, e.RegistrationID, err)
	}
	if err := validAllocation(e.AllocationPolicy, e.CustomAllocationDefinition); err != nil {
		return fmt.Errorf("%w: enrollment %s: %v", ErrInvalid, e.RegistrationID, err)
	}
	return nil
}

// Validate checks an enrollment group as Enrollment.Validate does an
// enrollment; its attestation is X.509, symmetric key or none (DPS has no
// TPM groups).
func (g *EnrollmentGroup) Validate() error {
	if err := regid.Group.Check(g.EnrollmentGroupID, regid.MaxLen); err != nil {
		return fmt.Errorf("%w: enrollmentGroupId: %w", ErrInvalid, err)
	}
	if err := g.Attestation.validate(true); err != nil {
		return fmt.Errorf("%w: enrollment group %s: %v", ErrInvalid, g.EnrollmentGroupID, err)
	}
	if err := validStatus(g.ProvisioningStatus); err != nil {
		return fmt.Errorf("%w: enrollment group %s: %v", ErrInvalid, g.EnrollmentGroupID, err)
	}
	if err := validAllocation(g.AllocationPolicy, g.CustomAllocationDefinition); err != nil {
		return fmt.Errorf("%w: enrollment group %s: %v", ErrInvalid, g.EnrollmentGroupID, err)
	}
	return nil
}

func validStatus(s string) error {
	switch s {
	case "", StatusEnabled, StatusDisabled:
		return nil
	}
	return fmt.Errorf("provisioningStatus %q: want %s or %s, in lower case", s, StatusEnabled, StatusDisabled)
}

// validAllocation checks the allocation policy against the enum of
// service.json (its case included) and a custom allocation definition
// for what the specification requires of it: webhookUrl and apiVersion;
// a custom policy needs one.
func validAllocation(policy string, custom *CustomAllocation) error {
	switch policy {
	case "", AllocationHashed, AllocationGeoLatency, AllocationStatic, AllocationCustom:
	default:
		return fmt.Errorf("allocationPolicy %q: want %s, %s, %s or %s, spelled so", policy, AllocationHashed, AllocationGeoLatency, AllocationStatic, AllocationCustom)
	}
	if policy == AllocationCustom && custom == nil {
		return fmt.Errorf("allocationPolicy custom needs customAllocationDefinition (webhookUrl and apiVersion)")
	}
	if custom != nil {
		if custom.WebhookURL == "" {
			return fmt.Errorf("customAllocationDefinition.webhookUrl is missing")
		}
		if custom.APIVersion == "" {
			return fmt.Errorf("customAllocationDefinition.apiVersion is missing")
		}
	}
	return nil
}

func (a *Attestation) validate(group bool) error {
	switch a.Type {
	case AttestationTPM:
		if group {
			return fmt.Errorf("attestation tpm: enrollment groups take x509 or symmetricKey")
		}
		if a.TPM == nil || a.TPM.EndorsementKey == "" {
			return fmt.Errorf("attestation tpm: endorsementKey is missing")
		}
		if err := validBase64(a.TPM.EndorsementKey); err != nil {
			return fmt.Errorf("attestation tpm: endorsementKey: %v", err)
		}
		if a.TPM.StorageRootKey != "" {
			if err := validBase64(a.TPM.StorageRootKey); err != nil {
				return fmt.Errorf("attestation tpm: storageRootKey: %v", err)
			}
		}
	case AttestationX509:
		x := a.X509
		if x == nil {
			return fmt.Errorf("attestation x509: certificates are missing")
		}
		certs := x.ClientCertificates
		what := "clientCertificates"
		if group {
			certs, what = x.SigningCertificates, "signingCertificates"
			if certs == nil && x.CAReferences != nil && x.CAReferences.Primary != "" {
				return nil
			}
		}
		if certs == nil || certs.Primary == nil || certs.Primary.Certificate == "" {
			return fmt.Errorf("attestation x509: %s.primary.certificate is missing", what)
		}
		for _, c := range []*X509Certificate{certs.Primary, certs.Secondary} {
			if c == nil {
				continue
			}
			if _, err := ParseCertificate(c.Certificate); err != nil {
				return fmt.Errorf("attestation x509: %s: %v", what, err)
			}
		}
	case AttestationSymmetricKey:
		if s := a.SymmetricKey; s != nil {
			for _, k := range []string{s.PrimaryKey, s.SecondaryKey} {
				if k == "" {
					continue
				}
				if err := validBase64(k); err != nil {
					return fmt.Errorf("attestation symmetricKey: %v", err)
				}
			}
		}
	case AttestationNone:
		// The specification's AttestationType has "none": an enrollment
		// no device can attest against until its attestation is set.
	case "":
		return fmt.Errorf("attestation type is missing (tpm, x509, symmetricKey or none)")
	default:
		return fmt.Errorf("attestation type %q: want tpm, x509, symmetricKey or none", a.Type)
	}
	return nil
}

func validBase64(s string) error {
	if _, err := base64.StdEncoding.DecodeString(s); err != nil {
		return fmt.Errorf("not base64")
	}
	return nil
}

// ParseCertificate reads the first certificate of a PEM string; DPS also
// takes base64 DER without the PEM armour.
func ParseCertificate(s string) (*x509.Certificate, error) {
	var der []byte
	if b, _ := pem.Decode([]byte(s)); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE", b.Type)
		}
		der = b.Bytes
	} else {
		d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("certificate is neither PEM nor base64 DER")
		}
		der = d
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certificate: %v", err)
	}
	return c, nil
}
