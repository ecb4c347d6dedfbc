package enroll

import (
	"encoding/json"
	"regexp"
	"time"
)

// Service API versions (service.json under stable/ in
// Azure/azure-rest-api-specs, deviceprovisioningservices/data-plane).
// 2026-04-01 adds credentialPolicyName to individual enrollments and
// enrollment groups and is otherwise 2021-10-01.
const (
	APIVersion2021 = "2021-10-01"
	APIVersion2026 = "2026-04-01"
)

// APIVersion is the service API version the client sends unless
// Config.APIVersion says otherwise: the newest stable one.
const APIVersion = APIVersion2026

// APIVersionPreview2025 is the preview api-version that brought
// certificate issuance, made stable by 2026-04-01.
const APIVersionPreview2025 = "2025-07-01-preview"

// SupportsCredentialPolicy reports whether api-version apiVersion has
// certificate issuance under an Azure Device Registry credential policy,
// on both sides: the service API's credentialPolicyName on individual
// enrollments and groups, and the device API's csr in a register request
// and issuedCertificateChain in its result. 2025-07-01-preview brought
// them and 2026-04-01 made them stable: both, and every later version,
// have them. Under an older version the service's answers carry no
// credentialPolicyName, a value sent is not stored, and a csr is refused.
// The client, the device client and the emulator all ask this one
// predicate.
func SupportsCredentialPolicy(apiVersion string) bool {
	return apiVersion >= APIVersionPreview2025[:len("2025-07-01")]
}

// policyNameRE is Azure Device Registry's rule for a credential policy's
// name: 3 to 50 letters, digits and hyphens, starting and ending with a
// letter or digit.
var policyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{1,48}[A-Za-z0-9]$`)

// PolicyNameRule says what CredentialPolicyNameOK takes, for messages.
const PolicyNameRule = "want 3 to 50 letters, digits and hyphens, starting and ending with a letter or digit"

// CredentialPolicyNameOK reports whether name is a credential policy's
// name as Azure Device Registry has them (PolicyNameRule).
func CredentialPolicyNameOK(name string) bool { return policyNameRE.MatchString(name) }

// MaxBulk is the most enrollments one bulk operation may carry
// (service.json: "Bulk device enrollment operation with maximum of 10
// enrollments").
const MaxBulk = 10

// MaxMessage is the largest request DPS takes, in bytes ("Maximum size of
// message: 96 KB", DPS quotas and limits).
const MaxMessage = 96 * 1024

// Attestation types.
const (
	AttestationTPM          = "tpm"
	AttestationX509         = "x509"
	AttestationSymmetricKey = "symmetricKey"
	AttestationNone         = "none"
)

// Bulk operation modes.
const (
	ModeCreate            = "create"
	ModeUpdate            = "update"
	ModeUpdateIfMatchETag = "updateIfMatchETag"
	ModeDelete            = "delete"
)

// Enrollment is an individual enrollment (IndividualEnrollment in the
// REST API). Fields the service sets are marked read-only.
type Enrollment struct {
	RegistrationID             string             `json:"registrationId"`
	DeviceID                   string             `json:"deviceId,omitempty"`
	RegistrationState          *RegistrationState `json:"registrationState,omitempty"` // read-only
	Attestation                Attestation        `json:"attestation"`
	Capabilities               *Capabilities      `json:"capabilities,omitempty"`
	IoTHubHostName             string             `json:"iotHubHostName,omitempty"`
	InitialTwin                *InitialTwin       `json:"initialTwin,omitempty"`
	ETag                       string             `json:"etag,omitempty"`
	ProvisioningStatus         string             `json:"provisioningStatus,omitempty"` // enabled (default) or disabled
	ReprovisionPolicy          *ReprovisionPolicy `json:"reprovisionPolicy,omitempty"`
	AllocationPolicy           string             `json:"allocationPolicy,omitempty"` // hashed, geoLatency, static, custom
	IoTHubs                    []string           `json:"iotHubs,omitempty"`
	CustomAllocationDefinition *CustomAllocation  `json:"customAllocationDefinition,omitempty"`
	OptionalDeviceInformation  map[string]any     `json:"optionalDeviceInformation,omitempty"`
	// CredentialPolicyName names the Azure Device Registry credential
	// policy that issues the device's operational certificate
	// (api-version 2026-04-01 and later).
	CredentialPolicyName   string     `json:"credentialPolicyName,omitempty"`
	CreatedDateTimeUTC     *time.Time `json:"createdDateTimeUtc,omitempty"`     // read-only
	LastUpdatedDateTimeUTC *time.Time `json:"lastUpdatedDateTimeUtc,omitempty"` // read-only
}

// EnrollmentGroup is an enrollment group: X.509 (CA-based) or symmetric
// key; DPS has no TPM groups.
type EnrollmentGroup struct {
	EnrollmentGroupID          string             `json:"enrollmentGroupId"`
	Attestation                Attestation        `json:"attestation"`
	Capabilities               *Capabilities      `json:"capabilities,omitempty"`
	IoTHubHostName             string             `json:"iotHubHostName,omitempty"`
	InitialTwin                *InitialTwin       `json:"initialTwin,omitempty"`
	ETag                       string             `json:"etag,omitempty"`
	ProvisioningStatus         string             `json:"provisioningStatus,omitempty"`
	ReprovisionPolicy          *ReprovisionPolicy `json:"reprovisionPolicy,omitempty"`
	AllocationPolicy           string             `json:"allocationPolicy,omitempty"`
	IoTHubs                    []string           `json:"iotHubs,omitempty"`
	CustomAllocationDefinition *CustomAllocation  `json:"customAllocationDefinition,omitempty"`
	// CredentialPolicyName: as on Enrollment (api-version 2026-04-01).
	CredentialPolicyName   string     `json:"credentialPolicyName,omitempty"`
	CreatedDateTimeUTC     *time.Time `json:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC *time.Time `json:"lastUpdatedDateTimeUtc,omitempty"`
}

