package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
)

// TPMChallenge seals key (an HMAC-SHA256 key) in an activation blob that
// only the TPM with the endorsement key ekTPM2B and the storage root key
// srkTPM2B can import; both are marshalled TPM2B_PUBLIC. It is
// dpstpm.Challenge's signature.
type TPMChallenge func(rand io.Reader, ekTPM2B, srkTPM2B, key []byte) ([]byte, error)

// tpmKeySize is the size of the HMAC keys the emulator seals: the key a
// challenge carries, and the device key of the final answer.
const tpmKeySize = 32

var errNoTPMChallenge = errors.New("TPM attestation needs Options.TPMChallenge")

// attestation is what a device API request proved: the enrollment or
// group it matched, and the attestation's details.
type attestation struct {
	mechanism  string                  // enroll.Attestation*
	enrollment *enroll.Enrollment      // the individual enrollment, or nil
	group      *enroll.EnrollmentGroup // the group, or nil
	leaf       *x509.Certificate       // X.509: the client certificate the device presented
	signer     *x509.Certificate       // X.509 group: the signing certificate the chain verified to
	tpm        *tpmKey                 // TPM: the EK and SRK the device proved it holds
	challenge  bool                    // TPM: no Authorization; the challenge is answered once the body is read
}

func (a *attestation) groupID() string {
	if a.group == nil {
		return ""
	}
	return a.group.EnrollmentGroupID
}

// policy is what the allocation reads from the enrollment or the group.
func (a *attestation) policy() policy {
	if g := a.group; g != nil {
		return policy{status: g.ProvisioningStatus, allocation: g.AllocationPolicy, iotHubs: g.IoTHubs,
			iotHubHostName: g.IoTHubHostName, reprovision: g.ReprovisionPolicy}
	}
	en := a.enrollment
	return policy{status: en.ProvisioningStatus, allocation: en.AllocationPolicy, iotHubs: en.IoTHubs,
		iotHubHostName: en.IoTHubHostName, reprovision: en.ReprovisionPolicy, deviceID: en.DeviceID}
}

// fill adds the attestation's part of a DeviceRegistrationResult: the
// TPM's device key blob; the X.509 client certificate's info, and the
// group and its signing certificate's; or the symmetric-key group. An
// individual symmetric-key registration has none, as in DPS's documented
// answer.
func (a *attestation) fill(res *registrationResult, tpmBlob string) {
	switch a.mechanism {
	case enroll.AttestationTPM:
		if tpmBlob != "" {
			res.TPM = &tpmResult{AuthenticationKey: tpmBlob}
		}
	case enroll.AttestationX509:
		res.X509 = &x509Result{}
		if a.leaf != nil {
			res.X509.CertificateInfo = certInfo(a.leaf)
		}
		if a.group != nil {
			res.X509.EnrollmentGroupID = a.group.EnrollmentGroupID
			res.X509.SigningCertificateInfo = certInfo(a.signer)
		}
	case enroll.AttestationSymmetricKey:
		if a.group != nil {
			res.SymmetricKey = &symmetricKeyResult{EnrollmentGroupID: a.group.EnrollmentGroupID}
		}
	}
}

// tpmChallengeBody is the 401 that carries a TPM challenge (the fields
// the device SDKs read: authenticationKey, keyName, message).
type tpmChallengeBody struct {
	Message           string `json:"message"`
	AuthenticationKey string `json:"authenticationKey"`
	KeyName           string `json:"keyName"`
}

func deviceUnauthorized(kind, format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: enroll.CodeUnauthorized,
		msg: fmt.Sprintf(format, args...), logMsg: "unauthorized: " + kind}
}

func notEnrolled(regID string) *apiError {
	return &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
		msg: fmt.Sprintf("registration %q is not enrolled: no individual enrollment has this ID, and no enrollment group takes this kind of attestation", regID)}
}

