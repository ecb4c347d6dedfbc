package enroll

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
)

// Differences lists the fields that want sets and got (as the service
// holds it) does not match, by their JSON names. Fields want leaves unset
// are not compared, since the service fills defaults; read-only fields
// (etag, timestamps, registration state, certificate info) are never
// compared. An X.509 certificate matches by PEM or by the SHA-256
// thumbprint the service reports. Registration IDs compare
// case-insensitively. An empty result means the service holds what want
// asked for.
func Differences(want, got *Enrollment) []string {
	var d []string
	add := func(ok bool, name string) {
		if !ok {
			d = append(d, name)
		}
	}
	add(strings.EqualFold(want.RegistrationID, got.RegistrationID), "registrationId")
	add(want.DeviceID == "" || want.DeviceID == got.DeviceID, "deviceId")
	add(sameAttestation(&want.Attestation, &got.Attestation), "attestation")
	add(want.Capabilities == nil || got.Capabilities != nil && *want.Capabilities == *got.Capabilities ||
		got.Capabilities == nil && !want.Capabilities.IoTEdge, "capabilities")
	add(want.IoTHubHostName == "" || want.IoTHubHostName == got.IoTHubHostName, "iotHubHostName")
	add(want.InitialTwin == nil || sameJSON(want.InitialTwin, got.InitialTwin), "initialTwin")
	// Unset means enabled, the service's default: a disabled enrollment
	// is not the one asked for.
	add(orEnabled(want.ProvisioningStatus) == orEnabled(got.ProvisioningStatus), "provisioningStatus")
	add(want.ReprovisionPolicy == nil || got.ReprovisionPolicy != nil && *want.ReprovisionPolicy == *got.ReprovisionPolicy, "reprovisionPolicy")
	add(want.AllocationPolicy == "" || want.AllocationPolicy == got.AllocationPolicy, "allocationPolicy")
	add(len(want.IoTHubs) == 0 || reflect.DeepEqual(want.IoTHubs, got.IoTHubs), "iotHubs")
	add(want.CustomAllocationDefinition == nil || got.CustomAllocationDefinition != nil &&
		*want.CustomAllocationDefinition == *got.CustomAllocationDefinition, "customAllocationDefinition")
	add(want.OptionalDeviceInformation == nil || sameJSON(want.OptionalDeviceInformation, got.OptionalDeviceInformation), "optionalDeviceInformation")
	// The policy that issues the board's operational certificate: an
	// enrollment without it (or with another) is not the one asked for.
	add(want.CredentialPolicyName == "" || want.CredentialPolicyName == got.CredentialPolicyName, "credentialPolicyName")
	return d
}

func sameAttestation(want, got *Attestation) bool {
	if want.Type != got.Type {
		return false
	}
	switch want.Type {
	case AttestationTPM:
		return got.TPM != nil && want.TPM != nil && want.TPM.EndorsementKey == got.TPM.EndorsementKey &&
			(want.TPM.StorageRootKey == "" || want.TPM.StorageRootKey == got.TPM.StorageRootKey)
	case AttestationSymmetricKey:
		w, g := want.SymmetricKey, got.SymmetricKey
		if w == nil {
			return true
		}
		if g == nil {
			return w.PrimaryKey == "" && w.SecondaryKey == ""
		}
		return (w.PrimaryKey == "" || w.PrimaryKey == g.PrimaryKey) && (w.SecondaryKey == "" || w.SecondaryKey == g.SecondaryKey)
	case AttestationX509:
		w, g := want.X509, got.X509
		if w == nil || g == nil {
			return w == g
		}
		return sameCerts(w.ClientCertificates, g.ClientCertificates) && sameCerts(w.SigningCertificates, g.SigningCertificates) &&
			(w.CAReferences == nil || g.CAReferences != nil && *w.CAReferences == *g.CAReferences)
	}
	return true
}

func sameCerts(want, got *X509Certificates) bool {
	if want == nil {
		return true
	}
	if got == nil {
		return false
	}
	return sameCert(want.Primary, got.Primary) && sameCert(want.Secondary, got.Secondary)
}

func sameCert(want, got *X509Certificate) bool {
	if want == nil || want.Certificate == "" {
		return true
	}
	if got == nil {
		return false
	}
	wc, err := ParseCertificate(want.Certificate)
	if err != nil {
		return false
	}
	if got.Certificate != "" {
		if gc, err := ParseCertificate(got.Certificate); err == nil {
			return wc.Equal(gc)
		}
	}
	if got.Info != nil && got.Info.SHA256Thumbprint != "" {
		sum := sha256.Sum256(wc.Raw)
		return strings.EqualFold(hex.EncodeToString(sum[:]), got.Info.SHA256Thumbprint)
	}
	return false
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	json.Unmarshal(ja, &va)
	json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

func orEnabled(s string) string {
	if s == "" {
		return "enabled"
	}
	return s
}
