// Package enroll speaks the Azure IoT Hub Device Provisioning Service
// (DPS) service API (REST, api-version 2026-04-01 by default, 2021-10-01
// on request through Config.APIVersion): individual enrollments, bulk
// operations of at most 10, queries with continuation, enrollment groups
// and registration states, authenticated with SAS tokens made from the
// service's connection string. It also holds the bulk Uploader, which
// drains a queue of pending enrollments at a share of the DPS quota and
// reconciles every item exactly once.
//
// The DPS emulator that serves the same API lives in enroll/emulator; the
// device API's client in enroll/device.
//
// Every operation of the two specifications, service.json and
// device.json, stable 2021-10-01 and 2026-04-01 (2026-04-01 adds
// credentialPolicyName to enrollments and groups, and a certificate
// signing request and the certificate chain issued for it to a device's
// registration), with its client and the emulator's handler:
//
//	operation (operationId)                          request                                   client                                      emulator handler
//	IndividualEnrollment_CreateOrUpdate              PUT /enrollments/{id}                     Client.CreateOrUpdate                       putOne(enrollmentKind)
//	IndividualEnrollment_Get                         GET /enrollments/{id}                     Client.Get                                  getOne(enrollmentKind)
//	IndividualEnrollment_Delete                      DELETE /enrollments/{id}                  Client.Delete                               deleteOne(enrollmentKind)
//	IndividualEnrollment_GetAttestationMechanism     POST /enrollments/{id}/attestationmechanism  Client.AttestationMechanism             attestationMechanism(enrollmentKind)
//	IndividualEnrollment_RunBulkOperation            POST /enrollments                         Client.Bulk                                 bulk(enrollmentKind)
//	IndividualEnrollment_Query                       POST /enrollments/query                   Client.Query, Client.Enrollments            query(enrollmentKind)
//	EnrollmentGroup_CreateOrUpdate                   PUT /enrollmentGroups/{id}                Client.CreateOrUpdateGroup                  putOne(groupKind)
//	EnrollmentGroup_Get                              GET /enrollmentGroups/{id}                Client.GetGroup                             getOne(groupKind)
//	EnrollmentGroup_Delete                           DELETE /enrollmentGroups/{id}             Client.DeleteGroup                          deleteOne(groupKind)
//	EnrollmentGroup_GetAttestationMechanism          POST /enrollmentGroups/{id}/attestationmechanism  Client.GroupAttestationMechanism  attestationMechanism(groupKind)
//	EnrollmentGroup_RunBulkOperation                 POST /enrollmentGroups                    Client.BulkGroups                           bulk(groupKind)
//	EnrollmentGroup_Query                            POST /enrollmentGroups/query              Client.QueryGroups, Client.Groups           query(groupKind)
//	DeviceRegistrationState_Get                      GET /registrations/{id}                   Client.GetRegistrationState                 getRegistrationState
//	DeviceRegistrationState_Delete                   DELETE /registrations/{id}                Client.DeleteRegistrationState              deleteRegistrationState
//	DeviceRegistrationState_Query                    POST /registrations/{id}/query            Client.QueryRegistrationStates, Client.RegistrationStates  registrationQuery
//	RuntimeRegistration_RegisterDevice               PUT /{idScope}/registrations/{id}/register  device.Register                          (*Emulator).register
//	RuntimeRegistration_OperationStatusLookup        GET /{idScope}/registrations/{id}/operations/{operationId}  device.Register (polls)  (*Emulator).poll
//	RuntimeRegistration_DeviceRegistrationStatusLookup  POST /{idScope}/registrations/{id}      device.Lookup                               (*Emulator).lookup
//
// References: the DPS REST API specifications above (Azure/azure-rest-
// api-specs, specification/deviceprovisioningservices/data-plane), and
// "Control access to DPS with SAS tokens" for the token format.
package enroll