// Attestation is the AttestationMechanism: Type and the one matching
// field.
type Attestation struct {
	Type         string                   `json:"type"`
	TPM          *TPMAttestation          `json:"tpm,omitempty"`
	X509         *X509Attestation         `json:"x509,omitempty"`
	SymmetricKey *SymmetricKeyAttestation `json:"symmetricKey,omitempty"`
}

// TPMAttestation holds base64 TPM2B_PUBLIC blobs (with their size prefix).
type TPMAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey,omitempty"`
}

// SymmetricKeyAttestation holds base64 keys; DPS makes them when empty.
type SymmetricKeyAttestation struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

// X509Attestation: client certificates for an individual enrollment,
// signing certificates (or CA references) for a group.
type X509Attestation struct {
	ClientCertificates  *X509Certificates `json:"clientCertificates,omitempty"`
	SigningCertificates *X509Certificates `json:"signingCertificates,omitempty"`
	CAReferences        *X509CAReferences `json:"caReferences,omitempty"`
}

// X509Certificates is a primary and an optional secondary certificate.
type X509Certificates struct {
	Primary   *X509Certificate `json:"primary,omitempty"`
	Secondary *X509Certificate `json:"secondary,omitempty"`
}

// X509Certificate is a PEM certificate as sent; the service answers with
// Info and may leave Certificate out.
type X509Certificate struct {
	Certificate string    `json:"certificate,omitempty"`
	Info        *X509Info `json:"info,omitempty"` // read-only
}

// X509Info describes a certificate the service holds.
type X509Info struct {
	SubjectName      string    `json:"subjectName"`
	SHA1Thumbprint   string    `json:"sha1Thumbprint"`
	SHA256Thumbprint string    `json:"sha256Thumbprint"`
	IssuerName       string    `json:"issuerName"`
	NotBeforeUTC     time.Time `json:"notBeforeUtc"`
	NotAfterUTC      time.Time `json:"notAfterUtc"`
	SerialNumber     string    `json:"serialNumber"`
	Version          int       `json:"version"`
}

// X509CAReferences names CA certificates registered with the service.
type X509CAReferences struct {
	Primary   string `json:"primary,omitempty"`
	Secondary string `json:"secondary,omitempty"`
}