// attest finds what the request's path, headers and TLS client
// certificate prove, as DPS does, before its body is read: the
// individual enrollment regID when there is one, whatever groups exist;
// otherwise a group of the kind the request's credentials are (a SAS
// token: symmetric-key groups; a client certificate: X.509 groups). No
// enrollment to try is 404; credentials that match none is 401. A TPM
// device's register request without Authorization is marked for the
// challenge, which needs its body: attestBody finishes it.
func (e *Emulator) attest(ctx context.Context, r *http.Request, regID string, op deviceOp) (*attestation, *apiError) {
	row, err := getRow(ctx, e.db, tableEnrollments, regID)
	if err != nil {
		return nil, internalError("read enrollment "+regID, err)
	}
	if row != nil {
		var en enroll.Enrollment
		if err := json.Unmarshal(row.body, &en); err != nil {
			return nil, internalError("decode enrollment "+regID, err)
		}
		att := &attestation{mechanism: en.Attestation.Type, enrollment: &en}
		switch en.Attestation.Type {
		case enroll.AttestationTPM:
			return e.attestTPM(ctx, r, regID, op, att)
		case enroll.AttestationSymmetricKey:
			sas, a := e.deviceSAS(r)
			if a != nil {
				return nil, a
			}
			if a := e.checkDeviceSAS(sas, symmetricKeys(en.Attestation.SymmetricKey), regID, "the enrollment's primary or secondary key"); a != nil {
				return nil, a
			}
			return att, nil
		case enroll.AttestationX509:
			leaf, a := e.clientLeaf(r, regID)
			if a != nil {
				return nil, a
			}
			if !matchesClientCertificate(leaf, en.Attestation.X509) {
				return nil, deviceUnauthorized("certificate", "the client certificate (SHA-256 %s) is not the enrollment's primary or secondary certificate", thumbprint(leaf))
			}
			att.leaf = leaf
			return att, nil
		}
		return nil, deviceUnauthorized("attestation", "enrollment %q has attestation %q, which devices cannot register with", regID, en.Attestation.Type)
	}

	groups, err := e.groups(ctx)
	if err != nil {
		return nil, internalError("read enrollment groups", err)
	}
	switch {
	case strings.TrimSpace(r.Header.Get("Authorization")) != "":
		sas, a := e.deviceSAS(r)
		if a != nil {
			return nil, a
		}
		tried := 0
		for _, g := range groups {
			if g.Attestation.Type != enroll.AttestationSymmetricKey {
				continue
			}
			tried++
			keys := symmetricKeys(g.Attestation.SymmetricKey)
			for i, k := range keys {
				keys[i] = device.DeriveKey(k, regID)
			}
			err := sas.Verify(keys, deviceAudience(e.idScope, regID), e.now())
			if err == nil {
				return &attestation{mechanism: enroll.AttestationSymmetricKey, group: g}, nil
			}
			if !errors.Is(err, enroll.ErrSASSignature) {
				return nil, e.sasRefusal(sas, err, regID, "") // expired or for another resource: no key helps
			}
		}
		if tried == 0 {
			return nil, notEnrolled(regID)
		}
		return nil, deviceUnauthorized("signature", "the SAS token is not signed with a key derived from any symmetric-key enrollment group's key")
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		var x509Groups []*enroll.EnrollmentGroup
		for _, g := range groups {
			if g.Attestation.Type == enroll.AttestationX509 {
				x509Groups = append(x509Groups, g)
			}
		}
		if len(x509Groups) == 0 {
			return nil, notEnrolled(regID)
		}
		leaf, a := e.clientLeaf(r, regID)
		if a != nil {
			return nil, a
		}
		opts := x509.VerifyOptions{Intermediates: x509.NewCertPool(), CurrentTime: e.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		for _, c := range r.TLS.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		for _, g := range x509Groups {
			if signer := verifiesTo(leaf, g.Attestation.X509, opts); signer != nil {
				return &attestation{mechanism: enroll.AttestationX509, group: g, leaf: leaf, signer: signer}, nil
			}
		}
		return nil, deviceUnauthorized("chain", "the client certificate's chain (issuer %q) does not verify to any X.509 enrollment group's signing certificate", leaf.Issuer.String())
	}
	return nil, notEnrolled(regID)
}

// groups reads every enrollment group (DPS allows 200).
func (e *Emulator) groups(ctx context.Context) ([]*enroll.EnrollmentGroup, error) {
	rows, err := listRows(ctx, e.db, tableGroups, 0, allRows)
	if err != nil {
		return nil, err
	}
	out := make([]*enroll.EnrollmentGroup, 0, len(rows))
	for _, row := range rows {
		var g enroll.EnrollmentGroup
		if err := json.Unmarshal(row.body, &g); err != nil {
			return nil, fmt.Errorf("decode enrollment group %s: %w", row.id, err)
		}
		out = append(out, &g)
	}
	return out, nil
}

// allRows is a limit no table reaches.
const allRows = 1<<31 - 1

// deviceSAS reads the request's device SAS token: 401 when it is missing
// or malformed.
func (e *Emulator) deviceSAS(r *http.Request) (*enroll.SAS, *apiError) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return nil, deviceUnauthorized("missing", "the Authorization header is missing: send a SharedAccessSignature token for %q signed with the device's key", deviceAudience(e.idScope, "{registrationId}"))
	}
	sas, err := parseDeviceSAS(h)
	if err != nil {
		return nil, deviceUnauthorized("malformed", "%v", err)
	}
	return sas, nil
}

