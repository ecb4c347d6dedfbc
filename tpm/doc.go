// Package tpm reads a board's TPM identity the way the Azure device SDK on
// that board will present it on first boot, over any go-tpm transport: the
// board's passthrough (flasher), the go-tpm-tools simulator, swtpm over TCP
// or a TPM device.
//
// The endorsement key (EK) is read from the persistent handle 0x81010001;
// only if that is empty is it created with the Azure SDK's EK template and
// persisted there, so that the SDK later reads the very key that was
// enrolled (the SRK at 0x81000001 likewise). From the EK's TPM2B_PUBLIC
// bytes come the DPS endorsementKey (base64) and the registration ID
// (lowercase unpadded base32 of their SHA-256). The EK certificate in NV is
// checked against a bundle of TPM vendor certificates. For X.509 boards the
// package makes a signing key under the SRK that never leaves the TPM,
// persists it, and signs CSRs with it as a crypto.Signer.
//
// On first boot a TPM board answers DPS's challenge as the device SDK
// does: ImportIdentityKey activates the credential DPS made for its EK and
// SRK, imports the HMAC key it carries and persists it at 0x81000100, and
// IdentityHMAC signs the registration's SAS token with it. Package
// internal/dpstpm makes those challenges (the DPS emulator's side).
//
// Sources: TPM 2.0 Library Part 3 (commands), the TCG EK Credential
// Profile 2.0 (NV indices, templates) and the Azure IoT C SDK's
// hsm_client_tpm.c and prov_auth_client.c (templates, handles, the
// registration ID).
//
// A Device is not safe for concurrent use: a TPM runs one command at a
// time, and the package's sequences (read, create, persist) must not
// interleave.
package tpm