// Capabilities of the device.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// InitialTwin is the twin a device starts with.
type InitialTwin struct {
	Tags       map[string]any     `json:"tags,omitempty"`
	Properties *InitialProperties `json:"properties,omitempty"`
}

// InitialProperties holds the desired properties.
type InitialProperties struct {
	Desired map[string]any `json:"desired,omitempty"`
}

// ReprovisionPolicy says what happens when a device re-provisions.
type ReprovisionPolicy struct {
	UpdateHubAssignment bool `json:"updateHubAssignment"`
	MigrateDeviceData   bool `json:"migrateDeviceData"`
}

// CustomAllocation points at an allocation webhook.
type CustomAllocation struct {
	WebhookURL string `json:"webhookUrl"`
	APIVersion string `json:"apiVersion"`
}

// RegistrationState is the read-only state of a device's registration.
type RegistrationState struct {
	RegistrationID         string          `json:"registrationId,omitempty"`
	CreatedDateTimeUTC     *time.Time      `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string          `json:"assignedHub,omitempty"`
	DeviceID               string          `json:"deviceId,omitempty"`
	Status                 string          `json:"status,omitempty"`
	Substatus              string          `json:"substatus,omitempty"`
	ErrorCode              int             `json:"errorCode,omitempty"`
	ErrorMessage           string          `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC *time.Time      `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag                   string          `json:"etag,omitempty"`
	Payload                json.RawMessage `json:"payload,omitempty"`
}

// BulkOperation is the body of POST /enrollments.
type BulkOperation struct {
	Mode        string       `json:"mode"`
	Enrollments []Enrollment `json:"enrollments"`
}

// BulkResult is the answer to a bulk operation: per-item failures ride in
// a 200 answer.
type BulkResult struct {
	IsSuccessful bool        `json:"isSuccessful"`
	Errors       []BulkError `json:"errors,omitempty"`
}

// BulkError is one item's outcome; some services list successes too,
// with ErrorCode below 300.
type BulkError struct {
	RegistrationID string `json:"registrationId"`
	ErrorCode      int    `json:"errorCode"`
	ErrorStatus    string `json:"errorStatus"`
}

// Failed reports whether the item failed.
func (e BulkError) Failed() bool { return bulkFailed(e.ErrorCode) }

// bulkFailed reports whether a bulk item with errorCode code failed: any
// code but a 2xx status (a 3-digit one; some services list successes).
func bulkFailed(code int) bool { return code >= 300 || code < 100 }

// Status is the HTTP status the item's 6-digit DPS error code starts
// with (409201 → 409), or the code itself when it is already 3 digits.
func (e BulkError) Status() int {
	c := e.ErrorCode
	for c >= 1000 {
		c /= 10
	}
	return c
}

// BulkGroupOperation is the body of POST /enrollmentGroups.
type BulkGroupOperation struct {
	Mode             string            `json:"mode"`
	EnrollmentGroups []EnrollmentGroup `json:"enrollmentGroups"`
}

// BulkGroupResult is the answer to a bulk operation on enrollment
// groups (BulkEnrollmentGroupOperationResult).
type BulkGroupResult struct {
	IsSuccessful bool             `json:"isSuccessful"`
	Errors       []BulkGroupError `json:"errors,omitempty"`
}

// BulkGroupError is one group's outcome in a BulkGroupResult
// (BulkEnrollmentGroupOperationError).
type BulkGroupError struct {
	EnrollmentGroupID string `json:"enrollmentGroupId"`
	ErrorCode         int    `json:"errorCode"`
	ErrorStatus       string `json:"errorStatus"`
}

// Failed reports whether the group's item failed, as BulkError.Failed.
func (e BulkGroupError) Failed() bool { return bulkFailed(e.ErrorCode) }

// QuerySpecification is the body of a query.
type QuerySpecification struct {
	Query string `json:"query"`
}

// ErrorBody is the service's error answer (ProvisioningServiceErrorDetails).
type ErrorBody struct {
	ErrorCode    int               `json:"errorCode"`
	TrackingID   string            `json:"trackingId,omitempty"`
	Message      string            `json:"message,omitempty"`
	Info         map[string]string `json:"info,omitempty"`
	TimestampUTC string            `json:"timestampUtc,omitempty"`
}
