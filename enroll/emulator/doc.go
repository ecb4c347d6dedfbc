// Package emulator serves the Azure IoT Hub Device Provisioning Service
// (DPS) service API over HTTPS on loopback, with the same paths, bodies,
// headers and error bodies as DPS, so that package enroll's client and the
// official Azure SDKs (Node azure-iot-provisioning-service) work against
// it unchanged. The demo, the uploader's tests and line rehearsals use it
// in place of a real DPS instance.
//
// What it serves (DPS service REST API 2021-10-01, service.json in
// Azure/azure-rest-api-specs, deviceprovisioningservices/data-plane),
// matched case-insensitively, with or without a trailing slash:
//
//	PUT|GET|DELETE /enrollments/{id}
//	POST           /enrollments                      bulk, at most enroll.MaxBulk items
//	POST           /enrollments/query                SELECT * FROM enrollments
//	POST           /enrollments/{id}/attestationmechanism
//	PUT|GET|DELETE /enrollmentGroups/{id}
//	POST           /enrollmentGroups                 bulk of groups
//	POST           /enrollmentGroups/query           SELECT * FROM enrollmentGroups
//	POST           /enrollmentGroups/{id}/attestationmechanism
//	GET|DELETE     /registrations/{id}               404: the device API is not emulated yet
//	POST           /registrations/{id}/query         an empty page
//
// Every request needs an api-version query parameter DPS or one of its SDKs
// uses (see SupportedAPIVersions) and a SharedAccessSignature token signed
// with the policy's primary or secondary key for the request's host name,
// checked as DPS's reference validator does (enroll.ParseSAS and
// (*enroll.SAS).Verify: HMAC over sr exactly as sent, five minutes of clock
// skew, skn optional). Bearer (Entra ID) tokens are refused.
//
// Each authenticated request costs one operation from a token bucket
// (Options.Quota per minute; a bulk request is one operation); an empty
// bucket answers 429 with Retry-After and does nothing. Faults are decided
// per request after authentication and the quota: an error answer (500 or
// 503), a connection cut before anything is done, or a connection cut after
// the request was carried out and committed.
//
// State lives in SQLite (internal/sqlitedb, schema migrations embedded
// here) and survives restarts: registration and group IDs are stored
// lower-cased (DPS compares them case-insensitively) while bodies keep the
// case sent, in insertion order, with an etag and a count of writes.
//
// Error answers carry DPS's body, {"errorCode","trackingId","message",
// "timestampUtc","info"}, the x-ms-error-code header and the enroll.Code*
// six-digit codes.
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
//     a bad count, query or continuation token is 400 with
//     enroll.CodeBadQuery.
//   - The path (404, 405) and the api-version (400) are checked before
//     the token and cost no operation; an invalid ID in a path is 400
//     CodeRegistrationID, after the token.
//
// Start runs an Emulator behind an HTTPS server with its own CA and a
// shared access key kept in a folder, as `zerotouch dps-emulator` does.
package emulator