// checkDeviceSAS verifies sas for registration regID with any of keys
// (enroll.SAS.Verify: the HMAC over sr as sent, five minutes of skew,
// sr a prefix of "{idScope}/registrations/{regID}" in any case). whose
// names the keys in the message, when they are one enrollment's.
func (e *Emulator) checkDeviceSAS(sas *enroll.SAS, keys [][]byte, regID, whose string) *apiError {
	if err := sas.Verify(keys, deviceAudience(e.idScope, regID), e.now()); err != nil {
		return e.sasRefusal(sas, err, regID, whose)
	}
	return nil
}

// sasRefusal is the 401 for a token Verify refused with err.
func (e *Emulator) sasRefusal(sas *enroll.SAS, err error, regID, whose string) *apiError {
	target := deviceAudience(e.idScope, regID)
	switch {
	case errors.Is(err, enroll.ErrSASExpired):
		return deviceUnauthorized("expired", "%v (more than %v ago): make a new token", err, enroll.MaxClockSkew)
	case errors.Is(err, enroll.ErrSASAudience):
		return deviceUnauthorized("audience", "the SAS token is signed for %q, not %q", sas.Resource, target)
	case errors.Is(err, enroll.ErrSASSignature) && whose != "":
		return deviceUnauthorized("signature", "the SAS token's signature does not match %s", whose)
	case errors.Is(err, enroll.ErrSASSignature):
		return deviceUnauthorized("signature", "the SAS token's signature does not match")
	}
	return deviceUnauthorized("invalid", "%v", err)
}

