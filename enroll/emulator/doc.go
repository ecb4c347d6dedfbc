// Package emulator serves the Azure IoT Hub Device Provisioning Service
// (DPS) over HTTPS on loopback: its service API (enrollments, groups,
// registration states) and its device API (registration), with the same
// paths, bodies, headers and error bodies as DPS, so that package
// enroll's client, package enroll/device, and the official Azure SDKs
// (Node azure-iot-provisioning-service) work against it unchanged. The
// demo, the uploader's tests and line rehearsals use it in place of a
// real DPS instance.
//
// The service API (DPS service REST API 2021-10-01 and 2026-04-01,
// service.json in Azure/azure-rest-api-specs,
// deviceprovisioningservices/data-plane; every answer is checked against
// both by this package's tests), matched case-insensitively, with or
// without a trailing slash:
//
//	PUT|GET|DELETE /enrollments/{id}
//	POST           /enrollments                      bulk, at most enroll.MaxBulk items
//	POST           /enrollments/query                {"query": ...}: every enrollment (see Queries below)
//	POST           /enrollments/{id}/attestationmechanism
//	PUT|GET|DELETE /enrollmentGroups/{id}
//	POST           /enrollmentGroups                 bulk of groups
//	POST           /enrollmentGroups/query           {"query": ...}: every group
//	POST           /enrollmentGroups/{id}/attestationmechanism
//	GET|DELETE     /registrations/{id}               a device's DeviceRegistrationState
//	POST           /registrations/{groupId}/query    the states of a group's devices, paged
//
// Every service request needs an api-version query parameter DPS or one
// of its SDKs uses (see SupportedAPIVersions) and a SharedAccessSignature
// token signed with the policy's primary or secondary key for one of the
// names the service answers to, checked as DPS's reference validator
// does (enroll.ParseSAS and (*enroll.SAS).Verify: HMAC over sr exactly as
// sent, host compared case-insensitively, five minutes of clock skew, skn
// optional). Those names are Options.HostNames (Start adds its
// certificate's: localhost, 127.0.0.1, ::1 and the host it listens on)
// and the address the connection came in on, with or without the port;
// never the request's Host header, which is the client's to choose.
// Bearer (Entra ID) tokens are refused.
//
// The device API (device.json, api-versions 2019-03-31, 2021-06-01,
// 2021-10-01 and the others of SupportedAPIVersions), for the ID scope
// Options.IDScope only (another is 404):
//
//	PUT  /{idScope}/registrations/{id}/register              202 {operationId, status: assigning}, Retry-After, Location
//	GET  /{idScope}/registrations/{id}/operations/{opId}     202 assigning until assigned, then 200 with registrationState
//	POST /{idScope}/registrations/{id}                       status lookup: the DeviceRegistrationResult
//
// A device is attested against its individual enrollment when there is
// one, else against the enrollment groups of its kind (dps-notes 4.4 to
// 4.6):
//
//   - symmetric key: a SharedAccessSignature for
//     "{idScope}/registrations/{id}" (sr URL-encoded or not, in any case;
//     skn registration or none), signed with the enrollment's primary or
//     secondary key, or for a group with the key derived from the
//     group's: HMAC-SHA256(groupKey, registrationId);
//   - X.509: the TLS client certificate (the server asks for one without
//     requiring it): its CN is the registration ID and it is valid now;
//     an individual enrollment holds that very certificate, a group's
//     signing certificate is where the chain the client sent verifies to;
//   - TPM: the first register request carries tpm.endorsementKey (the
//     enrolled one) and tpm.storageRootKey and no Authorization, and is
//     answered 401 {"message","authenticationKey","keyName":"registration"},
//     a fresh HMAC key sealed to the EK and SRK (Options.TPMChallenge,
//     internal/dpstpm) and kept for the registration; the requests that
//     follow carry a SharedAccessSignature signed with that key. The
//     final registrationState carries tpm.authenticationKey, a device key
//     sealed the same way.
//
// Credentials are checked from the path, the headers and the client
// certificate before the body is read; the one body read before any
// credential is a TPM device's first register request, which brings the
// keys its challenge is sealed to. Credentials that match nothing are
// 401 with DPS's error body; no enrollment or group to try is 404. Registrations are allocated over the
// linked IoT hubs (Options.IoTHubs): hashed (a stable hash of the
// registration ID), geoLatency, static, restricted to the enrollment's
// iotHubs; custom allocation is not emulated. A disabled enrollment or
// group ends in status disabled. Registration states, their operations
// and the TPM keys are stored with the enrollments and survive restarts;
// an individual enrollment's GET carries its device's registrationState.
//
// Quotas: each authenticated service request costs one operation from a
// token bucket (Options.Quota per minute; a bulk request is one
// operation); each device register request and status lookup costs one
// from a bucket of their own (Options.RegistrationQuota); polls are not
// charged but are limited per device (Options.PollQuota, 5 per 10 s as
// DPS). An empty bucket answers 429 with Retry-After and does nothing.
// Faults, on both APIs, are decided per request after authentication and
// the quota: an error answer (500 or 503), a connection cut before
// anything is done, or a connection cut after the request was carried out
// and committed.
//
// Limits: nothing a client does, slow or many, holds the emulator. A
// request body is at most Options.MaxBody bytes (413, refused from its
// Content-Length or as soon as it passes the limit, never read whole)
// and must arrive within Options.ReadTimeout (408); an HTTP/1
// connection whose request was refused before its body was read whole
// is closed rather than drained. Start's server gives a TLS handshake
// and a request's header Options.ReadTimeout too, an answer 30 s, an
// idle connection 2 minutes, and holds at most Options.MaxConns
// connections at once (DefaultMaxConns, or fewer when the open-file
// limit is low); one more is let in by closing the connection that has
// waited longest, at least 250 ms, for its client (Stats.Reclaimed).
// The store holds at most 32 SQLite connections.
//
// State lives in SQLite (internal/sqlitedb, schema migrations embedded
// here) and survives restarts: registration and group IDs are stored
// lower-cased (DPS compares them case-insensitively) while bodies keep the
// case sent, in insertion order, with an etag and a count of writes.
//
// Error answers carry DPS's body, {"errorCode","trackingId","message",
// "timestampUtc","info"}, the x-ms-error-code header and the enroll.Code*
// six-digit codes (a 408, which DPS does not document, carries 408000).
//
// Each service request is answered as its api-version specifies: under
// 2026-04-01 (and 2025-07-01-preview, which brought it; one predicate,
// enroll.SupportsCredentialPolicy, for this and the device API's csr) an
// individual enrollment or a group stores and answers
// credentialPolicyName (the Azure Device Registry credential policy its
// devices' operational certificates are issued under); under the older
// versions, whose specification has no such property, answers leave it
// out and a write neither sets nor clears it (the stored one is kept, as
// Azure's API guidelines have an older version's PUT keep what a newer
// one added).
//
// Writes are checked as service.json states it: registration and group
// IDs of letters, digits and - . _ : with a letter or digit at either
// end ("No special characters allowed at start or end"; regid.Check),
// 400 CodeRegistrationID (a read, a delete or a bulk delete checks only
// the length and the characters, regid.CheckExisting: DPS's concept
// documentation lets an ID end with a dash, and a record made under that
// rule can still be read and deleted); provisioningStatus enabled or disabled and
// allocationPolicy hashed, geoLatency, static or custom, spelled so (the
// specification's enums; "Hashed" is refused), custom only with a
// customAllocationDefinition holding webhookUrl and apiVersion (both
// required); attestation type tpm, x509, symmetricKey or none (none: an
// enrollment no device attests against yet); 400 CodeBadBody. Defaults
// are the specification's: provisioningStatus enabled, capabilities
// {"iotEdge": false}, allocationPolicy hashed, and reprovisionPolicy's
// updateHubAssignment and migrateDeviceData each true when not given
// ({} is true/true).
//
// Queries. DPS does not interpret a query's text: its SDK maintainers
// reported from the DPS team that only "select * from enrollments" is
// supported and WHERE clauses are not (Azure/azure-iot-sdk-csharp#378),
// users found any query, "SELECT * FROM devices" or a WHERE on
// registrationId included, answered with every enrollment
// (azure-iot-sdk-csharp#794, Azure/azure-sdk-for-net#24392), and a WHERE
// on a group's registration query ignored (azure-iot-sdk-node#814); the
// official tools send "*" (the Node SDK's documented usage), "SELECT *"
// (the Azure CLI) and "SELECT * FROM enrollments" (the C# and Java SDKs).
// The emulator does the same: the body must be a QuerySpecification
// whose required query is a string (else 400, CodeBadQuery when it is
// missing), and every record of the kind is answered, a page at a time,
// whatever the query selects or filters; a query other than those three
// forms is logged at debug level as answered unfiltered.
//
// Where DPS's behaviour is not documented the emulator chooses:
//
//   - If-Match on PUT: "*" or an etag (quoted or not) requires the record
//     to exist, else 412; an etag must be the record's, else 412. On
//     DELETE an absent record is 404 whatever If-Match says. An etag in a
//     PUT's body is ignored.
//   - Bulk: create fails an item that exists (409201), update creates or
//     replaces, updateIfMatchETag needs the item's etag to match an
//     existing record (412201 otherwise, also when missing), delete fails
//     an absent item (404201/404202) and honours an etag if one is given;
//     an ID repeated in one request fails the later items (400002). Only
//     failures are listed, and "errors" is [] when there are none.
//   - Queries: x-ms-max-item-count defaults to 100 and is cut to 1000;
//     a bad count or continuation token is 400 with
//     enroll.CodeBadQuery. Enrollment queries carry no registrationState
//     (as DPS's); the registration query takes any body or none, and
//     answers an empty page for a group that does not exist.
//   - The path (404, 405) and the api-version (400) are checked before
//     the token and cost no operation; an invalid ID in a path is 400
//     CodeRegistrationID, after the token.
//   - Device API: the ID scope is compared case-insensitively; a
//     malformed operation ID is 400, an unknown one (or one superseded by
//     a later registration of the device) 404. When the device has no
//     individual enrollment, symmetric-key groups are tried for a SAS
//     token and X.509 groups for a client certificate: none of that kind
//     is 404, none that verifies 401. The TPM challenge, 401s and 404s
//     are not charged to the quota.
//   - Every register request is answered 202, even when the outcome is
//     known at once; the outcome is decided then, and polls before
//     Options.AssignDelay has passed are 202 assigning (Retry-After: the
//     seconds left, at least 1), as is the registration state. Location
//     is the operation's URL.
//   - A device that registers again gets a new operation (the old one is
//     forgotten) and keeps its createdDateTimeUtc; its substatus is
//     reprovisionedToInitialAssignment when its hub does not change (or
//     the reprovision policy keeps it), deviceDataMigrated or
//     deviceDataReset when it moves. An allocation that finds no linked
//     hub ends failed with errorCode 400208. An individual symmetric-key
//     registration carries no symmetricKey part (as in DPS's documented
//     answer); an individual X.509 one carries "x509":{}.
//   - Deleting an enrollment leaves its device's registration state;
//     deleting the registration state (DELETE /registrations/{id}) also
//     forgets its operations and TPM key, so the device starts again
//     from the challenge.
//
// Start runs an Emulator behind an HTTPS server with its own CA, a shared
// access key and the ID scope kept in a folder, as `zerotouch
// dps-emulator` does.
package emulator
