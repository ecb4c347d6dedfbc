// Package device registers a device with the Azure IoT Hub Device
// Provisioning Service (DPS) over its device API, HTTPS, the way the
// Azure device SDKs do, and tells where the device was assigned: the IoT
// hub and the device ID.
//
// Register takes one of the three attestations DPS knows:
//
//   - symmetric key: a SAS token for "{idScope}/registrations/{id}",
//     signed with the device's key (for an enrollment group, the key
//     DeriveKey derives from the group's);
//   - X.509: the device's certificate and key, presented in the TLS
//     handshake; its CN is the registration ID;
//   - TPM: the endorsement and storage root keys are sent; DPS answers
//     401 with a challenge (an activation blob) that only that TPM can
//     import, and the SAS token is then signed inside the TPM with the
//     imported key. The final answer carries a second blob, the device's
//     key, which is imported too.
//
// A registration is a PUT of .../register answered 202 with an operation
// ID, then polls of .../operations/{id} until the answer is 200 with the
// outcome; the service's Retry-After paces the polls, clamped as the C
// SDK clamps it (1 s to 5 min, Config.MinWait and MaxWait). 429 answers
// are waited out; 5xx and lost answers are retried with backoff. The
// Result holds the whole DeviceRegistrationResult: the assignment, and
// the attestation's part (TPM, X.509 certificate info, the group).
//
// Certificate issuance (api-version 2026-04-01, the default): a device
// whose Config carries a CSR (DER PKCS#10, CN = the registration ID)
// sends it with its registration; DPS issues its operational certificate
// under the credential policy its enrollment (or group) names, and the
// outcome carries issuedCertificateChain: the device certificate, the
// intermediates, the root. Register checks it (VerifyIssuedChain: the
// CSR's key, the registration ID as CN, a chain to its root or to
// Config.IssuerRoots) and returns it in Result.IssuedCertificateChain.
// DPS refuses a csr under an older api-version, in a status lookup, or
// for an enrollment with no credential policy: 400.
//
// Lookup is the registration status lookup (POST
// /{idScope}/registrations/{id}): the registration as it stands, without
// registering again.
//
// References: the DPS device REST API (device.json, api-versions
// 2021-10-01 and 2026-04-01, in Azure/azure-rest-api-specs,
// specification/deviceprovisioningservices/data-plane); "Device
// certificate issuance in Azure Device Registry" (the CSR and the
// chain); "Control access to DPS with SAS
// tokens" (the device API's token: skn=registration); the C SDK's
// prov_device_ll_client.c and prov_transport_http_client.c (TPM flow and
// Retry-After clamps); "DPS quotas and limits" (5 polls per 10 s per
// device).
package device