// symmetricKeys decodes an enrollment's or group's base64 keys; those
// that are not base64 are left out.
func symmetricKeys(s *enroll.SymmetricKeyAttestation) [][]byte {
	if s == nil {
		return nil
	}
	var out [][]byte
	for _, k := range []string{s.PrimaryKey, s.SecondaryKey} {
		if b, err := base64.StdEncoding.DecodeString(k); err == nil && len(b) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// clientLeaf is the request's client certificate, checked as DPS checks
// it before any enrollment: its CN is the registration ID (in any case)
// and it is within its validity period. 401 otherwise.
func (e *Emulator) clientLeaf(r *http.Request, regID string) (*x509.Certificate, *apiError) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, deviceUnauthorized("no certificate", "no client certificate: an X.509 device presents its certificate (CN %q) in the TLS handshake", regID)
	}
	leaf := r.TLS.PeerCertificates[0]
	if !strings.EqualFold(leaf.Subject.CommonName, regID) {
		return nil, deviceUnauthorized("common name", "the client certificate's CN %q is not the registration ID %q", leaf.Subject.CommonName, regID)
	}
	if now := e.now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, deviceUnauthorized("certificate expired", "the client certificate is valid from %s to %s, not now", leaf.NotBefore.UTC().Format("2006-01-02T15:04:05Z"), leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return leaf, nil
}

func thumbprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// matchesClientCertificate reports whether leaf is the enrollment's
// primary or secondary client certificate, compared by content (or by
// thumbprint when only the certificate's info is held).
func matchesClientCertificate(leaf *x509.Certificate, x *enroll.X509Attestation) bool {
	if x == nil || x.ClientCertificates == nil {
		return false
	}
	for _, c := range []*enroll.X509Certificate{x.ClientCertificates.Primary, x.ClientCertificates.Secondary} {
		if c == nil {
			continue
		}
		if c.Certificate != "" {
			if cert, err := enroll.ParseCertificate(c.Certificate); err == nil && bytes.Equal(cert.Raw, leaf.Raw) {
				return true
			}
		} else if c.Info != nil && strings.EqualFold(c.Info.SHA256Thumbprint, thumbprint(leaf)) {
			return true
		}
	}
	return false
}

// verifiesTo returns the group's signing certificate (primary, then
// secondary) that leaf's chain verifies to, or nil. Groups that name a
// CA by reference only (caReferences) verify nothing: the emulator holds
// no CA certificates of its own.
func verifiesTo(leaf *x509.Certificate, x *enroll.X509Attestation, opts x509.VerifyOptions) *x509.Certificate {
	if x == nil || x.SigningCertificates == nil {
		return nil
	}
	for _, c := range []*enroll.X509Certificate{x.SigningCertificates.Primary, x.SigningCertificates.Secondary} {
		if c == nil || c.Certificate == "" {
			continue
		}
		ca, err := enroll.ParseCertificate(c.Certificate)
		if err != nil {
			continue
		}
		o := opts
		o.Roots = x509.NewCertPool()
		o.Roots.AddCert(ca)
		if _, err := leaf.Verify(o); err == nil {
			return ca
		}
	}
	return nil
}

// attestTPM checks a TPM device against its individual enrollment (DPS
// has no TPM groups), as the device SDKs expect (dps-notes 4.4), from
// the request's headers:
//
//   - with Authorization, a SAS token signed with the key of the
//     challenge issued to the registration (401 otherwise);
//   - without, only a register request goes on (401 otherwise): it is
//     marked for the challenge, which attestBody issues once the body
//     has brought the keys to seal it to.
func (e *Emulator) attestTPM(ctx context.Context, r *http.Request, regID string, op deviceOp, att *attestation) (*attestation, *apiError) {
	enrolled := att.enrollment.Attestation.TPM
	ek, err := base64.StdEncoding.DecodeString(enrolled.EndorsementKey)
	if err != nil {
		return nil, internalError("decode the endorsement key of "+regID, err)
	}
	if strings.TrimSpace(r.Header.Get("Authorization")) == "" {
		if op != opRegister {
			return nil, tpmMissing()
		}
		att.challenge = true
		return att, nil
	}
	sas, a := e.deviceSAS(r)
	if a != nil {
		return nil, a
	}
	k, err := getTPMKey(ctx, e.db, regID)
	if err != nil {
		return nil, internalError("read the TPM key of "+regID, err)
	}
	if k == nil {
		return nil, deviceUnauthorized("no challenge", "no TPM challenge was issued to %q: send the register request without Authorization first", regID)
	}
	if !bytes.Equal(k.ek, ek) {
		return nil, deviceUnauthorized("endorsement key", "the enrollment's endorsement key changed since the challenge: register again without Authorization")
	}
	if a := e.checkDeviceSAS(sas, [][]byte{k.key}, regID, "the key of the TPM challenge"); a != nil {
		return nil, a
	}
	att.tpm = k
	return att, nil
}

func tpmMissing() *apiError {
	return deviceUnauthorized("missing", "no Authorization: a TPM device sends its tpm.endorsementKey and tpm.storageRootKey to register, then a SAS token signed with the key of the challenge")
}

// attestBody finishes a TPM device's attestation with what its register
// request's body says (reg; nil for the other requests): the endorsement
// key sent, if any, must be the one enrolled (401); a request marked for
// the challenge is answered with it, a 401 whose authenticationKey is a
// fresh HMAC key sealed to the EK and the SRK sent (or enrolled), kept
// for the registration. Other attestations pass unchanged.
func (e *Emulator) attestBody(ctx context.Context, regID string, att *attestation, reg *deviceRegistration) (*attestation, *apiError) {
	if att.mechanism != enroll.AttestationTPM || att.enrollment == nil {
		return att, nil
	}
	enrolled := att.enrollment.Attestation.TPM
	ek, err := base64.StdEncoding.DecodeString(enrolled.EndorsementKey)
	if err != nil {
		return nil, internalError("decode the endorsement key of "+regID, err)
	}
	if reg != nil && reg.TPM != nil {
		sent, _ := base64.StdEncoding.DecodeString(reg.TPM.EndorsementKey)
		if !bytes.Equal(sent, ek) {
			return nil, deviceUnauthorized("endorsement key", "the endorsement key sent is not the one enrolled for %q", regID)
		}
	}
	if !att.challenge {
		return att, nil
	}
	if reg == nil || reg.TPM == nil {
		return nil, tpmMissing()
	}
	srk, _ := base64.StdEncoding.DecodeString(reg.TPM.StorageRootKey)
	if len(srk) == 0 {
		srk, _ = base64.StdEncoding.DecodeString(enrolled.StorageRootKey)
	}
	if len(srk) == 0 {
		return nil, badRequest(enroll.CodeBadBody, "tpm.storageRootKey is missing: the challenge is sealed to the storage root key")
	}
	return nil, e.challengeTPM(ctx, regID, ek, srk)
}

// challengeTPM issues a TPM challenge: a fresh key, kept for the
// registration (a restart keeps it), sealed to ek and srk.
func (e *Emulator) challengeTPM(ctx context.Context, regID string, ek, srk []byte) *apiError {
	if e.tpmChallenge == nil {
		return internalError("make the TPM challenge", errNoTPMChallenge)
	}
	k := tpmKey{ek: ek, srk: srk, key: make([]byte, tpmKeySize)}
	rand.Read(k.key)
	blob, err := e.tpmChallenge(rand.Reader, ek, srk, k.key)
	if err != nil {
		return badRequest(enroll.CodeBadBody, "cannot seal a TPM challenge to this endorsement key and storage root key: %v", err)
	}
	if err := e.inTx(ctx, func(tx *sql.Tx) error { return putTPMKey(ctx, tx, regID, k, e.now()) }); err != nil {
		return internalError("keep the TPM key of "+regID, err)
	}
	return &apiError{status: http.StatusUnauthorized, code: enroll.CodeUnauthorized, challenge: true,
		msg:    "TPM challenge: import authenticationKey into the TPM and sign a SAS token with it",
		logMsg: "TPM challenge issued",
		body: tpmChallengeBody{
			Message:           "Unauthorized: import authenticationKey into the TPM (ActivateCredential, Import) and register again with a SAS token signed with it",
			AuthenticationKey: base64.StdEncoding.EncodeToString(blob),
			KeyName:           deviceKeyName,
		}}
}
