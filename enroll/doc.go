// Package enroll speaks the Azure IoT Hub Device Provisioning Service
// (DPS) service API (REST, api-version 2021-10-01): individual enrollments,
// bulk operations of at most 10, queries with continuation and enrollment
// groups, authenticated with SAS tokens made from the service's connection
// string. It also holds the bulk Uploader, which drains a queue of pending
// enrollments at a share of the DPS quota and reconciles every item
// exactly once.
//
// The DPS emulator that serves the same API lives in enroll/emulator.
//
// References: the DPS service REST API, 2021-10-01 (service.json in
// Azure/azure-rest-api-specs, deviceprovisioningservices/data-plane), and
// "Control access to DPS with SAS tokens" for the token format.
package enroll
